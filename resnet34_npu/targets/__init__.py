"""What runs the model: device kinds, the target spec grammar, knobs, runners, execution-mode
engines, timing, the default matrix, the emulated Ascend host.
"""
