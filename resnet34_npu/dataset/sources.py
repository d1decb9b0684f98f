"""Datasets: a folder of images found recursively, a torchvision ``ImageFolder`` layout, or an
ImageNet validation folder with MLPerf's ``val_map.txt`` labels; and the loader that reads,
hashes and preprocesses them in DataLoader workers, in batches.

Which layout a folder has, in this order:

* ``--labels FILE``, or a ``val_map.txt`` in the folder: MLPerf's ``file label`` per line; the
  images are those it lists (relative to the folder), labelled with its ImageNet class indices.
* Class sub-folders and no image at the top (``ImageFolder``): every image below each class
  folder. Labels are the folder names when every name is an ImageNet class index (``0`` ..
  ``999``), or the sorted order of exactly 1000 folders (torchvision's ``ImageFolder``
  convention, which for ImageNet's WordNet IDs is the class index); otherwise no labels.
* Anything else: every image file below the folder, without labels.

Images are identified by their path relative to the folder (``/``-separated, sorted) and the
SHA-256 of their bytes. An image that cannot be read is not dropped: the loader returns it with
the reason, and the caller lists it (or stops, with ``--strict-images``).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnet34_npu.core.errors import InputError, show
from resnet34_npu.dataset import default_workers as default_workers  # the cores a loader uses, re-exported
from resnet34_npu.model.images import IMAGE_EXTENSIONS, decode_image
from resnet34_npu.model.preprocess import PIPELINE, preprocess

#: MLPerf's label file for ImageNet's validation set, looked for in the dataset folder.
VAL_MAP = "val_map.txt"
NUM_CLASSES = 1000

#: What decides an image's input tensor besides its bytes: stored with a reference file, and a
#: reference is refused when it differs.
PREPROCESSING = f"load_image (upright 8-bit RGB) then {PIPELINE!r}".replace("\n", "")


@dataclass(frozen=True)
class Entry:
    """One image of a dataset: its path relative to the dataset folder and its label (an
    ImageNet class index, or None)."""

    path: str
    label: int | None = None


@dataclass(frozen=True)
class Dataset:
    """A scanned dataset: its folder, its layout and its images in a fixed order."""

    root: Path
    layout: str
    entries: tuple[Entry, ...]
    note: str = ""

    @property
    def labelled(self) -> bool:
        return bool(self.entries) and all(e.label is not None for e in self.entries)

    def listing_sha256(self) -> str:
        """A digest of the listing (paths and labels, in order): which images, not their bytes."""
        digest = hashlib.sha256()
        for entry in self.entries:
            digest.update(f"{entry.path}\t{entry.label}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "layout": self.layout,
            "images": len(self.entries),
            "labelled": self.labelled,
            "listing_sha256": self.listing_sha256(),
            "note": self.note or None,
        }


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _walk(folder: Path, root: Path) -> list[str]:
    """Image files below ``folder`` as paths relative to ``root``; hidden folders skipped,
    symbolic links to folders not followed (no loops)."""
    found = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(here).relative_to(root)
        found.extend((rel / name).as_posix() for name in files if _is_image(name))
    return sorted(found)


#: The largest file the loader reads: no photo is this large; a device file or a FIFO is refused first.
MAX_FILE_BYTES = 1 << 30


def read_file(path: Path) -> bytes:
    """A regular file's bytes; a FIFO, a device or a folder (which would block, never end or
    not read) and a file over :data:`MAX_FILE_BYTES` raise ``OSError`` with the reason."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "not a regular file (a FIFO, a device or a folder)")
        if info.st_size > MAX_FILE_BYTES:
            raise OSError(0, f"larger than {MAX_FILE_BYTES >> 20} MiB")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a dataset file's bytes, "" when it cannot be read."""
    try:
        return hashlib.sha256(read_file(path)).hexdigest()
    except OSError:
        return ""


def _read_val_map(path: Path, root: Path) -> list[Entry]:
    try:
        text = read_file(path).decode("utf-8-sig")  # a byte-order mark is not part of the first name
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"labels file {show(path)}: cannot be read ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    entries, seen = [], set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not re.fullmatch(r"\d+", fields[1]) or int(fields[1]) >= NUM_CLASSES:
            raise InputError(
                f"labels file {show(path)}: line {number} is {line.strip()[:80]!r}; expected 'FILE LABEL' "
                f"with LABEL an ImageNet class index 0..{NUM_CLASSES - 1} (MLPerf's val_map.txt)"
            )
        name = Path(fields[0])
        if name.is_absolute() or ".." in name.parts:
            raise InputError(f"labels file {show(path)}: line {number} names {fields[0]!r}, outside {show(root)}")
        if name.as_posix() in seen:
            raise InputError(f"labels file {show(path)}: line {number} lists {fields[0]!r} a second time")
        seen.add(name.as_posix())
        entries.append(Entry(name.as_posix(), int(fields[1])))
    if not entries:
        raise InputError(f"labels file {show(path)}: lists no images")
    absent = [e.path for e in entries if not (root / e.path).exists()]
    if absent:  # an incomplete copy of the dataset must not pass on the images it has
        raise InputError(
            f"labels file {show(path)}: {len(absent)} of the {len(entries)} images it lists are not in "
            f"{show(root)} (first: {absent[0]!r})"
        )
    return entries


