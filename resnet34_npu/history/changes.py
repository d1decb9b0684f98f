"""Change points of each series: latency (median and p90 of each run) and each accuracy figure.

Candidates come from ruptures' Pelt (an L2 cost over the log of each run's figure, scaled by a
robust estimate of the run-to-run noise, penalty 6 ln n), chosen over Apache Otava's windowed
E-divisive by measurement on this project's 2-core VM (A/A series of 60 runs, 3 % noise:
ruptures at 4 ln n 1/200 false steps, Otava at p 0.001 8/200; at 6 ln n none in 200 x 4
measures; both find 99-100/100 6 % steps; README "Regression tracking"). A candidate is kept
only when the runs either side differ by a Mann-Whitney U test on the runs' figures
(p < :data:`RUN_ALPHA`); each step then carries a p-value from a Mann-Whitney U test on the raw
samples (latency samples, per-image accuracy figures) of the runs next to it, the % change, and
the environment differences across it. A figure that leaves or returns to exactly 0 (a bit-exact
rel L2 that becomes non-zero) has no log: that move is a step of its own (:func:`zero_steps`),
named with the first run after it, its run id and the environment change across it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from resnet34_npu.history.series import Point, Series, differences

#: the Pelt penalty, in units of the scaled noise: 6 ln(n) (BIC is 2 ln n; measured, README)
PENALTY_PER_LOG_N = 6.0
#: the shortest segment between two steps, in runs
MIN_SEGMENT = 3
#: a candidate step must separate the runs either side at this level (two-sided Mann-Whitney U)
RUN_ALPHA = 0.01
#: runs each side whose raw samples give a step's p-value
RAW_RUNS = 5
#: series up to this many runs are searched at every run; longer ones every n // EXACT_RUNS runs,
#: each step then placed exactly within that stride (10,000 records analysed in seconds, README)
EXACT_RUNS = 100
#: the relative noise floor of a figure (an accuracy figure can be identical run to run)
NOISE_FLOOR = 1e-3
#: an accuracy figure that moved by this factor is drift (the accuracy-drift table)
DRIFT_FACTOR = 2.0
#: 1 - cosine below this is the rounding of a cosine of 1 (a float64 cosine of identical vectors
#: reads 1 +/- a few ulps, so 1 - cosine is -8.9e-16 or 4.4e-16): counted as exactly 0. A real
#: difference this small is invisible anyway: 1 - cosine is about rel_l2 ** 2 / 2.
COSINE_ROUNDING = 16 * 2.0**-52
#: a step with too few runs on one side for the exact Mann-Whitney test to reach RUN_ALPHA (3 runs
#: after 6: its smallest two-sided p is 2 / C(9, 3) = 0.024) is kept when the two sides do not
#: overlap at all and their medians differ by more than this many times the run-to-run noise
SHORT_NOISE_MULTIPLE = 3.0
#: a step found this many runs or fewer from an environment change is moved onto it when the data
#: cannot tell the two places apart: the two-segment fit there within SNAP_COST of the best, in
#: squared noise units (3 noise widths; measured on 60-run histories, 6 % step at run 31 with a
#: CANN change there: placed exactly in 57/60 at 2 % noise and 60/60 at 1.5 %, against 52 and 58
#: at a cost of 4, and 21/30 without moving at 3 %)
SNAP_RUNS = 2
SNAP_COST = 9.0


@dataclass(frozen=True)
class Measure:
    """A figure of each run: its name, the run's value, the raw values behind it, whether
    higher is worse (latency, rel L2, max abs) and whether it is an accuracy figure."""

    name: str
    value: Callable[[Point], float | None]
    raw: Callable[[Point], list[float]]
    accuracy: bool


def _latency(stat: str) -> Measure:
    def value(p: Point) -> float | None:
        r = p.result
        if r.samples_ms:
            return float(np.median(r.samples_ms) if stat == "median" else np.percentile(r.samples_ms, 90))
        return r.median_ms if stat == "median" else r.p90_ms

    return Measure(f"latency {stat} (ms)", value, lambda p: list(p.result.samples_ms), accuracy=False)


def one_minus_cosine(cosine: float) -> float:
    """1 - cosine, exactly 0 within :data:`COSINE_ROUNDING` (never negative)."""
    d = 1.0 - cosine
    return 0.0 if d < COSINE_ROUNDING else d


def _figure(name: str) -> Measure:
    def value(p: Point) -> float | None:
        v = p.result.accuracy.get(name)
        return None if v is None or not math.isfinite(v) else (one_minus_cosine(v) if name == "cosine" else v)

    def raw(p: Point) -> list[float]:
        values = [im[name] for im in p.result.images if name in im and math.isfinite(im[name])]
        return [one_minus_cosine(v) for v in values] if name == "cosine" else values

    return Measure("1 - cosine" if name == "cosine" else name, value, raw, accuracy=True)


def measures(series: Series) -> list[Measure]:
    names = sorted({k for p in series.points for k in p.result.accuracy})
    return [_latency("median"), _latency("p90"), *(_figure(n) for n in names)]


@dataclass(frozen=True)
class Step:
    """A change point: ``run`` (1-based, in the series) is the first run after it."""

    series: str
    measure: str
    run: int
    run_id: str
    before: float
    after: float
    p_value: float | None
    environment: tuple[str, ...]
    accuracy: bool

    @property
    def change(self) -> float:
        return self.after / self.before - 1.0 if self.before else math.inf

    @property
    def from_zero(self) -> bool:
        """A figure that was exactly 0 (bit-exact) and is not: no % change, no factor."""
        return self.before == 0 and self.after != 0

    @property
    def factor(self) -> float:
        return self.after / self.before if self.before > 0 else math.inf

    def line(self) -> str:
        p = "n/a (no raw samples)" if self.p_value is None else f"{self.p_value:.2g}"
        env = "; ".join(self.environment) or "no environment change"
        what = (
            f"from exactly 0, no longer bit-exact, run id {self.run_id}"
            if self.from_zero
            else f"{self.change:+.1%}" + (f", now exactly 0, run id {self.run_id}" if self.after == 0 else "")
        )
        return f"{self.measure}: run {self.run}: {self.before:.4g} -> {self.after:.4g} ({what}), p={p}; {env}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "measure": self.measure,
            "run": self.run,
            "run_id": self.run_id,
            "before": self.before,
            "after": self.after,
            "change": None if self.from_zero else self.change,  # from 0: no % change (JSON has no inf)
            "from_zero": self.from_zero,
            "p_value": self.p_value,
            "environment": list(self.environment),
            "accuracy": self.accuracy,
        }


def noise(logs: np.ndarray) -> float:
    """Run-to-run noise of log values: the MAD of successive differences / sqrt(2) (a step
    moves one difference only), never below :data:`NOISE_FLOOR`."""
    if len(logs) < 3:
        return NOISE_FLOOR
    d = np.diff(logs)
    return max(float(np.median(np.abs(d - np.median(d)))) * 1.4826 / math.sqrt(2.0), NOISE_FLOOR)


def _split_cost(seg: np.ndarray, k: int) -> float:
    """The L2 cost of ``seg`` fitted by two constants, split before index ``k``."""
    left, right = seg[:k], seg[k:]
    return float(np.sum((left - left.mean()) ** 2) + np.sum((right - right.mean()) ** 2))


def _snap(z: np.ndarray, found: list[int], marks: set[int]) -> list[int]:
    """Each step moved onto an environment change within :data:`SNAP_RUNS` runs when splitting
    there costs at most :data:`SNAP_COST` more (the data cannot place it more exactly than that:
    a 6 % step in 3 % noise lands within 2 runs; the change that explains it is the better guess)."""
    out = list(found)
    for i, cp in enumerate(out):
        if cp in marks:
            continue
        lo, hi = (out[i - 1] if i else 0), (out[i + 1] if i + 1 < len(out) else len(z))
        seg = z[lo:hi]
        near = [m for m in marks if abs(m - cp) <= SNAP_RUNS and lo + MIN_SEGMENT <= m <= hi - MIN_SEGMENT]
        if near:
            best = min(near, key=lambda m: (_split_cost(seg, m - lo), abs(m - cp)))
            if _split_cost(seg, best - lo) - _split_cost(seg, cp - lo) <= SNAP_COST:
                out[i] = best
    return out


def _confirmed(before: np.ndarray, after: np.ndarray, scale: float) -> bool:
    """The runs either side differ: Mann-Whitney U at :data:`RUN_ALPHA`, or, where the exact test
    cannot reach it (fewer than 4 runs on a side), no overlap and a shift over
    :data:`SHORT_NOISE_MULTIPLE` x the noise."""
    from scipy.stats import mannwhitneyu

    if np.ptp(np.r_[before, after]) == 0:
        return False
    if np.ptp(before) == 0 and np.ptp(after) == 0:
        return True
    if mannwhitneyu(before, after).pvalue < RUN_ALPHA:
        return True
    smallest_p = 2.0 / math.comb(len(before) + len(after), min(len(before), len(after)))
    apart = before.max() < after.min() or after.max() < before.min()
    shift = abs(float(np.median(after) - np.median(before)))
    return smallest_p >= RUN_ALPHA and apart and shift > SHORT_NOISE_MULTIPLE * scale


def change_points(values: list[float] | np.ndarray, marks: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Indices (0-based, first index after the change) of the steps in ``values`` (all > 0);
    ``marks``: indices where the environment changed (a step is placed on one where the data
    cannot tell, :func:`_snap`)."""
    import ruptures

    y = np.log(np.asarray(values, dtype=np.float64))
    n = len(y)
    if n < 2 * MIN_SEGMENT:
        return []
    z = (y - np.median(y)) / noise(y)
    jump = max(1, n // EXACT_RUNS)
    found = (
        ruptures.Pelt(model="l2", min_size=max(MIN_SEGMENT, jump), jump=jump)
        .fit(z.reshape(-1, 1))
        .predict(pen=PENALTY_PER_LOG_N * math.log(n))[:-1]
    )
    if jump > 1:
        found = _refine(z, found, jump)
    if marks:
        found = _snap(z, found, set(marks))
    bounds = [0, *found, n]
    scale = noise(y)
    return [cp for i, cp in enumerate(found) if _confirmed(y[bounds[i] : cp], y[cp : bounds[i + 2]], scale)]


def _refine(z: np.ndarray, found: list[int], jump: int) -> list[int]:
    """Each step moved to the split within ``jump`` runs that best fits two constant segments
    between its neighbours (the L2 cost Pelt minimises, searched exactly)."""
    out = list(found)
    for i, cp in enumerate(out):
        lo, hi = (out[i - 1] if i else 0), (out[i + 1] if i + 1 < len(out) else len(z))
        seg = z[lo:hi]
        csum, csq = np.cumsum(seg), np.cumsum(seg**2)
        best, where = math.inf, cp
        for s in range(max(lo + MIN_SEGMENT, cp - jump), min(hi - MIN_SEGMENT, cp + jump) + 1):
            k = s - lo
            left = csq[k - 1] - csum[k - 1] ** 2 / k
            right = (csq[-1] - csq[k - 1]) - (csum[-1] - csum[k - 1]) ** 2 / (len(seg) - k)
            if left + right < best:
                best, where = left + right, s
        out[i] = where
    return out


def _raw_p(measure: Measure, before: list[Point], after: list[Point]) -> float | None:
    from scipy.stats import mannwhitneyu

    a = [v for p in before for v in measure.raw(p)]
    b = [v for p in after for v in measure.raw(p)]
    if len(a) < 2 or len(b) < 2:
        return None
    if np.ptp(a + b) == 0:
        return 1.0
    return float(mannwhitneyu(a, b).pvalue)


def environment_change(points: tuple[Point, ...] | list[Point], index: int) -> tuple[str, ...]:
    """The environment differences across ``index`` (run before vs run at); if none, the
    nearest within one run either side (a step found one run off)."""
    for i in (index, index + 1, index - 1):
        if 0 < i < len(points):
            diff = differences(points[i - 1].record.environment, points[i].record.environment)
            if diff:
                return tuple(diff) if i == index else (*diff, f"(at run {i + 1})")
    return ()


def zero_steps(values: list[float]) -> list[int]:
    """Indices (0-based, first index after the move) where a figure leaves or returns to exactly
    0 after at least :data:`MIN_SEGMENT` runs on the other side (a bit-exact figure that becomes
    non-zero, or the reverse): a deterministic figure, so one run is enough after the move."""
    zero = [v == 0 for v in values]
    out, start = [], 0
    for i in range(1, len(zero)):
        if zero[i] != zero[i - 1]:
            if i - start >= MIN_SEGMENT:
                out.append(i)
            start = i
    return out


def _zero_step(series: Series, measure: Measure, pairs: list[tuple[Point, float]], cp: int) -> Step:
    points = [p for p, _ in pairs]
    values = [v for _, v in pairs]
    end = next((j for j in range(cp + 1, len(values)) if (values[j] == 0) != (values[cp] == 0)), len(values))
    start = max((j + 1 for j in range(cp) if (values[j] == 0) != (values[cp - 1] == 0)), default=0)
    return Step(
        series=series.key,
        measure=measure.name,
        run=series.points.index(points[cp]) + 1,
        run_id=points[cp].record.run_id,
        before=float(np.median(values[start:cp])),
        after=float(np.median(values[cp:end])),
        p_value=_raw_p(measure, points[max(start, cp - RAW_RUNS) : cp], points[cp : min(end, cp + RAW_RUNS)]),
        environment=environment_change(points, cp),
        accuracy=measure.accuracy,
    )


def steps(series: Series) -> list[Step]:
    """Every step of every measure of ``series`` (moves to and from exactly 0 included)."""
    out = []
    for measure in measures(series):
        pairs = [(p, measure.value(p)) for p in series.points]
        pairs = [(p, v) for p, v in pairs if v is not None and v >= 0]
        out.extend(_zero_step(series, measure, pairs, cp) for cp in zero_steps([v for _, v in pairs]))
        pairs = [(p, v) for p, v in pairs if v > 0]
        if len(pairs) < 2 * MIN_SEGMENT:
            continue
        points = [p for p, _ in pairs]
        values = [v for _, v in pairs]
        marks = {i for i in range(1, len(points)) if points[i].record.environment != points[i - 1].record.environment}
        found = change_points(values, marks)
        bounds = [0, *found, len(values)]
        for i, cp in enumerate(found):
            out.append(
                Step(
                    series=series.key,
                    measure=measure.name,
                    run=series.points.index(points[cp]) + 1,
                    run_id=points[cp].record.run_id,
                    before=float(np.median(values[bounds[i] : cp])),
                    after=float(np.median(values[cp : bounds[i + 2]])),
                    p_value=_raw_p(measure, points[max(bounds[i], cp - RAW_RUNS) : cp], points[cp : cp + RAW_RUNS]),
                    environment=environment_change(points, cp),
                    accuracy=measure.accuracy,
                )
            )
    return out


def drift(found: list[Step]) -> list[Step]:
    """The accuracy steps that moved a figure by :data:`DRIFT_FACTOR` or more (either way)."""
    return [s for s in found if s.accuracy and (s.factor >= DRIFT_FACTOR or s.factor <= 1 / DRIFT_FACTOR)]
