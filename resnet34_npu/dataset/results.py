"""The results folder of a dataset run: what one comparison computes (:class:`Job`, whose
identity decides which results on disk it may resume), and the per-rank results files
(``rank<R>.jsonl``) with the lock that keeps a second live run out of them.

Each file starts with a header line (the run's identity and id), then one JSON line a record:
``image`` records (one an image of the rank's shard) and ``cross`` records (the cross-check's
outputs of the shared images on that rank's card). Records are appended after the last complete
line, so a killed process leaves at most a torn last line, which is cut off.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet34_npu.core.errors import InputError, show
from resnet34_npu.dataset import distributed
from resnet34_npu.dataset.reference_file import StoredReference
from resnet34_npu.dataset.sources import Dataset

UNREADABLE = "unreadable"
#: The kind of a cross-check record (an image record's kind is ``image``).
CROSS = "cross"


@dataclass(frozen=True)
class Job:
    """What one dataset comparison computes: its identity decides which results on disk it may
    resume."""

    dataset: Dataset
    target: str
    weights: str
    profile: str
    batch_size: int
    workers: int
    results: Path
    reference: StoredReference | None = None
    fp64_truth: bool = False
    strict_images: bool = False
    resume: bool = False
    #: the cross-check: how many images of the dataset's start every rank also computes (0: none)
    cross_check: int = 0

    def identity(self, weights_sha: str, reference_name: str) -> dict[str, Any]:
        return {
            "target": self.target,
            "weights": weights_sha,
            "profile": self.profile,
            "batch_size": self.batch_size,
            "listing": self.dataset.listing_sha256(),
            "reference": self.reference.header["payload_sha256"] if self.reference else f"{reference_name} computed",
            "fp64_truth": self.truth,
        }

    @property
    def truth(self) -> bool:
        return self.fp64_truth or (self.reference is not None and self.reference.truth is not None)


def results_folder(base: Path, target: str) -> Path:
    """The results folder of one target under ``base``: its name as one folder name."""
    return base / "".join(c if c.isalnum() or c in "-_.=" else "_" for c in target)


class Results:
    """The results folder: one ``rank<R>.jsonl`` per rank, each starting with the run's
    identity and the id of the run that started it; a torn last line (a killed process) is cut
    off before appending. ``own_only``: read only this run's files (a run that started afresh
    must never count another run's results, e.g. a second host writing the same folder)."""

    def __init__(self, folder: Path, identity: dict[str, Any], rank: int, run_id: str = "", own_only: bool = False):
        self.folder, self.identity, self.rank = folder, identity, rank
        self.run_id, self.own_only = run_id, own_only
        self.mine = folder / f"rank{rank}.jsonl"
        self._lock: Any = None

    def lock(self) -> None:
        """Hold the folder for this run (rank 0): a second live run writing the same folder is
        refused instead of replacing this one's files."""
        import fcntl

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.folder / ".lock", "a")  # noqa: SIM115 - held until release()
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"results folder {show(self.folder)}: in use by another run right now; wait for it, or give this run "
                "its own --results folder"
            ) from None
        except OSError as exc:
            raise InputError(f"results folder {show(self.folder)}: cannot write in it ({exc.strerror})") from None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("rank*.jsonl"))

    def clear(self, world: distributed.World) -> None:
        """Start afresh: this rank's file, and (rank 0) files of ranks this run does not have."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for path in self.files():
                number = path.stem[4:]
                if path == self.mine or (world.rank == 0 and (not number.isdigit() or int(number) >= world.size)):
                    path.unlink()
        except OSError as exc:
            raise InputError(f"results folder {show(self.folder)}: cannot write in it ({exc.strerror})") from None

    def records(self, path: Path, kind: str = "image") -> Iterator[dict[str, Any]]:
        """The complete records of one file of ``kind`` (``image``; ``cross``: the cross-check's
        outputs, :mod:`~resnet34_npu.dataset.crosscheck`); a torn last line is not one."""
        with open(path, "rb") as handle:
            header = handle.readline()
            if not header.endswith(b"\n"):
                return  # being created by its rank right now: nothing in it yet
            try:
                head = json.loads(header)
                theirs, run = head.get("identity"), head.get("run")
            except (ValueError, AttributeError):
                theirs = run = None
            if self.own_only and run != self.run_id:
                return  # another run's file (it started afresh after this one, or runs beside it)
            if theirs != self.identity:
                raise InputError(
                    f"results folder {show(self.folder)}: {path.name} holds results of another run "
                    "(target, weights, profile, batch size, dataset or reference differ); "
                    "drop --resume to start afresh"
                )
            for number, line in enumerate(handle, 2):
                if not line.endswith(b"\n"):
                    return
                try:
                    record = json.loads(line)
                    if not _well_formed(record):
                        raise KeyError("i")
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise InputError(
                        f"results folder {show(self.folder)}: {path.name} line {number} is not a result this suite "
                        "wrote (edited or damaged); drop --resume to start afresh"
                    ) from None
                if record.get("kind") == kind:
                    yield record

    def saved(self) -> dict[int, dict[str, Any]]:
        """Every saved image record by dataset index."""
        return {r["i"]: r for path in self.files() for r in self.records(path)}

    def open(self) -> Any:
        """This rank's file, for appending after its last complete line."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.mine.exists():
                with open(self.mine, "r+b") as handle:
                    data = handle.read()
                    handle.truncate(data.rfind(b"\n") + 1)
                if self.mine.stat().st_size == 0:
                    self.mine.unlink()
            fresh = not self.mine.exists()
            handle = open(self.mine, "ab")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise InputError(f"results folder {show(self.folder)}: cannot write in it ({exc.strerror})") from None
        if fresh:
            header = {"kind": "header", "identity": self.identity, "run": self.run_id}
            handle.write((json.dumps(header) + "\n").encode())
        return handle


def _well_formed(record: Any) -> bool:
    """Whether a record line holds what this suite writes for its kind (other kinds pass)."""
    kind = record.get("kind")
    if kind == "image":
        return isinstance(record["i"], int) and isinstance(record["status"], str)
    if kind == CROSS:
        return (
            isinstance(record["i"], int)
            and isinstance(record["rank"], int)
            and all(isinstance(record[k], str) for k in ("card", "path", "digest", "output"))
        )
    return True
