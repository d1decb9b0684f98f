"""Stored references: the CPU fp32 reference's logits (and optionally the float64 truth's) for
every image of a dataset, computed once and read by every comparison, on every card and host.

The format (one file, read without pickle: a JSON header and raw little-endian arrays):

* ``R34REF01`` (8 bytes);
* the payload: the reference's logits as float32 ``[rows, 1000]`` (4,000 bytes an image: the
  CPU fp32 reference computes in float32, so this is lossless), then, with ``--fp64-truth``,
  the truth's as float64 ``[rows, 1000]`` (8,000 bytes an image);
* the header, UTF-8 JSON: format version, weights (spec and digests), the preprocessing, the
  reference target, the machine (torch, torchvision, CPU), the dataset's listing and, per
  image, its relative path, the SHA-256 of its bytes, its label and its payload row (None for
  an image that could not be read, with the reason), and the payload's SHA-256;
* a 48-byte trailer: the header's SHA-256, its length (u64), ``R34REFND``.

Why this: 50,000 images are 200 MB of float32 logits whatever the container, and logits of
a random-looking float distribution do not compress (zlib saves under 10 %); a raw array is
memory-mapped, so a comparison's memory does not grow with the dataset, and its digests make a
truncated or altered file one clear error instead of wrong verdicts.

A build is incremental: computed images go to ``REF.partial`` (one JSON line per image, logits
in base64, flushed and fsynced per batch), and a build that finds a matching ``.partial``
resumes it. Only a finished build renames a complete file to ``REF``, so no file that looks
complete is ever left by an interrupted one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from resnet34_npu.core import schemas
from resnet34_npu.core.documents import utc_now
from resnet34_npu.core.errors import InputError, show
from resnet34_npu.core.files import write_atomic
from resnet34_npu.dataset.sources import NUM_CLASSES, PREPROCESSING, Dataset, Entry, file_sha256, loader

MAGIC = b"R34REF01"
END = b"R34REFND"
FORMAT_VERSION = 1
_TRAILER = struct.Struct("<32sQ8s")
#: A header is a few hundred bytes an image; refuse absurd lengths before reading them.
_MAX_HEADER = 1 << 31


@dataclass(frozen=True)
class StoredReference:
    """A loaded reference file: its header and its memory-mapped arrays."""

    path: Path
    header: dict[str, Any]
    logits: np.ndarray  # float32 [rows, 1000]
    truth: np.ndarray | None  # float64 [rows, 1000]

    @property
    def images(self) -> list[dict[str, Any]]:
        return self.header["images"]

    def describe(self) -> dict[str, Any]:
        h = self.header
        return {
            "path": str(self.path),
            "created": h["created"],
            "images": len(h["images"]),
            "fp64_truth": self.truth is not None,
            "payload_sha256": h["payload_sha256"],
            "machine": h["machine"],
        }

    def check(self, weights: dict[str, Any], dataset: Dataset) -> None:
        """Refuse this reference for other weights, another preprocessing or another dataset
        (an image added, missing, renamed). Image contents are checked as they are read."""
        h, where = self.header, f"reference file {show(self.path)}"
        if h["weights"]["tensor_sha256"] != weights["tensor_sha256"]:
            raise InputError(
                f"{where}: built for other weights ({h['weights']['spec']!r}, tensor sha256 "
                f"{h['weights']['tensor_sha256'][:16]}...) than these ({weights['spec']!r}, "
                f"{weights['tensor_sha256'][:16]}...); rebuild it with the same --weights"
            )
        if h["preprocessing"] != PREPROCESSING:
            raise InputError(
                f"{where}: built with another preprocessing ({h['preprocessing'][:90]!r}); rebuild it with this version"
            )
        stored = [image["path"] for image in h["images"]]
        here = [entry.path for entry in dataset.entries]
        if stored != here:
            missing = sorted(set(stored) - set(here))
            extra = sorted(set(here) - set(stored))
            if missing:
                raise InputError(
                    f"{where}: image {missing[0]!r} of the reference is not in the dataset {show(dataset.root)} "
                    f"({len(missing)} missing)"
                )
            if extra:
                raise InputError(
                    f"{where}: image {extra[0]!r} of the dataset {show(dataset.root)} is not in the reference "
                    f"({len(extra)} not in it); rebuild the reference for this dataset"
                )
            raise InputError(f"{where}: lists the dataset's images in another order; rebuild it")


def _damaged(path: Path, why: str) -> InputError:
    return InputError(f"reference file {show(path)}: {why}; rebuild it with `reference build`")


def load(path: str | Path) -> StoredReference:
    """Read and verify a reference file (see the module docstring); any defect is one
    :class:`InputError` naming the file."""
    path = Path(path)
    if not path.is_file():
        what = "no such file" if not path.exists() else "is not a regular file"
        raise InputError(f"reference file {show(path)}: {what}")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise InputError(
                f"reference file {show(path)}: not a resnet34-npu reference file (no {MAGIC!r} at its start)"
            )
        if size < len(MAGIC) + _TRAILER.size:
            raise _damaged(path, f"truncated ({size} bytes)")
        handle.seek(size - _TRAILER.size)
        header_sha, header_len, end = _TRAILER.unpack(handle.read(_TRAILER.size))
        if end != END:
            raise _damaged(path, "truncated or damaged (no end marker)")
        header_at = size - _TRAILER.size - header_len
        if header_len > _MAX_HEADER or header_at < len(MAGIC):
            raise _damaged(path, "damaged (impossible header length)")
        handle.seek(header_at)
        raw = handle.read(header_len)
        if hashlib.sha256(raw).digest() != header_sha:
            raise _damaged(path, "damaged or altered (the header's SHA-256 differs)")
        try:
            header = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise _damaged(path, "damaged (its header is not JSON)") from None
        version = header.get("format_version") if isinstance(header, dict) else None
        if version is not None and version != FORMAT_VERSION:
            raise InputError(
                f"reference file {show(path)}: format version {version!r}, this resnet34-npu reads {FORMAT_VERSION}"
            )
        found = schemas.problem(header, "reference-header")
        if found is not None:
            raise _damaged(path, f"damaged (its header does not match the reference-header schema: {found})")
        rows, truth = header["rows"], header["fp64_truth"]
        payload = rows * NUM_CLASSES * (4 + (8 if truth else 0))
        if header_at != len(MAGIC) + payload:
            raise _damaged(path, f"truncated or damaged ({header_at - len(MAGIC)} payload bytes, expected {payload})")
        handle.seek(len(MAGIC))
        digest, left = hashlib.sha256(), payload
        while left:
            chunk = handle.read(min(left, 1 << 24))
            if not chunk:
                raise _damaged(path, "truncated")
            digest.update(chunk)
            left -= len(chunk)
        if digest.hexdigest() != header["payload_sha256"]:
            raise _damaged(path, "damaged or altered (the logits' SHA-256 differs)")
    shape = (rows, NUM_CLASSES)
    logits = np.memmap(path, dtype="<f4", mode="r", offset=len(MAGIC), shape=shape) if rows else np.zeros(shape, "<f4")
    truth_rows = None
    if truth:
        at = len(MAGIC) + rows * NUM_CLASSES * 4
        truth_rows = np.memmap(path, dtype="<f8", mode="r", offset=at, shape=shape) if rows else np.zeros(shape, "<f8")
    return StoredReference(path, header, logits, truth_rows)


def _b64(array: torch.Tensor, dtype: str) -> str:
    return base64.b64encode(array.detach().cpu().numpy().astype(dtype).tobytes()).decode("ascii")


def _unb64(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


def _journal(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _has_header(journal: Path) -> bool:
    with open(journal, "rb") as handle:
        return handle.readline(1 << 20).endswith(b"\n")


def _read_journal(journal: Path, identity: dict[str, Any]) -> dict[int, int]:
    """The images already computed in ``journal`` (index -> offset of its line); a torn last
    line (the build was killed while writing it) is cut off."""
    done: dict[int, int] = {}
    with open(journal, "r+b") as handle:
        first = handle.readline()
        try:
            theirs = json.loads(first)
        except ValueError:
            theirs = None
        if theirs != identity:
            raise InputError(
                f"reference build: {show(journal)} is an interrupted build of other weights, images or options; "
                "delete it to start afresh"
            )
        good = handle.tell()
        while True:
            at = handle.tell()
            line = handle.readline()
            if not line:
                break
            try:
                record = json.loads(line)
                index = int(record["i"])
            except (ValueError, KeyError, TypeError):
                break  # a torn last line
            if not line.endswith(b"\n"):
                break
            done[index] = at
            good = handle.tell()
        handle.truncate(good)
    return done


def build(
    dataset: Dataset,
    out: str | Path,
    *,
    reference: Callable[[torch.Tensor], torch.Tensor],
    truth: Callable[[torch.Tensor], torch.Tensor] | None,
    weights: dict[str, Any],
    machine: dict[str, Any],
    reference_name: str,
    batch_size: int,
    workers: int,
    strict_images: bool,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[Path, int, int, list[tuple[str, str]]]:
    """Compute and store the reference for ``dataset`` at ``out``; resumes a matching
    ``out.partial``. Returns the file, the images computed now, those resumed, and the
    images that could not be read (path, reason)."""
    out = Path(out)
    journal = _journal(out)
    identity = {
        "weights": weights["tensor_sha256"],
        "preprocessing": PREPROCESSING,
        "listing": dataset.listing_sha256(),
        "fp64_truth": truth is not None,
        "reference": reference_name,
    }
    if journal.is_dir() or (journal.exists() and not journal.is_file()):
        raise InputError(f"reference build: {show(journal)} is not a regular file; remove it")
    fresh = not journal.exists() or not _has_header(journal)  # none, or killed before its first line
    done = {} if fresh else _read_journal(journal, identity)
    if fresh:
        try:
            journal.parent.mkdir(parents=True, exist_ok=True)
            journal.write_text(json.dumps(identity) + "\n")
        except OSError as exc:
            raise InputError(f"reference file {show(out)}: cannot write {show(journal)} ({exc.strerror})") from None
    if done:  # the journal's images must be these images, as they are now
        for record in _records(journal, done):
            entry = dataset.entries[record["i"]]
            if strict_images and record["reason"]:
                raise InputError(f"image {show(dataset.root / entry.path)}: {record['reason']} (--strict-images)")
            if file_sha256(dataset.root / entry.path) != (record["sha256"] or ""):
                raise InputError(
                    f"reference build: image {show(dataset.root / entry.path)} is not the one the interrupted build "
                    f"in {show(journal)} computed; delete that file to start afresh"
                )
    resumed = len(done)
    progress(resumed)
    todo = [i for i in range(len(dataset.entries)) if i not in done]
    computed = 0
    with open(journal, "ab") as handle:
        for loaded in loader(dataset, todo, batch_size, workers):
            if strict_images:
                _fail_unreadable(dataset, loaded.indices, loaded.reasons)
            logits = reference(loaded.batch) if loaded.batch.shape[0] else None
            exact = truth(loaded.batch) if truth is not None and loaded.batch.shape[0] else None
            row = 0
            lines = []
            for index, digest, reason in zip(loaded.indices, loaded.sha256, loaded.reasons):
                record: dict[str, Any] = {"i": index, "sha256": digest, "reason": reason}
                if not reason:
                    record["logits"] = _b64(logits[row], "<f4")
                    if exact is not None:
                        record["truth"] = _b64(exact[row], "<f8")
                    row += 1
                lines.append(json.dumps(record) + "\n")
            handle.write("".join(lines).encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
            computed += len(loaded.indices)
            progress(len(loaded.indices))
    unreadable = _assemble(dataset, out, journal, identity, weights=weights, machine=machine, truth=truth is not None)
    journal.unlink()
    return out, computed, resumed, unreadable


def _fail_unreadable(dataset: Dataset, indices: Sequence[int], reasons: Sequence[str]) -> None:
    for index, reason in zip(indices, reasons):
        if reason:
            raise InputError(f"image {show(dataset.root / dataset.entries[index].path)}: {reason} (--strict-images)")


def _records(journal: Path, offsets: dict[int, int]) -> Iterator[dict[str, Any]]:
    """The journal's records in dataset order (``offsets`` from :func:`_read_journal`)."""
    with open(journal, "rb") as handle:
        for index in sorted(offsets):
            handle.seek(offsets[index])
            yield json.loads(handle.readline())


