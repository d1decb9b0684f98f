"""The network and its inputs: the ResNet34 network, weights specs and files, images,
preprocessing, ImageNet labels.
"""