def scan(root: str | Path, labels: str | Path | None = None) -> Dataset:
    """The dataset in ``root`` (see the module docstring for the layouts)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset {show(root)}: " + ("no such folder" if not root.exists() else "is not a folder"))
    label_file = Path(labels) if labels is not None else root / VAL_MAP
    if labels is not None or label_file.exists():
        entries = _read_val_map(label_file, root)
        listed = {e.path for e in entries}
        unlisted = [p for p in _walk(root, root) if p not in listed]
        note = (
            f"{len(unlisted)} image files in the folder are not in {label_file.name} and are not compared "
            f"(first: {unlisted[0]!r})"
            if unlisted
            else ""
        )
        return Dataset(root, "val_map", tuple(entries), note)
    top = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    classes = [p for p in top if p.is_dir()]
    if classes and not any(p.is_file() and _is_image(p.name) for p in top):
        names = [c.name for c in classes]
        note = ""
        if all(re.fullmatch(r"\d+", n) and int(n) < NUM_CLASSES for n in names):
            index = {n: int(n) for n in names}
            note = "labels: the class folders' names, read as ImageNet class indices"
        elif len(names) == NUM_CLASSES:
            index = {n: i for i, n in enumerate(names)}
            note = "labels: the sorted order of the 1000 class folders (ImageNet's WordNet-ID order)"
        else:
            index = {}
            note = (
                f"{len(names)} class folders that are neither ImageNet class indices (0..999) nor 1000 "
                "folders in ImageNet's order: no labels, agreement only"
            )
        entries = [Entry(path, index.get(folder.name)) for folder in classes for path in _walk(folder, root)]
        dataset = Dataset(root, "imagefolder", tuple(entries), note)
    else:
        dataset = Dataset(root, "folder", tuple(Entry(p) for p in _walk(root, root)))
    if not dataset.entries:
        raise InputError(f"dataset {show(root)}: holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return dataset


@dataclass(frozen=True)
class Loaded:
    """A batch from :class:`ImageData`: the dataset indices, each image's SHA-256 (of the bytes
    read, or "" when it could not be read), the reason it could not be read ("" when it could),
    and the preprocessed images that could, stacked in index order."""

    indices: tuple[int, ...]
    sha256: tuple[str, ...]
    reasons: tuple[str, ...]
    batch: torch.Tensor

    @property
    def readable(self) -> tuple[int, ...]:
        return tuple(i for i, reason in zip(self.indices, self.reasons) if not reason)


class ImageData(torch.utils.data.Dataset):
    """Reads, hashes and preprocesses dataset images (in DataLoader workers); never raises
    for an image: one that cannot be read comes back with its reason."""

    def __init__(self, dataset: Dataset) -> None:
        self.root = dataset.root
        self.paths = [e.path for e in dataset.entries]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, str, str, torch.Tensor | None]:
        path = self.root / self.paths[index]
        try:
            data = read_file(path)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                reason = "no such file"
            else:
                reason = exc.strerror if not exc.errno else f"cannot be read ({exc.strerror})"
            return index, "", reason, None
        digest = hashlib.sha256(data).hexdigest()
        try:
            return index, digest, "", preprocess(decode_image(data, path))
        except InputError as exc:
            return index, digest, str(exc).split(": ", 1)[-1], None


def _collate(items: list[tuple[int, str, str, torch.Tensor | None]]) -> Loaded:
    tensors = [t for _, _, _, t in items if t is not None]
    batch = torch.stack(tensors) if tensors else torch.empty(0, 3, 224, 224)
    return Loaded(
        tuple(i for i, _, _, _ in items), tuple(h for _, h, _, _ in items), tuple(r for _, _, r, _ in items), batch
    )


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # decoding is one image per worker: leave the cores to the device side


def loader(dataset: Dataset, indices: Sequence[int], batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    """Batches of ``indices`` (in that order), read and preprocessed by ``workers`` processes
    (0: in this process) while the caller runs the previous batch."""
    return torch.utils.data.DataLoader(
        ImageData(dataset),
        batch_size=batch_size,
        sampler=list(indices),
        num_workers=workers,
        collate_fn=_collate,
        worker_init_fn=_one_thread if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )


class Progress:
    """A progress bar (tqdm: images, images/s, ETA) on a terminal; a plain line every
    ``every`` seconds otherwise (logs, CI)."""

    def __init__(self, total: int, label: str, *, done: int = 0, every: float = 10.0, position: int = 0) -> None:
        self.total, self.label, self.every = total, label, every
        self.count, self.start, self.last = done, time.monotonic(), time.monotonic()
        self.first = done
        self.bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # plain lines then
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=done, desc=label, unit="img", position=position, leave=True)

    def update(self, n: int) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every or self.count >= self.total:
            self.last = now
            rate = (self.count - self.first) / max(now - self.start, 1e-9)
            eta = (self.total - self.count) / rate if rate > 0 else math.inf
            print(
                f"{self.label}: {self.count}/{self.total} images, {rate:.1f} images/s, "
                + (f"ETA {eta:.0f} s" if math.isfinite(eta) else "ETA -"),
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
