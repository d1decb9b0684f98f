from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image
from torchvision.models import ResNet34_Weights

from resnet34_npu import load_image, make_batch, preprocess
from resnet34_npu.model.images import to_rgb
from tests.conftest import ALL_IMAGES

REFERENCE = ResNet34_Weights.IMAGENET1K_V1.transforms()


@pytest.mark.parametrize("path", ALL_IMAGES, ids=lambda p: p.name)
def test_equal_to_torchvision_reference_on_every_fixture(path):
    image = load_image(path)
    ours = preprocess(image)
    assert ours.shape == (3, 224, 224) and ours.dtype == torch.float32
    assert torch.equal(ours, REFERENCE(image))


def test_batch_from_different_sizes():
    images = [load_image(p) for p in ALL_IMAGES]
    batch = make_batch(images)
    assert batch.shape == (len(images), 3, 224, 224) and batch.dtype == torch.float32
    assert torch.equal(batch[3], preprocess(images[3]))


def test_empty_batch_and_wrong_mode_are_refused():
    with pytest.raises(ValueError, match="at least one image"):
        make_batch([])
    with pytest.raises(ValueError, match="RGB"):
        preprocess(Image.new("L", (8, 8)))


MODES = ["RGB", "L", "LA", "RGBA", "P", "CMYK", "I;16", "1"]


@st.composite
def images(draw):
    """Random noise images of 1 to 2000 px a side, aspect ratios up to 20:1, in many modes."""
    width = draw(st.integers(1, 2000))
    height = draw(st.integers(max(1, width // 20), min(2000, width * 20)))
    mode = draw(st.sampled_from(MODES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    rgba = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8))
    if mode in ("RGBA", "LA"):
        return rgba.convert(mode)
    return rgba.convert("RGB").convert(mode)


@given(images())
@example(Image.new("RGB", (2000, 100), (10, 200, 30)))
@example(Image.new("L", (1, 20), 7))
@example(Image.new("RGBA", (1, 1)))
def test_property_any_size_and_mode(image):
    rgb = to_rgb(image)
    ours = preprocess(rgb)
    assert ours.shape == (3, 224, 224)
    assert ours.dtype == torch.float32
    assert torch.isfinite(ours).all()
    assert torch.equal(ours, REFERENCE(rgb))
