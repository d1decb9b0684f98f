"""``report history``: every series of a history with its steps and its accuracy drift, as a
document (``--json``), as text lines, and as the data the trend page draws."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnet34_npu.core.documents import utc_now
from resnet34_npu.history import changes
from resnet34_npu.history.series import Series, build
from resnet34_npu.history.store import History

DOCUMENT = "resnet34-npu-history-analysis"


@dataclass(frozen=True)
class SeriesAnalysis:
    series: Series
    steps: tuple[changes.Step, ...]

    @property
    def drift(self) -> list[changes.Step]:
        return changes.drift(list(self.steps))

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.series.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
            "drift": [s.to_dict() for s in self.drift],
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


def analyse(history: History) -> Analysis:
    return Analysis(history, tuple(SeriesAnalysis(s, tuple(changes.steps(s))) for s in build(history.records)))


def summary_lines(analysis: Analysis) -> list[str]:
    """The text form (the skipped files are listed by the caller, already quoted)."""
    lines = [
        f"history {analysis.history.folder}: {len(analysis.history.records)} record(s), "
        f"{len(analysis.series)} series, {len(analysis.history.skipped)} file(s) skipped"
    ]
    for item in analysis.series:
        lines.append(f"{item.series.label} [{item.series.key}]: {len(item.series.points)} run(s)")
        lines.extend(f"  step  {s.line()}" for s in item.steps)
        if not item.steps:
            lines.append("  no step")
        lines.extend(f"  accuracy drift  {s.measure} x{s.factor:.2f} from run {s.run}" for s in item.drift)
    return lines