def _assemble(
    dataset: Dataset,
    out: Path,
    journal: Path,
    identity: dict[str, Any],
    *,
    weights: dict[str, Any],
    machine: dict[str, Any],
    truth: bool,
) -> list[tuple[str, str]]:
    entries: list[Entry] = list(dataset.entries)
    images: list[dict[str, Any]] = []
    unreadable: list[tuple[str, str]] = []

    offsets = _read_journal(journal, identity)  # read once: the payload and the header take three passes

    def write(handle: BinaryIO) -> None:
        digest = hashlib.sha256()
        handle.write(MAGIC)
        for field, dtype in (("logits", "<f4"), ("truth", "<f8"))[: 2 if truth else 1]:
            for record in _records(journal, offsets):
                if record["reason"]:
                    continue
                data = _unb64(record[field], dtype).tobytes()
                digest.update(data)
                handle.write(data)
        rows = 0
        for record in _records(journal, offsets):
            entry = entries[record["i"]]
            if record["reason"]:
                unreadable.append((entry.path, record["reason"]))
            images.append(
                {
                    "path": entry.path,
                    "sha256": record["sha256"] or None,
                    "label": entry.label,
                    "row": None if record["reason"] else rows,
                    "reason": record["reason"] or None,
                }
            )
            rows += 0 if record["reason"] else 1
        if len(images) != len(entries):
            raise InputError(
                f"reference build: {show(journal)} lacks {len(entries) - len(images)} images; run it again"
            )
        header = {
            "format": "resnet34-npu stored reference",
            "format_version": FORMAT_VERSION,
            "created": utc_now(),
            "weights": weights,
            "preprocessing": PREPROCESSING,
            "reference": identity["reference"],
            "machine": machine,
            "dataset": dataset.describe(),
            "rows": rows,
            "classes": NUM_CLASSES,
            "fp64_truth": truth,
            "payload_sha256": digest.hexdigest(),
            "images": images,
        }
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        handle.write(raw)
        handle.write(_TRAILER.pack(hashlib.sha256(raw).digest(), len(raw), END))

    write_atomic(out, write, what="reference file", prefix=f".{out.name}.")
    return unreadable
