"""The CI gate: the newest run judged against its series. A figure fails only when it is worse
by a Mann-Whitney U test on the raw samples (one-sided, p < :data:`ALPHA`; rank-based, so the
right-skewed, outlier-prone latency samples need no normal model, and exact and deterministic
where a bootstrap interval would need resampling and a seed) AND by more than a practical
threshold (default 5 %, settable per series) AND by more than :data:`NOISE_MULTIPLE` times the
series' own run-to-run noise (the samples of one run agree more with each other than runs do,
so the test on raw samples alone fires on a shared machine's run-to-run swings: measured,
README). The p90 (tail latency) is gated on its own, by the same threshold and noise rules: a
driver or runtime release can add stalls to a tenth of the calls with the median unmoved, and
that is what users of a served model feel; its significance comes from :func:`tail_p`, an exact
quantile (binomial) test on the raw samples, since a Mann-Whitney test on all the samples
answers for the bulk, not the tail (with 10 samples a run it takes 5 above the baseline's p90 to
reach p < :data:`ALPHA`: a small tail change needs more samples a run). A figure with no
comparable history is said so, once, and the gate is not applied to
it; a methodology change is never compared across."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from resnet34_npu.core.errors import InputError
from resnet34_npu.history import changes
from resnet34_npu.history.record import Record
from resnet34_npu.history.series import Point, Series, build, differences
from resnet34_npu.judge.criteria import Status

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
    """The robust relative spread of runs' figures: 1.4826 x the MAD of their logs (0 for one run;
    figures of exactly 0, a bit-exact accuracy figure, have no log and no spread: left out)."""
    positive = np.asarray([v for v in values if v > 0], dtype=np.float64)
    if len(positive) < 2:
        return 0.0
    logs = np.log(positive)
    return float(1.4826 * np.median(np.abs(logs - np.median(logs))))


def tail_p(new: list[float], baseline: list[float], quantile: float = 0.9) -> float:
    """One-sided p that the newest run's tail is slower: of its ``n`` samples, ``k`` lie above the
    baseline samples' ``quantile``; under no change each does so with probability at most
    ``1 - quantile``, so p = P(Binomial(n, 0.1) >= k) (the exact quantile test; rank-based like
    the median's Mann-Whitney, no model of the latency distribution, deterministic)."""
    from scipy.stats import binom

    if np.ptp(np.r_[new, baseline]) == 0:
        return 1.0
    k = int(np.sum(np.asarray(new) > np.quantile(baseline, quantile)))
    return float(binom.sf(k - 1, len(new), 1.0 - quantile))


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
    """One figure of a series' newest run. ``status`` is the report's :class:`Status`: ``PASS``,
    ``FAIL``, ``SKIPPED`` (no comparable history: the gate is not applied to it) or ``NOT_RUN``
    (the series has no run in the newest record: information, its own newest run is judged)."""

    series: str
    measure: str
    status: Status
    line: str
    change: float | None = None
    p_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "measure": self.measure,
            "status": Status(self.status).value,
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


def _baseline(series: Series, measure: changes.Measure, found: list[changes.Step]) -> tuple[list[Point], str]:
    """The runs the newest is compared with, and a note. The steps are the analysis' own (so gate
    and ``report history`` agree): since the last step with at least :data:`MIN_HISTORY` runs
    before the newest; a more recent step (its new level not yet established) is the regression
    itself, so the runs before it are the baseline and the note names it."""
    newest = len(series.points) - 1
    cps = sorted(s.run - 1 for s in found if s.measure == measure.name)
    settled = [c for c in cps if newest - c >= MIN_HISTORY]
    fresh = [s for s in found if s.measure == measure.name and newest - (s.run - 1) < MIN_HISTORY]
    start = settled[-1] if settled else 0
    end = fresh[0].run - 1 if fresh else newest
    points = [p for p in series.points[start:end] if measure.value(p) is not None][-BASELINE_RUNS:]
    note = ""
    if fresh:
        step = fresh[0]
        what = "from exactly 0" if step.from_zero else f"{step.change:+.1%}"
        note = (
            f"; the step at run {step.run} ({what}, {newest - step.run + 1} run(s) before this one) is the "
            "regression: compared with the runs before it"
        )
    return points, note


def _judge(series: Series, threshold: float, found: list[changes.Step] | None = None) -> list[Verdict]:
    from scipy.stats import mannwhitneyu

    newest = series.points[-1]
    found = changes.steps(series) if found is None else found
    out = []
    for measure in changes.measures(series):
        history = [p for p in series.points[:-1] if measure.value(p) is not None]
        value = measure.value(newest)
        if value is None or len(history) < MIN_HISTORY:
            out.append(
                Verdict(
                    series.key,
                    measure.name,
                    Status.SKIPPED,
                    f"no comparable history for {series.label} {measure.name} "
                    f"({len(history)} earlier run(s), {MIN_HISTORY} needed): gate not applied",
                )
            )
            continue
        baseline_points, note = _baseline(series, measure, found)
        runs = [measure.value(p) for p in baseline_points]
        env = differences(baseline_points[-1].record.environment, newest.record.environment)
        env_text = f"; environment since the previous run: {'; '.join(env)}" if env else ""
        if measure.accuracy and min(runs) == 0 and max(runs) == 0:  # bit-exact: no ratio, no log
            if value == 0:
                line = (
                    f"PASS: {series.label} {measure.name}: exactly 0 in the newest run and its {len(runs)} "
                    "baseline run(s) (bit-exact)"
                )
                out.append(Verdict(series.key, measure.name, Status.PASS, line + note + env_text, 0.0, None))
            else:
                line = (
                    f"FAIL: {series.label} {measure.name}: 0 -> {value:.4g} (exactly 0 in its {len(runs)} baseline "
                    "run(s), no longer bit-exact), a regression"
                )
                out.append(Verdict(series.key, measure.name, Status.FAIL, line + note + env_text, None, None))
            continue
        base = float(np.median(runs))
        if base == 0:  # mostly exactly 0, sometimes not: the non-zero runs are the scale
            base = float(np.median([v for v in runs if v > 0]))
        change = value / base - 1.0
        spread = math.expm1(NOISE_MULTIPLE * run_noise(runs))
        limit = max(changes.DRIFT_FACTOR - 1.0 if measure.accuracy else threshold, spread)
        new_raw, old_raw = measure.raw(newest), [v for p in baseline_points for v in measure.raw(p)]
        if len(new_raw) >= 2 and len(old_raw) >= 2 and measure.name.startswith("latency p90"):
            test, p = "tail test (new samples above the baseline's p90, binomial)", tail_p(new_raw, old_raw)
        elif len(new_raw) >= 2 and len(old_raw) >= 2:
            test = "Mann-Whitney U"
            p = (
                1.0
                if np.ptp(new_raw + old_raw) == 0
                else float(mannwhitneyu(new_raw, old_raw, alternative="greater").pvalue)
            )
        else:  # no raw samples (an aggregate-only import): the run's rank among the baseline runs'
            test = "rank among the baseline runs"
            p = (sum(v >= value for v in runs) + 1) / (len(runs) + 1)  # an exact empirical p: never 0
            if measure.accuracy:  # a computed figure, not a noisy timing: the drift factor (and the noise) decide
                test, p = "no per-image samples: drift factor and noise alone; rank", p
            elif 1 / (len(runs) + 1) >= ALPHA:  # too few runs to ever be significant: say so, never a pass
                out.append(
                    Verdict(
                        series.key,
                        measure.name,
                        Status.SKIPPED,
                        f"no comparable history for {series.label} {measure.name}: no raw samples, and "
                        f"{len(runs)} baseline run(s) cannot reach p < {ALPHA} by rank ({change:+.1%}): "
                        "gate not applied (save raw samples: --benchmark-save-data)",
                        change,
                        p,
                    )
                )
                continue
        worse = change > limit and (p < ALPHA or (measure.accuracy and test.startswith("no per-image")))
        status = Status.FAIL if worse else Status.PASS
        what = "slower" if not measure.accuracy else "worse"
        now = f"{value:.4g}" + (" (exactly 0)" if value == 0 else "")
        line = (
            f"{status.value.upper()}: {series.label} {measure.name}: {base:.4g} -> {now} ({change:+.1%}; "
            f"{'fails above' if not measure.accuracy else 'drift from'} {limit:+.1%}"
            + (f", {NOISE_MULTIPLE:g} x the runs' noise" if limit == spread else "")
            + f"), {test} p={p:.2g} "
            f"(significant below {ALPHA})" + (f": {change:.1%} {what}, a regression" if worse else "")
        )
        out.append(Verdict(series.key, measure.name, status, line + note + env_text, change, p))
    return out


def check(
    records: tuple[Record, ...] | list[Record],
    *,
    thresholds: list[tuple[str, float]] | None = None,
    default: float = DEFAULT_THRESHOLD,
    steps: dict[str, list[changes.Step]] | None = None,
) -> list[Verdict]:
    """The verdicts of every series, each judged by its own newest run (an empty history: one
    "not applied" line). A series with no run in the newest record is also listed as "not in
    this run", never skipped: an import or a run of other targets cannot blind the gate. ``steps``:
    the analysis' steps by series key, where already found (``report history`` shows both)."""
    if not records:
        return [
            Verdict(
                "",
                "",
                Status.SKIPPED,
                "no comparable history for any target (the history is empty): gate not applied",
            )
        ]
    newest = max(records, key=lambda r: (r.created, r.name))
    all_series = build(records)
    out: list[Verdict] = []
    for series in all_series:
        last = series.points[-1].record
        if last is not newest:
            out.append(
                Verdict(
                    series.key,
                    "",
                    Status.NOT_RUN,
                    f"not in this run: {series.label} ({series.title}); judged by its own newest run, "
                    f"{last.created[:19]} (run id {last.run_id[:12]})",
                )
            )
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
                        Status.SKIPPED,
                        f"no comparable history for {series.label}: its methodology differs from the history's "
                        f"({what}); runs of different methodologies are never compared: gate not applied",
                    )
                )
                continue
        found = None if steps is None else steps.get(series.key)
        out.extend(_judge(series, _threshold(series, thresholds or [], default), found))
    return out


def failed(verdicts: list[Verdict]) -> bool:
    return any(v.status == Status.FAIL for v in verdicts)
