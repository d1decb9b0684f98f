"""The gate's calibration, measured, not resampled: a sequence of real runs (each a list of raw
latency samples, e.g. ResNet34 forwards on this machine, in the order they ran) is replayed as a
CI history would grow: each run from the :data:`~resnet34_npu.history.gate.MIN_HISTORY`-th on is
judged against every run before it, as it is (A/A: a failure is a false alarm) and multiplied by
``1 + step`` (detection of a step in the first run after it). No run is drawn twice, the newest
never sits in its own baseline, and drift over the sequence stays in it. Used by the calibration
benchmark; figures in the README."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from resnet34_npu.history import changes, gate, series
from resnet34_npu.history.record import Record, TargetResult


@dataclass(frozen=True)
class Calibration:
    runs: int
    judged: int  # runs judged (each against every run before it)
    run_noise: float  # relative std of the runs' medians
    gate_false_alarms: float  # A/A: fraction of judged runs that fail the gate
    false_steps: int  # A/A: change points found in the whole sequence
    detection: dict[str, float]  # injected step -> fraction of judged runs the gate fails

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "judged": self.judged,
            "run_noise": self.run_noise,
            "gate_false_alarms": self.gate_false_alarms,
            "false_steps": self.false_steps,
            "detection": dict(self.detection),
        }


def records(runs: list[list[float]], step: float = 0.0) -> list[Record]:
    """The records of ``runs`` in order, the last multiplied by ``1 + step``."""
    out = []
    for i, run in enumerate(runs):
        samples = np.asarray(run) * (1 + step if i == len(runs) - 1 else 1.0)
        result = TargetResult("cpu/fp32", "calibration", 1, tuple(float(v) for v in samples))
        out.append(
            Record(
                f"{i:032d}",
                f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
                "calibration",
                {},
                {},
                (result,),
            )
        )
    return out


def calibrate(runs: list[list[float]], *, steps: tuple[float, ...] = (0.03, 0.06, 0.10)) -> Calibration:
    if len(runs) < gate.MIN_HISTORY + 1:
        raise ValueError(f"calibration needs at least {gate.MIN_HISTORY + 1} runs, got {len(runs)}")
    ends = range(gate.MIN_HISTORY + 1, len(runs) + 1)

    def rate(step: float) -> float:
        return float(np.mean([gate.failed(gate.check(records(runs[:end], step))) for end in ends]))

    medians = np.array([np.median(r) for r in runs])
    (whole,) = series.build(records(runs))
    return Calibration(
        runs=len(runs),
        judged=len(ends),
        run_noise=float(np.std(medians, ddof=1) / np.median(medians)),
        gate_false_alarms=rate(0.0),
        false_steps=len(changes.steps(whole)),
        detection={f"{s:.0%}": rate(s) for s in steps},
    )
