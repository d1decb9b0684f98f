"""The sample library LoadGen draws from and the system under test it drives.

:class:`SampleLibrary`: the images (the bundled photos, or a dataset), preprocessed once when the
library is made, never inside a timed call; a query's batch is rows picked from that tensor.

:class:`SystemUnderTest`: one worker thread per runner (a card, or the CPU) pulling batches from
one queue. A query is cut into chunks of the batch size as it arrives; each idle card takes the
next chunk, so on a host of several cards (Offline: one query of every sample) the cards share the
query by what each finishes, a slow card takes fewer chunks and no card waits for another's tail.
Every batch is padded to the batch size (the last row repeated): each card computes one shape, as
MLPerf systems do, and a sample's output does not depend on how a query was cut (TEST01 compares
them bit for bit). The runner is the target's own (``Runner.run``: input to the device, the
forward pass, logits back to the CPU), for every engine and card.
"""

from __future__ import annotations

import ctypes
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet34_npu.core.errors import InputError, one_line
from resnet34_npu.dataset import sources
from resnet34_npu.model.images import load_image
from resnet34_npu.model.preprocess import preprocess
from resnet34_npu.targets.runners import Runner
from resnet34_npu.targets.timing import digest

_EMPTY = (ctypes.c_char * 1)()


@dataclass(frozen=True)
class SampleLibrary:
    """Preprocessed samples [N, 3, 224, 224] float32 on the CPU, their names and labels."""

    samples: torch.Tensor
    names: tuple[str, ...]
    labels: tuple[int | None, ...]
    source: str

    @classmethod
    def from_images(cls, paths: Sequence[str | Path]) -> SampleLibrary:
        tensors = [preprocess(load_image(p)) for p in paths]
        names = tuple(Path(p).name for p in paths)
        return cls(torch.stack(tensors).contiguous(), names, (None,) * len(names), "images")

    @classmethod
    def from_dataset(cls, root: str | Path, labels: str | Path | None = None, limit: int = 1024) -> SampleLibrary:
        """The first ``limit`` images of a dataset (``dataset.sources.scan``: a folder, an
        ImageFolder layout or val_map.txt), with their labels where it has them."""
        found = sources.scan(root, labels)
        entries = found.entries[:limit]
        tensors = []
        for entry in entries:
            tensors.append(preprocess(load_image(found.root / entry.path)))
        return cls(
            torch.stack(tensors).contiguous(),
            tuple(e.path for e in entries),
            tuple(e.label for e in entries),
            f"dataset {found.root} ({found.layout})",
        )

    def __len__(self) -> int:
        return self.samples.shape[0]

    @property
    def labelled(self) -> bool:
        return all(label is not None for label in self.labels)

    def batch(self, indices: Sequence[int], size: int) -> torch.Tensor:
        """The rows ``indices``, padded to ``size`` rows with the last one."""
        padded = list(indices) + [indices[-1]] * (size - len(indices))
        return self.samples.index_select(0, torch.tensor(padded, dtype=torch.long))

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "samples": len(self), "labelled": self.labelled}


@dataclass
class CardLog:
    """What one card (runner) of the system under test did."""

    name: str
    samples: int = 0
    batches: int = 0
    busy_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "samples": self.samples, "batches": self.batches, "busy_s": round(self.busy_s, 6)}


@dataclass
class Outputs:
    """Per sample index, the digests of every output it got, and (when kept) one copy of its logits."""

    digests: dict[int, set[str]] = field(default_factory=dict)
    logits: dict[int, np.ndarray] = field(default_factory=dict)


class SystemUnderTest:
    """The SUT LoadGen drives; see the module docstring. ``keep_logits`` keeps one copy of each
    sample's logits (the accuracy run). After ``abort()`` every query is answered empty at once."""

    def __init__(
        self,
        runners: Sequence[Runner],
        library: SampleLibrary,
        batch_size: int,
        *,
        coalesce: bool = False,
        keep_logits: bool = False,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch size {batch_size!r} must be >= 1")
        self.runners = list(runners)
        self.library = library
        self.batch_size = batch_size
        self.coalesce = coalesce
        self.keep_logits = keep_logits
        self.outputs = Outputs()
        self.cards = [CardLog(r.name) for r in self.runners]
        self.errors: list[str] = []
        self._queue: queue.Queue[list[Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._aborted = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lg: Any = None

    def issue(self, query_samples: Sequence[Any]) -> None:
        """LoadGen's ``issue_queries``: the query cut into chunks of the batch size, queued."""
        samples = list(query_samples)
        for start in range(0, len(samples), self.batch_size):
            self._queue.put(samples[start : start + self.batch_size])

    def flush(self) -> None:
        """LoadGen's ``flush_queries``: nothing is held back, so nothing to flush."""

    def start(self, lg: Any) -> None:
        self._lg = lg
        for i, runner in enumerate(self.runners):
            thread = threading.Thread(target=self._work, args=(i, runner), name=f"sut-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def abort(self) -> None:
        self._aborted.set()

    def _next(self) -> list[Any] | None:
        chunk = self._queue.get()
        if chunk is None or not self.coalesce:
            return chunk
        while len(chunk) < self.batch_size:  # Server: queries waiting now share one batch
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None or len(chunk) + len(more) > self.batch_size:
                self._queue.put(more)  # back for the next batch (or the next worker's stop)
                break
            chunk += more
        return chunk

    def _work(self, card: int, runner: Runner) -> None:
        lg, log = self._lg, self.cards[card]
        while True:
            chunk = self._next()
            if chunk is None:
                return
            if self._aborted.is_set():
                lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in chunk])
                continue
            indices = [s.index for s in chunk]
            begin = time.perf_counter()
            try:
                logits = runner.run(self.library.batch(indices, self.batch_size))
                rows = np.ascontiguousarray(logits[: len(chunk)].numpy(), dtype=np.float32)
            except Exception as exc:  # the target's own failure: answered empty, named in the result
                with self._lock:
                    self.errors.append(f"{runner.name}: {type(exc).__name__}: {one_line(exc)}"[:500])
                lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in chunk])
                continue
            log.busy_s += time.perf_counter() - begin
            base, stride = rows.ctypes.data, rows.strides[0]
            lg.QuerySamplesComplete(
                [lg.QuerySampleResponse(s.id, base + i * stride, stride) for i, s in enumerate(chunk)]
            )
            log.samples += len(chunk)
            log.batches += 1
            # digests after the responses: never inside the latency LoadGen measures
            keys = [digest(torch.from_numpy(rows[i])) for i in range(len(chunk))]
            with self._lock:
                for i, (index, key) in enumerate(zip(indices, keys)):
                    self.outputs.digests.setdefault(index, set()).add(key)
                    if self.keep_logits and index not in self.outputs.logits:
                        self.outputs.logits[index] = rows[i].copy()
