"""Reading images: anything Pillow reads, upright, as 8-bit RGB.

The one conversion rule, per Pillow mode:

* ``RGB``: as is.
* ``L``, ``1``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` and ``P`` without transparency: Pillow's
  own conversion to RGB (no ICC colour management).
* Anything with transparency (``RGBA``, ``LA``, ``PA``, ``La``, ``RGBa``, ``P`` with a
  transparent colour): alpha-composited over a white background, so fully transparent pixels
  become white whatever colour they happened to store (a plain ``convert("RGB")`` would reveal
  those hidden colours).
* 16- and 32-bit integer grayscale (``I;16``, ``I;16B``, ``I;16L``, ``I``): the 0..65535 range
  is scaled to 0..255 (divided by 257 and rounded; values outside are clipped), then gray to RGB.
  Pillow's own conversion would clip everything above 255 to white.
* ``F`` (32-bit float grayscale): clipped to 0..255 (NaN as 0), then gray to RGB.

The EXIF orientation is applied first, and of an animation only the first frame is read.
Images over Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) are refused
before any pixel is decoded.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from resnet34_npu.core.errors import InputError, one_line, show

#: The raster formats the suite opens. Pillow would also hand a PostScript or EPS file (whatever
#: its name) to Ghostscript, an external program: never for a file the suite is given.
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # JPEG includes MPO (phone photos)
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}
_INTEGER_GRAY_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_BACKGROUND = (255, 255, 255)


def load_image(path: str | Path) -> Image.Image:
    """Read ``path`` and return it as an upright 8-bit RGB image (see the module's rule).

    Raises :class:`InputError` naming the file and the reason for anything that is not a
    readable image."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"image {show(path)}: no such file")
    if path.is_dir():
        raise InputError(f"image {show(path)}: is a directory, not an image file")
    if not path.is_file():
        raise InputError(f"image {show(path)}: is not a regular file (a device, FIFO or socket)")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"image {show(path)}: cannot be read ({exc.strerror})") from None
    if size == 0:
        raise InputError(f"image {show(path)}: is empty (0 bytes)")
    return _decode(path, path)


def decode_image(data: bytes, path: str | Path) -> Image.Image:
    """:func:`load_image` of a file's bytes already read (``path`` names it in errors): the
    dataset loader hashes and decodes the same bytes, so what is verified is what is decoded."""
    if not data:
        raise InputError(f"image {show(path)}: is empty (0 bytes)")
    return _decode(io.BytesIO(data), Path(path))


def _decode(source: Path | io.BytesIO, path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _stderr_of_decoders() as chatter, Image.open(source, formats=FORMATS) as image:
                image.seek(0)
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"image {show(path)}: refused, larger than Pillow's decompression-bomb limit of "
            f"{Image.MAX_IMAGE_PIXELS} pixels (PIL.Image.MAX_IMAGE_PIXELS)"
        ) from None
    except UnidentifiedImageError:
        raise InputError(
            f"image {show(path)}: not an image Pillow can identify in the supported formats ({', '.join(FORMATS)})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        said = [line.strip() for line in [str(exc), *chatter] if line.strip()]
        reason = said[0].splitlines()[0] if said else type(exc).__name__
        raise InputError(f"image {show(path)}: cannot be decoded ({one_line(reason)})") from None


_FD2 = threading.Lock()  # file descriptor 2 is the process's: one redirection at a time


@contextlib.contextmanager
def _stderr_of_decoders() -> Iterator[list[str]]:
    """Catch what C decoders (libtiff, libjpeg) print on the process's stderr while an image is
    read, so the user sees the suite's one line, not theirs first; the lines are kept for the
    reason of a failure. Without a usable file descriptor 2 nothing is redirected."""
    lines: list[str] = []
    with _FD2:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield lines
            return
        try:
            sink = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the `with sink` below
        except OSError:
            os.close(saved)
            yield lines
            return
        with sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield lines
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                lines.extend(sink.read(64 * 1024).decode("utf-8", "replace").splitlines())


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a Pillow image of any mode to 8-bit RGB by the module's rule."""
    if image.mode == "RGB":
        return image.copy()
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode in _INTEGER_GRAY_MODES:
        values = np.asarray(image, dtype=np.float64)
        scaled = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    elif image.mode == "F":
        values = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0), 0, 255)
        return Image.fromarray(np.rint(values).astype(np.uint8)).convert("RGB")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def find_images(paths: list[str | Path]) -> list[Path]:
    """Expand folders into the image files they hold (sorted, non-recursive); files pass as
    they are, so a bad file still gets its own error from :func:`load_image`."""
    found: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            files = sorted(p for p in entry.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
                raise InputError(f"image folder {show(entry)}: holds no image files ({kinds})")
            found.extend(files)
        else:
            found.append(entry)
    return found


IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
