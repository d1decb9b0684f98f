from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet34_npu import InputError, load_image
from resnet34_npu.core.constants import IMAGES_DIR
from resnet34_npu.model.images import find_images, to_rgb
from tests.conftest import ALL_IMAGES


def _array(path: Path) -> np.ndarray:
    return np.asarray(load_image(path), dtype=np.int16)


@pytest.mark.parametrize("path", ALL_IMAGES, ids=lambda p: p.name)
def test_every_fixture_reads_as_rgb_and_is_small(path):
    image = load_image(path)
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
    assert path.stat().st_size < 200_000


def test_exif_orientation_is_applied():
    upright = _array(IMAGES_DIR / "cat.jpg")
    rotated = _array(IMAGES_DIR / "exif_rotated.jpg")
    assert rotated.shape == upright.shape
    assert np.abs(rotated - upright).mean() < 3  # two JPEG encodings of the same pixels
    stored = np.asarray(Image.open(IMAGES_DIR / "exif_rotated.jpg"))
    assert stored.shape[:2] == upright.shape[1::-1], "the file really stores the pixels turned"


def test_transparent_pixels_become_white_not_their_hidden_colour():
    rgba = _array(IMAGES_DIR / "rgba.png")
    assert (rgba[:20] == 255).all()
    raw = np.asarray(Image.open(IMAGES_DIR / "rgba.png"))
    assert (raw[:20, :, :3] == (255, 0, 0)).all(), "the fixture hides red under alpha 0"


def test_alpha_is_composited_over_white():
    raw = np.asarray(Image.open(IMAGES_DIR / "rgba.png")).astype(np.float64)
    rgb = np.asarray(load_image(IMAGES_DIR / "rgba.png")).astype(np.float64)
    alpha = raw[..., 3:] / 255
    expected = raw[..., :3] * alpha + 255 * (1 - alpha)
    assert np.abs(rgb - expected).max() <= 1.0


def test_palette_transparency_goes_white():
    raw = Image.open(IMAGES_DIR / "palette_transparent.png")
    transparent = np.asarray(raw) == raw.info["transparency"]
    assert transparent.any()
    assert (np.asarray(load_image(IMAGES_DIR / "palette_transparent.png"))[transparent] == 255).all()


def test_sixteen_bit_is_scaled_not_clipped():
    assert Image.open(IMAGES_DIR / "gray16.png").mode.startswith("I")
    assert np.array_equal(_array(IMAGES_DIR / "gray16.png"), _array(IMAGES_DIR / "gray.png"))


def test_float_and_int_modes():
    values = np.array([[0.0, 127.6, 300.0, -5.0]], dtype=np.float32)
    assert np.asarray(to_rgb(Image.fromarray(values, mode="F")))[0, :, 0].tolist() == [0, 128, 255, 0]
    ints = np.array([[0, 257, 65535, 70000]], dtype=np.int32)
    assert np.asarray(to_rgb(Image.fromarray(ints, mode="I")))[0, :, 0].tolist() == [0, 1, 255, 255]


def test_cmyk_and_grayscale_are_close_to_the_photo():
    cat = _array(IMAGES_DIR / "cat.jpg")
    assert np.abs(_array(IMAGES_DIR / "cmyk.jpg") - cat).mean() < 8
    gray = _array(IMAGES_DIR / "gray.png")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_animation_reads_its_first_frame():
    cat = _array(IMAGES_DIR / "cat.jpg")
    first = _array(IMAGES_DIR / "animated.gif")
    assert np.abs(first - cat).mean() < 10, "frame 0 is the cat"
    assert np.abs((255 - first) - cat).mean() > 50, "not the negative of frame 1"


def test_degenerate_sizes():
    assert load_image(IMAGES_DIR / "tiny_1x1.png").size == (1, 1)
    assert load_image(IMAGES_DIR / "panorama_10x1.jpg").size == (1000, 100)


# --- bad input: one clear error naming the file and the reason ---------------------------


def _bad(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.jpg"
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = (IMAGES_DIR / "cat.jpg").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "text":
        path.write_text("not an image at all\n")
    elif kind == "bomb":
        # 10000 x 10000 = 1e8 pixels, over the 89,478,485 limit; a 1-bit PNG keeps it small.
        path = tmp_path / "bomb.png"
        Image.new("1", (10_000, 10_000)).save(path)
    return path


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "no such file"),
        ("directory", "is a directory"),
        ("empty", "is empty (0 bytes)"),
        ("truncated", "cannot be decoded (image file is truncated"),
        ("text", "not an image Pillow can identify"),
        ("bomb", "decompression-bomb limit of 89478485 pixels"),
    ],
)
def test_bad_images(tmp_path, kind, words):
    path = _bad(tmp_path, kind)
    with pytest.raises(InputError) as err:
        load_image(path)
    assert f"image '{path}'" in str(err.value) and words in str(err.value)
    assert "\n" not in str(err.value)


def test_find_images_expands_folders(tmp_path):
    assert find_images([IMAGES_DIR]) == [p for p in ALL_IMAGES if p.suffix in (".jpg", ".png", ".gif")]
    assert find_images([tmp_path / "x.jpg"]) == [tmp_path / "x.jpg"]
    with pytest.raises(InputError, match="holds no image files"):
        find_images([tmp_path])
