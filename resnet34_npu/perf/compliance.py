"""MLPerf's compliance tests and accuracy check, on what the system under test answered.

* TEST01: every output logged under load (the performance run) equals, bit for bit, the
  accuracy run's output of the same sample (the suite's output digests, ``timing.digest``). A
  system that returns stale or cached results, or whose outputs depend on the load, fails.
* TEST04: a run whose every query is the same sample must not be more than 10 % faster than one
  of distinct samples (a system that caches results by input fails).
* Accuracy: top-1 through LoadGen's accuracy run against the CPU fp32 reference's on the same
  samples (MLPerf's 99 % rule); with labels, both against the labels, else agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: TEST04: the repeated-sample run may be at most this much faster (MLPerf: 10 %).
TEST04_THRESHOLD = 0.10
#: Accuracy: at least this fraction of the reference's top-1 (MLPerf: 99 %).
ACCURACY_FRACTION = 0.99


@dataclass(frozen=True)
class Test01:
    passed: bool
    samples: int
    outputs: int
    mismatched: tuple[int, ...]
    line: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "samples": self.samples,
            "outputs": self.outputs,
            "mismatched_samples": list(self.mismatched),
            "line": self.line,
        }


def test01(accuracy: dict[int, set[str]], performance: dict[int, set[str]], names: tuple[str, ...]) -> Test01:
    """Every digest of ``performance`` (per sample index) against the one of ``accuracy``."""
    mismatched = []
    for index, keys in sorted(performance.items()):
        expected = accuracy.get(index, set())
        if len(expected) != 1 or keys != expected:
            mismatched.append(index)
    outputs = sum(len(k) for k in performance.values())
    if not performance:
        return Test01(False, 0, 0, (), "TEST01: no output was logged under load")
    if mismatched:
        first = mismatched[0]
        seen = len(performance[first])
        line = (
            f"TEST01: {len(mismatched)} of {len(performance)} samples' outputs under load differ from the accuracy "
            f"run's (first: sample {first} {names[first]!r}, {seen} distinct output(s) under load, "
            f"{len(accuracy.get(first, ()))} in the accuracy run)"
        )
        return Test01(False, len(performance), outputs, tuple(mismatched), line)
    line = f"TEST01: {len(performance)} samples, every output under load equals the accuracy run's bit for bit"
    return Test01(True, len(performance), outputs, (), line)


@dataclass(frozen=True)
class Test04:
    passed: bool
    metric: str
    unique: float | None
    same: float | None
    line: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "metric": self.metric,
            "unique": self.unique,
            "same": self.same,
            "line": self.line,
        }


def test04(unique: float | None, same: float | None, *, throughput: bool) -> Test04:
    """``throughput``: samples/s (higher is faster), else a median latency in ms (lower is faster)."""
    metric = "samples/s" if throughput else "median latency (ms)"
    if not unique or not same:
        return Test04(False, metric, unique, same, "TEST04: a run gave no figure")
    gain = (same / unique - 1.0) if throughput else (unique / same - 1.0)
    passed = gain <= TEST04_THRESHOLD
    line = (
        f"TEST04: the same sample repeated is {gain * 100:+.1f} % faster than distinct samples "
        f"({metric} {same:.4g} vs {unique:.4g}); allowed at most {TEST04_THRESHOLD * 100:.0f} %"
    )
    return Test04(passed, metric, unique, same, line + ("" if passed else ": results are cached"))


@dataclass(frozen=True)
class Accuracy:
    samples: int
    labelled: bool
    target_top1: float
    reference_top1: float | None
    agreement: float
    passed: bool
    line: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "labelled": self.labelled,
            "target_top1": self.target_top1,
            "reference_top1": self.reference_top1,
            "top1_agreement": self.agreement,
            "required_fraction": ACCURACY_FRACTION,
            "passed": self.passed,
            "line": self.line,
        }


def accuracy(target: np.ndarray, reference: np.ndarray, labels: tuple[int | None, ...]) -> Accuracy:
    """Top-1 of ``target`` logits [N, 1000] against ``reference``'s: against the labels when every
    sample has one (the target needs >= 99 % of the reference's top-1), else agreement (>= 99 %)."""
    mine, theirs = target.argmax(axis=1), reference.argmax(axis=1)
    agreement = float((mine == theirs).mean())
    if labels and all(label is not None for label in labels):
        truth = np.asarray(labels)
        top1, ref = float((mine == truth).mean()), float((theirs == truth).mean())
        passed = top1 >= ACCURACY_FRACTION * ref
        line = f"accuracy: top-1 {top1:.4f} against the reference's {ref:.4f} on {len(truth)} labelled samples " + (
            f"(>= {ACCURACY_FRACTION:.0%} of it)" if passed else f"(below {ACCURACY_FRACTION:.0%} of it)"
        )
        return Accuracy(len(truth), True, top1, ref, agreement, passed, line)
    passed = agreement >= ACCURACY_FRACTION
    line = f"accuracy: top-1 agrees with the reference's on {agreement:.2%} of {len(mine)} unlabelled samples" + (
        "" if passed else f" (below {ACCURACY_FRACTION:.0%})"
    )
    return Accuracy(len(mine), False, agreement, None, agreement, passed, line)
