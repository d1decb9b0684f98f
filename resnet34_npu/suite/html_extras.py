"""What the suite adds to pytest-html's page when pytest-html is installed: the verdict table
(the terminal summary's rows) above the results, and for a failing comparison its localisation
chart as the test's extra. Without pytest-html none of this is imported."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from typing import Any

from resnet34_npu.reports.chart import stage_chart_png
from resnet34_npu.reports.html import localization_of
from resnet34_npu.reports.report import SUMMARY_HEADER, summary_rows


def summary_table(records: Iterable[dict[str, Any]]) -> str | None:
    """The verdict table as HTML (every cell escaped), or None when no comparison ran."""
    rows = summary_rows(records)
    if not rows:
        return None
    head = "".join(f"<th>{html.escape(h)}</th>" for h in SUMMARY_HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<h2>resnet34-npu comparisons</h2><table id="r34-verdicts"><tr>{head}</tr>{body}</table>'


def failing_chart(record: dict[str, Any]) -> str | None:
    """The base64 PNG of a failing verdict's per-stage localisation chart; None when it passed,
    has no stages, or matplotlib is missing."""
    case = record.get("case") or {}
    localization = case.get("localization")
    if record.get("kind") != "verdict" or case.get("verdict") != "fail" or not localization:
        return None
    if not localization.get("stages"):
        return None
    png = stage_chart_png(localization_of(localization), f"{record['target']} on {case['image']}")
    return None if png is None else base64.b64encode(png).decode("ascii")
