"""Dataset scale: sources and loaders, stored reference files, dataset-scale agreement runs,
torchrun ranks.
"""
