"""Timing: the one implementation used by ``infer``, ``compare``, the suite's latency column and
the benchmarks' synchronisation.

Warm-up calls first, then timed calls, each bracketed by device synchronisation; devices with
events (CUDA, NPU, XPU) are timed with device events, the CPU with ``time.perf_counter``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import numpy as np
import torch

from resnet34_npu.targets import devices

DEFAULT_WARMUP = 3
DEFAULT_ITERS = 10


@dataclass(frozen=True)
class Timing:
    """Latency statistics of one batch, in milliseconds."""

    mean: float
    std: float
    median: float
    p90: float
    min: float
    max: float
    warmup: int
    iterations: int
    batch_size: int
    clock: str

    @property
    def throughput_ips(self) -> float:
        """Images per second at the median latency."""
        return self.batch_size * 1000.0 / self.median if self.median > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timing:
        """The inverse of :meth:`to_dict` (records travel between pytest-xdist workers as dicts)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    @classmethod
    def from_samples(cls, samples_ms: list[float], warmup: int, batch_size: int, clock: str) -> Timing:
        values = np.asarray(samples_ms, dtype=np.float64)
        return cls(
            mean=float(values.mean()),
            std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            median=float(statistics.median(samples_ms)),
            p90=float(np.percentile(values, 90)),
            min=float(values.min()),
            max=float(values.max()),
            warmup=warmup,
            iterations=len(samples_ms),
            batch_size=batch_size,
            clock=clock,
        )


def _event_class(device: torch.device) -> Any:
    if devices.kind_of(device).events:
        return getattr(getattr(torch, device.type), "Event", None)
    return None


def speedup(reference: Timing | None, target: Timing | None) -> float | None:
    """Reference median / target median (None when either is missing or the target took 0 ms)."""
    if reference is None or target is None or target.median <= 0:
        return None
    return reference.median / target.median


def time_call(
    fn: Callable[[], Any],
    device: torch.device,
    *,
    warmup: int = DEFAULT_WARMUP,
    iters: int = DEFAULT_ITERS,
    batch_size: int = 1,
    synchronize: Callable[[], None] | None = None,
) -> Timing:
    """Time ``fn()`` ``iters`` times after ``warmup`` untimed calls, synchronising ``device``
    (or calling ``synchronize``) around every timed call."""
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got warmup={warmup} iters={iters}")
    sync = synchronize or (lambda: devices.synchronize(device))
    for _ in range(warmup):
        fn()
    sync()
    event = _event_class(device) if synchronize is None else None
    samples: list[float] = []
    for _ in range(iters):
        if event is not None:
            with getattr(torch, device.type).device(device):
                start, end = event(enable_timing=True), event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
            samples.append(float(start.elapsed_time(end)))
        else:
            sync()
            begin = time.perf_counter()
            fn()
            sync()
            samples.append((time.perf_counter() - begin) * 1000.0)
    return Timing.from_samples(samples, warmup, batch_size, "device events" if event is not None else "perf_counter")
