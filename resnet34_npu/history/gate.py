"""The CI gate: the newest run judged against its series. A figure fails only when it is worse
by a Mann-Whitney U test on the raw samples (one-sided, p < :data:`ALPHA`; rank-based, so the
right-skewed, outlier-prone latency samples need no normal model, and exact and deterministic
where a bootstrap interval would need resampling and a seed) AND by more than a practical
threshold (default 5 %, settable per series) AND by more than :data:`NOISE_MULTIPLE` times the
series' own run-to-run noise (the samples of one run agree more with each other than runs do,
so the test on raw samples alone fires on a shared machine's run-to-run swings: measured,
README). A figure with no comparable history is said so, once, and the gate is not applied to
it; a methodology change is never compared across."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from resnet34_npu.core.errors import InputError
from resnet34_npu.history import changes
from resnet34_npu.history.record import Record
from resnet34_npu.history.series import Series, build, differences

#: one-sided Mann-Whitney U level on the raw samples (asv compare's 0.002)
ALPHA = 0.002
#: the default practical threshold: a regression smaller than this never fails the gate
DEFAULT_THRESHOLD = 0.05
#: the fewest earlier runs of a series a gate compares against
MIN_HISTORY = 3
#: the most earlier runs (since the last step) whose samples form the baseline
BASELINE_RUNS = 20
#: a change must also exceed this many times the baseline runs' robust run-to-run spread
NOISE_MULTIPLE = 3.0


def run_noise(values: list[float]) -> float:
    """The robust relative spread of runs' figures: 1.4826 x the MAD of their logs (0 for one run)."""
    logs = np.log(np.asarray(values, dtype=np.float64))
    return float(1.4826 * np.median(np.abs(logs - np.median(logs)))) if len(logs) > 1 else 0.0


def parse_threshold(text: str) -> tuple[str, float]:
    """``5%`` (every series) or ``TARGET=8%`` (series whose target or key contains TARGET)."""
    pattern, _, value = text.rpartition("=")
    raw = value.strip()
    try:
        number = float(raw[:-1]) / 100 if raw.endswith("%") else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise InputError(f"--threshold {text!r}: not a percentage such as 5% or cpu/fp32/eager=8%")
    return pattern.strip(), number


@dataclass(frozen=True)
class Verdict:
    """One figure of the newest run: ``status`` is ``pass``, ``fail`` or ``not applied``."""

    series: str
    measure: str
    status: str
    line: str
    change: float | None = None
    p_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "measure": self.measure,
            "status": self.status,
            "line": self.line,
            "change": self.change,
            "p_value": self.p_value,
        }


def _threshold(series: Series, thresholds: list[tuple[str, float]], default: float) -> float:
    chosen = default
    for pattern, value in thresholds:
        if not pattern:
            chosen = value
        elif pattern in series.target or pattern in series.key:
            return value
    return chosen


