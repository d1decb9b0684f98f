"""The page's view of a fleet report (``report merge``): its summary, then per group a host x card
grid coloured by the worst verdict of each card's targets (latency outliers marked), every card
target's row and the latency populations; consistency, refused reports and the legend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resnet34_npu.reports.html.consistency import _consistency
from resnet34_npu.reports.html.nodes import (
    OUTLIER,
    Block,
    _b,
    _badge,
    _cls,
    _lines,
    _num,
    _p,
    _section,
    _small,
    _status,
    _summary,
    _t,
    _table,
    _td,
)


def _card_label(row: Mapping[str, Any]) -> str:
    return "(no targets)" if row.get("card") is None else str(row.get("card"))


def _fleet_grid(group: Mapping[str, Any]) -> list[Block]:
    """Hosts down, cards across; a cell is coloured by the worst verdict of that card's targets
    and lists each target, a latency outlier marked."""
    cards = list(group.get("cards") or [])
    hosts = list(dict.fromkeys(str(c.get("host")) for c in cards))
    slots = list(dict.fromkeys(_card_label(c) for c in cards))
    rows = []
    for host in hosts:
        cells: list[Any] = [_b(host)]
        for slot in slots:
            here = [c for c in cards if str(c.get("host")) == host and _card_label(c) == slot]
            if not here:
                cells.append(_td("-", "cell c-skip"))
                continue
            statuses = [_status(c.get("verdict")) for c in here]
            worst = next((s for s in ("fail", "interrupted", "not run", "warn", "pass") if s in statuses), statuses[0])
            lines = [
                _small(
                    [
                        f"{_t(c.get('target') or 'report ' + str(c.get('report')))}: "
                        f"{_status(c.get('verdict')).upper()}",
                        *([OUTLIER] if c.get("latency_outlier") is True else []),
                    ]
                )
                for c in here
            ]
            tip = "; ".join(
                f"{c.get('target')}: median {_num(c.get('latency_median_ms'), '.2f')} ms, "
                f"robust z {_num(c.get('robust_z'), '.2f')}"
                for c in here
            )
            slow = " slow" if any(c.get("latency_outlier") is True for c in here) else ""
            cells.append(_td([worst.upper(), *lines], f"cell c-{_cls(worst)}{slow}", title=tip))
        rows.append(cells)
    grid = _table(["host / card", *slots], rows, "grid", wide=True)
    detail = []
    for c in cards:
        worst = c.get("worst_metric") or {}
        detail.append(
            [
                _badge(c.get("verdict")),
                _t(c.get("host")),
                _t(_card_label(c)),
                _t(c.get("target")),
                _t(worst.get("name")),
                _td(_num(worst.get("value"), ".2e"), "num"),
                _t(worst.get("image")),
                _td(_num(c.get("latency_median_ms"), ".2f"), "num"),
                _td(_num(c.get("robust_z"), ".2f"), "num"),
                [OUTLIER] if c.get("latency_outlier") is True else "",
                _t(c.get("report")),
            ]
        )
    header = [
        "verdict",
        "host",
        "card",
        "target",
        "worst metric",
        "value",
        "on image",
        "median ms",
        "robust z",
        "latency",
    ]
    table = _table([*header, "report"], detail)
    populations = [
        [
            _t(p.get("population")),
            _td(_num(p.get("cards")), "num"),
            _td(_num(p.get("median_ms"), ".2f"), "num"),
            _td(_num(p.get("mad_ms"), ".3f"), "num"),
            _t(p.get("scale")),
        ]
        for p in group.get("latency") or []
    ]
    body = [
        grid,
        {
            "k": "details",
            "open": False,
            "summary": f"every card target ({len(cards)} rows, failing first)",
            "blocks": [table],
        },
    ]
    if populations:
        body.append(
            {
                "k": "details",
                "open": False,
                "summary": "latency populations (what each card is compared with)",
                "blocks": [_table(["population", "cards", "median ms", "MAD ms", "scale"], populations)],
            }
        )
    return body


def _fleet_sections(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A fleet report's sections: the summary, a host x card grid per group, consistency,
    the refused reports and the legend."""
    groups = list(doc.get("groups") or [])
    refused = list(doc.get("refused") or [])
    cards = [c for g in groups for c in g.get("cards") or []]

    def named(rows: list[Mapping[str, Any]], most: int = 20) -> str:
        text = ", ".join(f"{c.get('host')} {_card_label(c)} {c.get('target') or ''}".strip() for c in rows[:most])
        return text + (f" and {len(rows) - most} more (the grids show every one)" if len(rows) > most else "")

    rule = doc.get("outlier_rule") if isinstance(doc.get("outlier_rule"), dict) else {}
    summary = _summary(
        [
            ("reports", _t(sum(len(g.get("reports") or []) for g in groups) or "")),
            ("hosts", _t(len({str(c.get("host")) for c in cards}))),
            ("card targets", _t(len(cards))),
            ("failing", _t(named([c for c in cards if _status(c.get("verdict")) == "fail"]))),
            ("latency outliers", _t(named([c for c in cards if c.get("latency_outlier") is True]))),
            (
                "outlier rule",
                _t(
                    f"robust z above {rule.get('robust_z_above')} and at least "
                    f"{_num(rule.get('min_excess_over_median'), '.0%')} over the median of at least "
                    f"{rule.get('min_cards')} cards"
                )
                if rule
                else "",
            ),
            ("groups", _t(len(groups))),
            ("refused reports", _t(len(refused)) if refused else ""),
        ]
    )
    notes = _lines(doc.get("notes") or [])
    sections = [_section("Summary", [summary, notes], "summary")]
    for g, group in enumerate(groups, 1):
        key = group.get("key") or {}
        label = ", ".join(f"{k} {v}" for k, v in key.items() if isinstance(v, (str, int, float)) and v != "")
        head = [_p(_badge(group.get("verdict")), f" {label}")]
        if group.get("apart"):
            head.append(_p(_t(group["apart"]), cls="note"))
        sections.append(_section(f"Group {g}: host \u00d7 card", head + _fleet_grid(group), f"group-{g}"))
    consistency = _consistency(
        [], [(f"group {g}", c) for g, group in enumerate(groups, 1) for c in group.get("card_to_card") or []]
    )
    if consistency:
        sections.append(_section("Consistency", consistency, "consistency"))
    if refused:
        rows = [[_t(r.get("path")), _t(r.get("reason"))] for r in refused]
        sections.append(_section("Refused reports", [_table(["path", "reason"], rows)], "refused"))
    sections.append(
        _section(
            "Legend",
            [
                _p(
                    "Each cell is one card of one host, coloured by the worst verdict of its targets; ",
                    OUTLIER,
                    " marks a latency outlier: slower than the cards running the same target, by the outlier rule "
                    "above. Hover a cell for the medians and robust z-scores.",
                )
            ],
            "legend",
        )
    )
    return sections
