"""The page's consistency section: run to run (per target, the timed runs' outputs bit for bit)
and card to card (per group of cards, the outlier cards by name), from
:mod:`resnet34_npu.judge.consistency`'s records as a report or a fleet report carries them."""

from __future__ import annotations

from typing import Any

from resnet34_npu.reports.html.nodes import Block, _cls, _h, _num, _status_cell, _t, _table, _td


def _consistency(targets: list[dict[str, Any]], groups: list[tuple[str, Any]]) -> list[Block]:
    """Run to run (per target: how many outputs, how many distinct, the policy and its verdict)
    and card to card (per group of cards: the outlier cards by name, with their images):
    :mod:`resnet34_npu.judge.consistency`'s records as the report carries them."""
    blocks: list[Block] = []
    runs = [(t, t["run_to_run"]) for t in targets if isinstance(t.get("run_to_run"), dict)]
    if runs:
        rows = []
        for target, r in runs:
            distinct = r.get("distinct")
            bitwise = isinstance(distinct, int) and distinct <= 1
            verdict = "pass" if bitwise or r.get("passed") is True else "fail"
            shown = "PASS" if bitwise else ("FAIL" if verdict == "fail" else "NOTE")
            rows.append(
                [
                    _t(target.get("name", "?")),
                    _td(_num(r.get("outputs")), "num"),
                    _td(_num(distinct), "num"),
                    _t(r.get("policy")),
                    _td(shown, f"cell c-{_cls(verdict if shown != 'NOTE' else 'warn')}"),
                    _td(_num(r.get("max_ulp")), "num"),
                    _td(_num(r.get("max_abs"), ".3e"), "num"),
                    "-" if r.get("first_mismatch") is None else _t(r.get("first_mismatch")),
                    _t(r.get("reason")),
                ]
            )
        header = ["target", "outputs", "distinct", "policy", "verdict", "max ulp", "max abs", "first differs", "why"]
        blocks += [_h(3, "Run to run (the timed runs' outputs, bit for bit)"), _table(header, rows, "consistency")]
    rows = []
    for where, group in groups:
        if not isinstance(group, dict):
            continue
        outliers = [o for o in group.get("outliers") or [] if isinstance(o, dict)]
        named = [
            f"{_t(o.get('card'))} on {', '.join(map(str, o.get('images') or []))}"
            + ("" if o.get("max_ulp") is None else f" (max {_t(o.get('max_ulp'))} ulp)")
            for o in outliers
        ]
        if group.get("no_majority"):
            named.append(f"no majority output on {', '.join(map(str, group['no_majority']))}")
        passed = group.get("passed") is True
        rows.append(
            [
                _t(where),
                _t(group.get("group")),
                _td(_num(len(group.get("cards") or [])), "num"),
                _status_cell("pass" if passed else "fail"),
                {"t": "lines", "v": named} if named else "-",
            ]
        )
    if rows:
        header = ["from", "group", "cards", "verdict", "outlier cards"]
        blocks += [_h(3, "Card to card (cards of one model and target, output digests)"), _table(header, rows)]
    return blocks
