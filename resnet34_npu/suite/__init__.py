"""The pytest suite: the plugin (wiring only), its options, the run's state, golden outputs, the
acceptance report.
"""
