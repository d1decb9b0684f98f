"""The model card's preprocessing, built from torchvision's transforms."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from PIL import Image
from torchvision import transforms

from resnet34_npu.core.constants import CROP_SIZE, IMAGENET_MEAN, IMAGENET_STD, RESIZE_SIZE

#: Resize the short side to 256 (bilinear, antialiased), centre-crop 224, scale to [0, 1],
#: normalise with the ImageNet mean and std. Equal, value for value, to
#: ``torchvision.models.ResNet34_Weights.IMAGENET1K_V1.transforms()`` (a test proves it).
PIPELINE = transforms.Compose(
    [
        transforms.Resize(RESIZE_SIZE, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
        transforms.CenterCrop(CROP_SIZE),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
)


def preprocess(image: Image.Image) -> torch.Tensor:
    """An RGB image of any size to a float32 tensor [3, 224, 224]."""
    if image.mode != "RGB":
        raise ValueError(f"preprocess expects an RGB image (use load_image), got mode {image.mode!r}")
    return PIPELINE(image)


def make_batch(images: Iterable[Image.Image]) -> torch.Tensor:
    """Preprocess images of any sizes and stack them into one float32 batch [N, 3, 224, 224]."""
    tensors = [preprocess(image) for image in images]
    if not tensors:
        raise ValueError("make_batch needs at least one image")
    return torch.stack(tensors)