def _judge(series: Series, threshold: float) -> list[Verdict]:
    from scipy.stats import mannwhitneyu

    newest = series.points[-1]
    out = []
    for measure in changes.measures(series):
        if measure.name.startswith("latency p90"):
            continue  # the median's samples are the p90's: one test per sample set
        history = [p for p in series.points[:-1] if measure.value(p) is not None]
        value = measure.value(newest)
        if value is None or len(history) < MIN_HISTORY:
            out.append(
                Verdict(
                    series.key,
                    measure.name,
                    "not applied",
                    f"no comparable history for {series.label} {measure.name} "
                    f"({len(history)} earlier run(s), {MIN_HISTORY} needed): gate not applied",
                )
            )
            continue
        values = [measure.value(p) for p in history]
        cps = changes.change_points(values) if len(values) >= 2 * changes.MIN_SEGMENT and min(values) > 0 else []
        baseline_points = history[(cps[-1] if cps else 0) :][-BASELINE_RUNS:]
        base = float(np.median([measure.value(p) for p in baseline_points]))
        change = value / base - 1.0 if base > 0 else math.inf
        spread = math.expm1(NOISE_MULTIPLE * run_noise([measure.value(p) for p in baseline_points]))
        limit = max(changes.DRIFT_FACTOR - 1.0 if measure.accuracy else threshold, spread)
        new_raw, old_raw = measure.raw(newest), [v for p in baseline_points for v in measure.raw(p)]
        if len(new_raw) >= 2 and len(old_raw) >= 2:
            test = "Mann-Whitney U"
            p = (
                1.0
                if np.ptp(new_raw + old_raw) == 0
                else float(mannwhitneyu(new_raw, old_raw, alternative="greater").pvalue)
            )
        else:  # no raw samples (an aggregate-only import): the run's rank among the baseline runs'
            test = "rank among the baseline runs"
            runs = [measure.value(q) for q in baseline_points]
            p = (sum(v >= value for v in runs) + 1) / (len(runs) + 1)  # an exact empirical p: never 0
            if measure.accuracy:  # a computed figure, not a noisy timing: the drift factor (and the noise) decide
                test, p = "no per-image samples: drift factor and noise alone; rank", p
            elif 1 / (len(runs) + 1) >= ALPHA:  # too few runs to ever be significant: say so, never a pass
                out.append(
                    Verdict(
                        series.key,
                        measure.name,
                        "not applied",
                        f"no comparable history for {series.label} {measure.name}: no raw samples, and "
                        f"{len(runs)} baseline run(s) cannot reach p < {ALPHA} by rank ({change:+.1%}): "
                        "gate not applied (save raw samples: --benchmark-save-data)",
                        change,
                        p,
                    )
                )
                continue
        worse = change > limit and (p < ALPHA or (measure.accuracy and test.startswith("no per-image")))
        status = "fail" if worse else "pass"
        what = "slower" if not measure.accuracy else "worse"
        line = (
            f"{status.upper()}: {series.label} {measure.name}: {base:.4g} -> {value:.4g} ({change:+.1%}; "
            f"{'fails above' if not measure.accuracy else 'drift from'} {limit:+.1%}"
            + (f", {NOISE_MULTIPLE:g} x the runs' noise" if limit == spread else "")
            + f"), {test} p={p:.2g} "
            f"(significant below {ALPHA})" + (f": {change:.1%} {what}, a regression" if worse else "")
        )
        env = differences(baseline_points[-1].record.environment, newest.record.environment)
        if env:
            line += f"; environment since the previous run: {'; '.join(env)}"
        out.append(Verdict(series.key, measure.name, status, line, change, p))
    return out


def check(
    records: tuple[Record, ...] | list[Record],
    *,
    thresholds: list[tuple[str, float]] | None = None,
    default: float = DEFAULT_THRESHOLD,
) -> list[Verdict]:
    """The verdicts of the newest record's figures (an empty history: one "not applied" line)."""
    if not records:
        return [
            Verdict(
                "", "", "not applied", "no comparable history for any target (the history is empty): gate not applied"
            )
        ]
    newest = max(records, key=lambda r: (r.created, r.name))
    all_series = build(records)
    out: list[Verdict] = []
    present = {(s.device, s.target, s.batch) for s in all_series if s.points and s.points[-1].record is newest}
    for series in all_series:
        if not series.points:
            continue
        if series.points[-1].record is not newest:
            if (series.device, series.target, series.batch) not in present:  # never a silent pass
                out.append(
                    Verdict(
                        series.key,
                        "",
                        "not applied",
                        f"no comparable run for {series.label}: it is in the history but absent from the newest "
                        "run: gate not applied",
                    )
                )
            continue
        if len(series.points) == 1:
            others = [
                s
                for s in all_series
                if s is not series and (s.device, s.target, s.batch) == (series.device, series.target, series.batch)
            ]
            if others:
                what = "; ".join(differences(others[-1].methodology, series.methodology))
                out.append(
                    Verdict(
                        series.key,
                        "",
                        "not applied",
                        f"no comparable history for {series.label}: its methodology differs from the history's "
                        f"({what}); runs of different methodologies are never compared: gate not applied",
                    )
                )
                continue
        out.extend(_judge(series, _threshold(series, thresholds or [], default)))
    return out


def failed(verdicts: list[Verdict]) -> bool:
    return any(v.status == "fail" for v in verdicts)
