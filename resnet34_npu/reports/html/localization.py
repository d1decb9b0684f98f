"""The page's localisation section: for each failing target where it breaks (the first
diverging stage of each failing case, blame when there is one), and the per-stage chart of
``localize --png`` as a PNG ``data:`` URL, or the per-stage table where matplotlib is missing."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from resnet34_npu.judge.localize import Localization, StageResult
from resnet34_npu.reports.chart import stage_chart_png
from resnet34_npu.reports.html.nodes import (
    Block,
    Nodes,
    _b,
    _cases,
    _cls,
    _float,
    _h,
    _image_label,
    _num,
    _status,
    _t,
    _table,
    _td,
)

_STAGE_NUMBERS = ("rel_l2_error", "cosine_similarity", "max_rel_error", "max_abs_error")


def localization_of(data: Mapping[str, Any]) -> Localization:
    """A report's ``localization`` as the object :mod:`chart` draws."""
    stages = []
    for stage in data.get("stages") or []:
        stages.append(
            StageResult(
                str(stage.get("name", "?")),
                *(_float(stage.get(key)) for key in _STAGE_NUMBERS),
                _status(stage.get("status")),
                str(stage.get("failure") or ""),
            )
        )
    first = data.get("first_failing_stage")
    return Localization(tuple(stages), None if first is None else str(first), str(data.get("note") or ""))


def _stage_table(localization: Localization) -> Block:
    rows = [
        [
            s.name,
            *(_td(_num(getattr(s, key)), "num") for key in _STAGE_NUMBERS),
            _td(s.status.upper(), f"cell c-{_cls(s.status)}"),
            s.failure,
        ]
        for s in localization.stages
    ]
    return _table(["stage", "rel L2", "cosine", "max rel", "max abs", "verdict", "broken rule"], rows, "stages")


def _localisation_section(targets: list[dict[str, Any]], charts: bool) -> tuple[list[Block], bool]:
    """Per failing target: the first failing case's per-stage chart (or table) and each failing
    case's first diverging stage. Also says whether a chart was wanted but matplotlib is missing."""
    parts: list[Block] = []
    missing = False
    for target in targets:
        failing = [c for c in _cases(target) if _status(c.get("verdict")) == "fail"]
        if not failing:
            continue
        name = str(target.get("name", "?"))
        located = [(c, c.get("localization") or c.get("localisation")) for c in failing]
        summary_rows = []
        for case, loc in located:
            where: Nodes
            if not loc:
                where = ["not localised"]
            elif loc.get("first_failing_stage"):
                where = ["first diverging stage: ", _b(loc["first_failing_stage"])]
            elif loc.get("note"):
                where = [_t(loc["note"])]
            else:
                where = ["no stage of the module breaks the profile: the difference arises after the last stage"]
            blame = case.get("blame") or {}
            if blame.get("blamed"):
                where += [
                    "; blamed: ",
                    _b(blame["blamed"]),
                    f" (eager twin {_t(blame.get('eager_twin'))}: {_t(blame.get('eager_verdict'))})",
                ]
            summary_rows.append([_image_label(case), _t(case.get("batch_size", 1)), where])
        parts += [_h(3, name), _table(["image", "batch", "where it breaks"], summary_rows)]
        shown = next(((c, loc) for c, loc in located if loc and loc.get("stages")), None)
        if shown is not None:
            case, data = shown
            localization = localization_of(data)
            title = f"{name} on {_image_label(case)}, batch {case.get('batch_size', 1)}"
            png = stage_chart_png(localization, title) if charts else None
            if png is not None:
                parts.append(
                    {
                        "k": "img",
                        "alt": f"relative L2 error per stage: {title}",
                        "src": f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}",
                    }
                )
            missing = missing or (charts and png is None)
            parts.append(
                {
                    "k": "details",
                    "open": png is None,
                    "summary": f"per-stage numbers: {title}",
                    "blocks": [_stage_table(localization)],
                }
            )
    return parts, missing
