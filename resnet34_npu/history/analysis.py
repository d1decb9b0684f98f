"""``report history``: every series of a history with its steps and its accuracy drift, as a
document (``--json``), as text lines, and as the data the trend page draws."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnet34_npu.core.documents import utc_now
from resnet34_npu.history import changes, gate
from resnet34_npu.history.series import Series, build
from resnet34_npu.history.store import History

DOCUMENT = "resnet34-npu-history-analysis"


@dataclass(frozen=True)
class SeriesAnalysis:
    """A series, its steps, and the gate's verdicts on its newest run (the same steps: the page
    and the text never say "no step" beside a failing gate without saying why)."""

    series: Series
    steps: tuple[changes.Step, ...]
    verdicts: tuple[gate.Verdict, ...] = ()

    @property
    def drift(self) -> list[changes.Step]:
        return changes.drift(list(self.steps))

    @property
    def failures(self) -> list[gate.Verdict]:
        return [v for v in self.verdicts if v.status == gate.Status.FAIL]

    @property
    def no_step_line(self) -> str:
        """What to say when no step was found: plain, or that the newest run alone fails the gate."""
        if not self.failures:
            return "no step"
        return "no step before the newest run (a step needs 3 runs after it); the newest run fails the gate"

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.series.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
            "drift": [s.to_dict() for s in self.drift],
            "gate": [v.to_dict() for v in self.verdicts],
        }


@dataclass(frozen=True)
class Analysis:
    history: History
    series: tuple[SeriesAnalysis, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "document": DOCUMENT,
            "schema_version": 1,
            "created": utc_now(),
            "folder": self.history.folder,
            "records": len(self.history.records),
            "skipped": [s.to_dict() for s in self.history.skipped],
            "series": [s.to_dict() for s in self.series],
        }


def analyse(history: History, *, thresholds: list[tuple[str, float]] | None = None) -> Analysis:
    """Steps of every series, and the gate's verdicts from the same steps."""
    built = build(history.records)
    found = {s.key: changes.steps(s) for s in built}
    verdicts = gate.check(history.records, thresholds=thresholds, steps=found) if history.records else []
    return Analysis(
        history,
        tuple(SeriesAnalysis(s, tuple(found[s.key]), tuple(v for v in verdicts if v.series == s.key)) for s in built),
    )


def summary_lines(analysis: Analysis) -> list[str]:
    """The text form (the skipped files are listed by the caller, already quoted)."""
    lines = [
        f"history {analysis.history.folder}: {len(analysis.history.records)} record(s), "
        f"{len(analysis.series)} series, {len(analysis.history.skipped)} file(s) skipped"
    ]
    for item in analysis.series:
        lines.append(f"{item.series.label}, {item.series.title}: {len(item.series.points)} run(s) [{item.series.key}]")
        lines.extend(f"  step  {s.line()}" for s in item.steps)
        if not item.steps:
            lines.append(f"  {item.no_step_line}")
        lines.extend(f"  gate  {v.line}" for v in item.failures)
        lines.extend(
            f"  accuracy drift  {s.measure} {'from exactly 0' if s.from_zero else f'x{s.factor:.2f}'} from run {s.run}"
            for s in item.drift
        )
    return lines
