"""Timing: the one implementation used by ``infer``, ``compare``, the suite's latency column and
the benchmarks' synchronisation.

Warm-up calls first, then timed calls, each bracketed by device synchronisation; devices with
events (CUDA, NPU, XPU) are timed with device events, the CPU with ``time.perf_counter``. Every
output (warm-up ones too) is kept as a digest of its bytes, taken after its timed window: the
run-to-run consistency check (:mod:`resnet34_npu.judge.consistency`) reads them, and one copy of
each distinct output, at no extra forward pass.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable

from resnet34_npu.targets import devices, watchdog

if TYPE_CHECKING:
    import numpy as np
    import torch

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
    #: every timed call's latency (ms), in order: what a history's statistical tests run on
    samples: tuple[float, ...] = ()
    #: blake2b digest of every output's bytes, in call order (warm-up calls first); empty when the
    #: callable returns no tensor
    digests: tuple[str, ...] = ()
    #: one CPU copy of each distinct output, by digest (not serialised: the judge measures how far
    #: apart they are)
    outputs: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @property
    def throughput_ips(self) -> float:
        """Images per second at the median latency."""
        return self.batch_size * 1000.0 / self.median if self.median > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "outputs"}
        return _plain(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timing:
        """The inverse of :meth:`to_dict` (records travel between pytest-xdist workers as dicts)."""
        optional = ("samples", "digests", "outputs")
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data or f.name not in optional}
        values.pop("outputs", None)
        tuples = {k: tuple(values.get(k, ())) for k in ("samples", "digests")}
        return cls(**{**values, **tuples})

    @classmethod
    def from_samples(
        cls, samples_ms: list[float], warmup: int, batch_size: int, clock: str, outputs: OutputLog | None = None
    ) -> Timing:
        import numpy as np

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
            samples=tuple(float(v) for v in samples_ms),
            digests=() if outputs is None else tuple(outputs.digests),
            outputs={} if outputs is None else dict(outputs.distinct),
        )


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def digest(out: Any) -> str | None:
    """blake2b (16 bytes) of a tensor's dtype, shape and bytes, or None when ``out`` is no tensor."""
    import torch

    if not isinstance(out, torch.Tensor):
        return None
    array = out.detach().cpu().contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{array.dtype}{tuple(array.shape)}".encode())
    h.update(array.view(torch.uint8).numpy().tobytes() if array.numel() else b"")
    return h.hexdigest()


@dataclass
class OutputLog:
    """The digests of a run's outputs, in order, and one CPU copy of each distinct one."""

    digests: list[str] = field(default_factory=list)
    distinct: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, out: Any) -> None:
        import torch

        key = digest(out)
        if key is None:
            return
        self.digests.append(key)
        if key not in self.distinct:
            tensor = out.detach().cpu()
            self.distinct[key] = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy().copy()


def _event_class(device: torch.device) -> Any:
    import torch

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
    import torch

    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got warmup={warmup} iters={iters}")
    sync = synchronize or (lambda: devices.synchronize(device))
    log = OutputLog()
    for _ in range(warmup):
        with watchdog.device_call("forward"):  # a watched worker's deadline (nothing outside one)
            log.add(fn())
    with watchdog.device_call("synchronize"):
        sync()
    event = _event_class(device) if synchronize is None else None
    samples: list[float] = []
    for _ in range(iters):
        # a watched worker's deadline; its bracket lies outside the timed window, and a call that
        # raised or hung never becomes a sample
        with watchdog.device_call("timing"):
            if event is not None:
                with getattr(torch, device.type).device(device):
                    start, end = event(enable_timing=True), event(enable_timing=True)
                    start.record()
                    out = fn()
                    end.record()
                    end.synchronize()
                samples.append(float(start.elapsed_time(end)))
                log.add(out)
            else:
                sync()
                begin = time.perf_counter()
                out = fn()
                sync()
                samples.append((time.perf_counter() - begin) * 1000.0)
                log.add(out)
    clock = "device events" if event is not None else "perf_counter"
    return Timing.from_samples(samples, warmup, batch_size, clock, log)


#: The confidence of a speedup's interval, and the bootstrap's resamples (seeded: one answer a run).
SPEEDUP_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 4000
#: LoadGen's early-stopping rule: the fewest samples that support a p90 claim at all.
P90_MIN_SAMPLES = 64


def time_interleaved(
    calls: list[tuple[Callable[[], Any], torch.device, Callable[[], None] | None]],
    *,
    warmup: int = DEFAULT_WARMUP,
    iters: int = DEFAULT_ITERS,
    batch_size: int = 1,
) -> list[Timing]:
    """Time several calls (``(fn, device, synchronize)``: the reference and a target) in
    interleaved rounds, ABAB..., each call timed by :func:`time_call`: drift of the host between
    rounds lands on both sides alike, never in their ratio alone."""
    parts: list[list[Timing]] = [[] for _ in calls]
    for round_ in range(iters):
        for k, (fn, device, sync) in enumerate(calls):
            first = warmup if round_ == 0 else 0
            parts[k].append(time_call(fn, device, warmup=first, iters=1, batch_size=batch_size, synchronize=sync))
    joined = []
    for timings in parts:
        log = OutputLog()
        for t in timings:
            log.digests += list(t.digests)
            log.distinct.update(t.outputs)
        samples = [s for t in timings for s in t.samples]
        joined.append(Timing.from_samples(samples, warmup, batch_size, timings[0].clock, log))
    return joined


def speedup_interval(reference: Timing | None, target: Timing | None) -> tuple[float, float] | None:
    """The speedup's (reference median / target median) 95 % interval by a paired bootstrap over
    the interleaved rounds (seeded); None without paired samples."""
    import numpy as np

    if reference is None or target is None or len(reference.samples) != len(target.samples) or not target.samples:
        return None
    ref, tgt = np.asarray(reference.samples), np.asarray(target.samples)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(ref), size=(BOOTSTRAP_RESAMPLES, len(ref)))
    ratios = np.median(ref[picks], axis=1) / np.maximum(np.median(tgt[picks], axis=1), 1e-12)
    tail = (1.0 - SPEEDUP_CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def speedup_text(value: float | None, interval: tuple[float, float] | None) -> str:
    """``about 1x`` when the interval holds 1 (no difference shown), else ``1.84x [1.71-1.95]``."""
    if value is None:
        return "-"
    if interval is None:
        return f"{value:.2f}x"
    low, high = interval
    if low <= 1.0 <= high:
        return "about 1x"
    return f"{value:.2f}x [{low:.2f}-{high:.2f}]"


def p90_note(timing: Timing) -> str:
    """Why a p90 is not stated ("" when it is): LoadGen's early stopping needs >= 64 samples."""
    if timing.iterations >= P90_MIN_SAMPLES:
        return ""
    return f"no p90: {timing.iterations} samples, LoadGen's early-stopping rule needs at least {P90_MIN_SAMPLES}"
