"""The gate's calibration: false alarms on A/A histories and detection of injected steps, built
from measured runs (each a list of raw latency samples, e.g. real ResNet34 forwards on this
machine): each history of ``length`` runs draws whole runs at random (run-to-run noise kept),
its newest run multiplied by ``1 + step``. Used by the calibration benchmark; figures in the README."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from resnet34_npu.history import changes, gate, series
from resnet34_npu.history.record import Record, TargetResult


@dataclass(frozen=True)
class Calibration:
    histories: int
    length: int
    run_noise: float  # relative std of the runs' medians
    gate_false_alarms: float  # A/A: fraction of histories whose newest run fails the gate
    false_steps: float  # A/A: fraction of histories with any change point
    detection: dict[str, float]  # injected step -> fraction the gate fails

    def to_dict(self) -> dict[str, Any]:
        return {
            "histories": self.histories,
            "length": self.length,
            "run_noise": self.run_noise,
            "gate_false_alarms": self.gate_false_alarms,
            "false_steps": self.false_steps,
            "detection": dict(self.detection),
        }


def _history(runs: list[list[float]], picks: np.ndarray, step: float) -> list[Record]:
    out = []
    for i, pick in enumerate(picks):
        samples = np.asarray(runs[pick]) * (1 + step if i == len(picks) - 1 else 1.0)
        result = TargetResult("cpu/fp32", "calibration", 1, tuple(float(v) for v in samples))
        out.append(
            Record(f"{i:032d}", f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00", "calibration", {}, {}, (result,))
        )
    return out


def calibrate(
    runs: list[list[float]],
    *,
    histories: int = 200,
    length: int = 20,
    steps: tuple[float, ...] = (0.03, 0.06, 0.10),
    seed: int = 0,
) -> Calibration:
    rng = np.random.default_rng(seed)
    picks = [rng.integers(0, len(runs), size=length) for _ in range(histories)]
    medians = np.array([np.median(r) for r in runs])

    def rate(step: float) -> float:
        return float(np.mean([gate.failed(gate.check(_history(runs, p, step))) for p in picks]))

    false_steps = float(np.mean([bool(changes.steps(series.build(_history(runs, p, 0.0))[0])) for p in picks]))
    return Calibration(
        histories=histories,
        length=length,
        run_noise=float(np.std(medians, ddof=1) / np.median(medians)),
        gate_false_alarms=rate(0.0),
        false_steps=false_steps,
        detection={f"{s:.0%}": rate(s) for s in steps},
    )
