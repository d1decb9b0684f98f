"""Synthetic histories with known steps: what the change-point tests, the calibration
benchmark and the README's example are built from (never written by a real run)."""

from __future__ import annotations

import datetime as _dt
from typing import Callable

import numpy as np

from resnet34_npu.history.record import Record, TargetResult

METHODOLOGY = {"warmup": 3, "iterations": 10, "clock": "perf_counter", "profile": "default", "weights": "synthetic"}


def history(
    runs: int = 60,
    *,
    noise: float = 0.03,
    latency_step: tuple[int, float] | None = (31, 0.06),
    drift: tuple[int, float] | None = (45, 3.0),
    samples: int = 10,
    seed: int = 0,
    target: str = "cpu/fp32/eager",
    base_ms: float = 100.0,
    run_noise: np.ndarray | None = None,
    bit_exact_until: int | None = None,
) -> list[Record]:
    """``runs`` records of one target: latency ``base_ms`` with ``noise`` relative run-to-run
    noise (and as much within a run), times ``1 + step`` from run ``latency_step[0]`` (1-based),
    rel L2 times ``drift[1]`` from run ``drift[0]``; the environment changes at each step
    (``torch`` at the latency step, ``CANN`` at the drift). ``run_noise`` replaces the drawn
    run-to-run noise (relative deviations of each run, e.g. measured on this machine).
    ``bit_exact_until`` (1-based): rel L2 exactly 0 (cosine 1) before that run, ``CANN`` 8.5.1 from it."""
    rng = np.random.default_rng(seed)
    start = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)
    out = []
    for i in range(1, runs + 1):
        level = base_ms * (1 + (run_noise[i - 1] if run_noise is not None else noise * rng.standard_normal()))
        env = {"host": "synthetic", "torch": "2.4.0", "CANN": "8.5.0"}
        if latency_step and i >= latency_step[0]:
            level *= 1 + latency_step[1]
            env["torch"] = "2.5.0"
        rel = 1e-6 * (1 + noise * rng.standard_normal())
        if drift and i >= drift[0]:
            rel *= drift[1]
            env["CANN"] = "8.5.1"
        if bit_exact_until:
            rel = 0.0 if i < bit_exact_until else rel
            env["CANN"] = "8.5.0" if i < bit_exact_until else "8.5.1"
        raw = level * (1 + noise * rng.standard_normal(samples))
        images = tuple({"rel_l2": rel * (1 + 0.2 * rng.standard_normal()) ** 2} for _ in range(4))
        result = TargetResult(
            target=target,
            device="synthetic host",
            batch=1,
            samples_ms=tuple(float(v) for v in raw),
            median_ms=float(np.median(raw)),
            p90_ms=float(np.percentile(raw, 90)),
            accuracy={"rel_l2": max(im["rel_l2"] for im in images), "cosine": 1 - rel},
            images=images,
            status="pass",
        )
        created = (start + _dt.timedelta(days=i)).isoformat(timespec="seconds")
        out.append(Record(f"{seed:04d}{i:04d}" + "0" * 24, created, "synthetic", env, dict(METHODOLOGY), (result,)))
    return out


def benchmark_runs(
    runs: int = 60,
    *,
    noise: float = 0.03,
    step: tuple[int, float] | None = (31, 0.06),
    machine: dict[str, Callable[[int], object]] | None = None,
    samples: int = 10,
    seed: int = 0,
    base_ms: float = 50.0,
    extra_info: dict[str, object] | None = None,
) -> list[dict[str, object]]:
    """``runs`` pytest-benchmark saved runs (the JSON ``--benchmark-autosave --benchmark-save-data``
    writes) of one benchmark: ``base_ms`` with ``noise`` run-to-run and within a run, times
    ``1 + step[1]`` from run ``step[0]`` (1-based); ``machine``: extra ``machine_info`` keys, each
    a function of the run number (``{"cann": lambda i: "8.5.0" if i < 31 else "8.5.1"}``)."""
    rng = np.random.default_rng(seed)
    start = _dt.datetime(2026, 1, 1)
    out = []
    for i in range(1, runs + 1):
        level = base_ms * (1 + noise * rng.standard_normal()) * (1 + step[1] if step and i >= step[0] else 1.0)
        data = [float(v) / 1000.0 for v in level * (1 + noise * rng.standard_normal(samples))]
        stats = {
            "min": min(data),
            "max": max(data),
            "mean": float(np.mean(data)),
            "median": float(np.median(data)),
            "rounds": samples,
            "iterations": 1,
            "data": data,
        }
        info = {
            "node": "bench-host",
            "processor": "x86_64",
            "machine": "x86_64",
            "python_version": "3.11.7",
            "system": "Linux",
            "release": "6.1.0",
            "cpu": {"brand_raw": "Synthetic CPU"},
            **{key: value(i) for key, value in (machine or {}).items()},
        }
        bench = {
            "group": None,
            "name": "test_forward[cpu/fp32-1]",
            "fullname": "tests/benchmarks/test_benchmarks.py::test_forward[cpu/fp32-1]",
            "params": None,
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "warmup": False},
            "extra_info": dict(extra_info or {}),
            "stats": stats,
        }
        created = (start + _dt.timedelta(days=i)).isoformat(timespec="microseconds")
        commit = {"id": f"{i:040x}", "dirty": False, "project": "synthetic", "branch": "main"}
        out.append(
            {
                "machine_info": info,
                "commit_info": commit,
                "benchmarks": [bench],
                "datetime": created,
                "version": "5.2.3",
            }
        )
    return out
