"""The history page: one self-contained HTML file (Jinja2 with autoescape, inline SVG, no script,
the report page's Content-Security-Policy): per series a trend chart of latency (median line, the
min-to-p90 band of each run's samples) and of each accuracy figure (log scale), steps marked
with their % change, environment changes and labels marked, dates under the x-axis; each series
titled by what tells it apart from another of the same target (source, methodology, in words);
every accuracy figure charted or said why not; the gate's failures beside the steps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from resnet34_npu.core.files import write_atomic
from resnet34_npu.history import changes
from resnet34_npu.history.analysis import Analysis, SeriesAnalysis
from resnet34_npu.history.series import differences, methodology_words
from resnet34_npu.reports.html import CSP  # the report page's policy: no script, no fetch, one definition

WIDTH, HEIGHT, PAD = 760, 200, 40


#: dates written under the x-axis of a chart (first, last and evenly between)
DATE_TICKS = 6


def _chart(title: str, item: SeriesAnalysis, measure: changes.Measure, log: bool) -> dict[str, Any]:
    """A chart of ``measure``; a figure never charted says why in its ``note`` (exactly 0 in every
    run: bit-exact, nothing to draw on a log scale; no run has it)."""
    points = item.series.points
    values = [measure.value(p) for p in points]
    zeros = sum(v == 0 for v in values)
    missing = sum(v is None for v in values)
    if sum(v is not None and v > 0 for v in values) < 1:
        why = (
            f"exactly 0 in all {zeros} run(s) that have it (bit-exact): nothing to draw on a log scale"
            if zeros
            else "no run has this figure"
        )
        return {"title": title, "note": why}
    notes = []
    if zeros:
        notes.append(f"{zeros} run(s) exactly 0 (bit-exact), drawn on the bottom edge")
    if missing:
        notes.append(f"{missing} run(s) without this figure, left out")
    band = []
    if not measure.accuracy:
        for p in points:
            s = p.result.samples_ms
            band.append((min(s), float(np.percentile(s, 90))) if s else None)
    finite = [v for v in values if v is not None and v > 0] + [b for pair in band if pair for b in pair]
    lo, hi = min(finite), max(finite)
    f = (lambda v: math.log10(v)) if log else (lambda v: v)
    span = (f(hi) - f(lo)) or 1.0
    n = max(len(points) - 1, 1)

    def x(i: int) -> float:
        return round(PAD + (WIDTH - 2 * PAD) * i / n, 1)

    def y(v: float) -> float:
        return round(HEIGHT - 20 - (HEIGHT - 50) * (f(v) - f(lo)) / span, 1)

    line = " ".join(f"{x(i)},{y(v) if v > 0 else HEIGHT - 20}" for i, v in enumerate(values) if v is not None)
    upper = [f"{x(i)},{y(b[1])}" for i, b in enumerate(band) if b]
    lower = [f"{x(i)},{y(b[0])}" for i, b in enumerate(band) if b]
    envs = []
    for i in range(1, len(points)):
        diff = differences(points[i - 1].record.environment, points[i].record.environment)
        if diff:
            envs.append({"x": x(i), "text": "; ".join(diff)})
    steps = [
        {"x": x(s.run - 1), "text": f"{'from 0' if s.from_zero else f'{s.change:+.1%}'} at run {s.run}"}
        for s in item.steps
        if s.measure == measure.name
    ]
    ticks = sorted({round(i * (len(points) - 1) / (DATE_TICKS - 1)) for i in range(DATE_TICKS)})
    dates = [{"x": x(i), "text": points[i].record.created[:10], "run": i + 1} for i in ticks]
    return {
        "title": title,
        "note": "; ".join(notes),
        "dates": dates,
        "width": WIDTH,
        "height": HEIGHT,
        "line": line,
        "band": " ".join(upper + lower[::-1]) if upper else "",
        "envs": envs,
        "steps": steps,
        "top": f"{hi:.4g}",
        "bottom": f"{lo:.4g}",
    }


def _apart(item: SeriesAnalysis, analysis: Analysis) -> str:
    """What tells ``item`` apart from the other series of the same label, in words (source,
    methodology): ``from pytest-benchmark; 20 timed run(s)``; empty when its label is unique."""
    same = [o.series for o in analysis.series if o is not item and o.series.label == item.series.label]
    if not same:
        return ""
    mine = item.series
    keys = sorted(
        {
            k
            for o in same
            for k in {*o.methodology, *mine.methodology}
            if o.methodology.get(k) != mine.methodology.get(k)
        }
    )
    words = [methodology_words({k: mine.methodology[k]}) if k in mine.methodology else f"no {k}" for k in keys]
    if any(o.sources != mine.sources for o in same):
        words.insert(0, f"from {', '.join(mine.sources)}")
    return "; ".join(words)


def render(analysis: Analysis) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    series = []
    for item in analysis.series:
        charts = []
        for measure in changes.measures(item.series):
            if measure.name.startswith("latency p90"):
                continue
            title = "latency (ms): median, band min to p90" if not measure.accuracy else f"{measure.name} (log scale)"
            charts.append(_chart(title, item, measure, log=measure.accuracy))
        series.append(
            {
                "label": item.series.label,
                "apart": _apart(item, analysis),
                "title": item.series.title,
                "key": item.series.key,
                "runs": len(item.series.points),
                "first": item.series.points[0].record.created[:10],
                "last": item.series.points[-1].record.created[:10],
                "charts": charts,
                "steps": [s.to_dict() for s in item.steps],
                "drift": [s.to_dict() for s in item.drift],
                "no_step": item.no_step_line,
                "gate": [v.line for v in item.failures],
            }
        )
    return env.get_template("history.html.j2").render(
        csp=CSP,
        folder=analysis.history.folder,
        records=len(analysis.history.records),
        skipped=[s.to_dict() for s in analysis.history.skipped],
        series=series,
        factor=changes.DRIFT_FACTOR,
    )


def write(analysis: Analysis, path: str | Path) -> Path:
    text = render(analysis).encode("utf-8")
    path = Path(path)
    write_atomic(path, lambda handle: handle.write(text), what="page", prefix=f".{path.name}.")
    return path
