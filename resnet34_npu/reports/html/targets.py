"""The page's sections on the targets of a compare or acceptance report: the target x image x
batch matrix coloured by verdict, the metrics beside the profile's bounds (with the failure and
warning lines), latency and speedup, and the pytest outcomes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from resnet34_npu.judge.criteria import PROFILES, Rule, format_bound
from resnet34_npu.reports.html.nodes import (
    Block,
    Nodes,
    _b,
    _badge,
    _case_key,
    _cases,
    _cls,
    _code,
    _float,
    _h,
    _image_label,
    _lines,
    _num,
    _p,
    _small,
    _status,
    _t,
    _table,
    _td,
)

#: Metrics every metrics table shows, whatever the profile judges.
SHOWN_METRICS = ("rel_l2_error", "cosine_similarity", "max_abs_error", "prob_max_rel_error", "top1_match")
#: How a metric reads best (else as bounds are written in failure lines): a cosine needs its nines.
METRIC_FORMATS = {"cosine_similarity": ".8f", "top1_match": ".2f", "top5_overlap": ".2f", "top5_order_match": ".2f"}


def _matrix(targets: list[dict[str, Any]]) -> list[Block]:
    columns: dict[tuple[str, str], Mapping[str, Any]] = {}
    for target in targets:
        for case in _cases(target):
            columns.setdefault(_case_key(case), case)
    if not columns:
        return [_p("No comparison ran: no target was compared on any image.", cls="note")]
    header = ["target", "verdict", *(f"{_image_label(c)} \u00d7{k[1]}" for k, c in columns.items())]
    rows = []
    for target in targets:
        by_key = {_case_key(c): c for c in _cases(target)}
        cells: list[Any] = [_b(target.get("name", "?")), _badge(target.get("verdict"))]
        if not by_key:
            reason = target.get("skipped") or target.get("required_missing") or "not run"
            cells.append(_td(reason, f"cell c-{_cls(target.get('verdict'))}", colspan=len(columns)))
        for key in columns if by_key else ():
            case = by_key.get(key)
            if case is None:
                cells.append(_td("-", "cell c-skip"))
                continue
            metrics = case.get("metrics") or {}
            cells.append(
                _td(
                    [
                        _status(case.get("verdict")).upper(),
                        _small([f"rel L2 {_num(metrics.get('rel_l2_error'), '.2e')}"]),
                    ],
                    f"cell c-{_cls(case.get('verdict'))}",
                    title=case.get("image"),
                )
            )
        rows.append(cells)
    return [_table(header, rows, "matrix")]


def _rules(profile: str, precision: Any) -> tuple[Rule, ...]:
    known = PROFILES.get(profile)
    if known is None or not isinstance(precision, str):
        return ()
    try:
        return known.rules_for(precision)
    except KeyError:
        return ()


def _metric_cell(metric: str, metrics: dict[str, float], rules: tuple[Rule, ...], raw: Any) -> dict[str, Any]:
    """The measured value, its bounds underneath, red where a fail rule breaks, amber for a warn."""
    value = metrics.get(metric, math.nan)
    bounds, cls = [], ""
    for rule in rules:
        if rule.metric != metric or not rule.applies(metrics):
            continue
        bounds.append(f"{rule.op} {format_bound(rule.bound)}" + (" (warn)" if rule.level == "warn" else ""))
        if not rule.holds(value):
            cls = "bad" if rule.level == "fail" or cls == "bad" else "soft"
    content: Nodes = [_num(raw, METRIC_FORMATS.get(metric, ""))]
    if bounds:
        content.append(_small([f"allowed {', '.join(bounds)}"], "bound"))
    return _td(content, f"num {cls}")


def _metrics(doc: Mapping[str, Any], targets: list[dict[str, Any]]) -> list[Block]:
    profile = str(doc.get("profile", ""))
    known = PROFILES.get(profile)
    judged = [r.metric for p in ([known] if known else []) for rows in p.rows.values() for r in rows]
    present = {m for t in targets for c in _cases(t) for m in (c.get("metrics") or {})}
    columns = [m for m in dict.fromkeys([*SHOWN_METRICS, *judged]) if m in present]
    header = ["target", "image", "batch", "precision", "verdict", *columns]
    rows = []
    for target in targets:
        precision = target.get("effective_precision")
        rules = _rules(profile, precision)
        for case in _cases(target):
            raw = case.get("metrics") or {}
            metrics = {k: _float(v) for k, v in raw.items()}
            rows.append(
                [
                    _t(target.get("name", "?")),
                    _image_label(case),
                    _t(case.get("batch_size", 1)),
                    _t(precision),
                    _badge(case.get("verdict")),
                    *(_metric_cell(m, metrics, rules, raw.get(m)) for m in columns),
                ]
            )
    blocks = [
        _p(
            "Bounds are profile ",
            _b(profile),
            f"'s rules for each target's effective precision: {known.description}. A red cell breaks a failing "
            "rule, an amber one a warning rule.",
        )
        if known
        else _p(
            f"Profile {profile or '(none)'} is unknown to this version: the bounds are not shown; the verdicts are "
            "the report's own.",
            cls="note",
        )
    ]
    failures: list[Block] = []
    for target in targets:
        for case in _cases(target):
            lines = [*(case.get("failures") or []), *(f"warning: {w}" for w in case.get("warnings") or [])]
            if case.get("error"):
                lines.insert(0, f"error: {case['error']}")
            if lines:
                failures += [_h(3, f"{_t(target.get('name', '?'))} on {_t(case.get('image', '?'))}"), _lines(lines)]
        for key in ("left_threads", "required_missing"):
            if target.get(key):
                failures += [_h(3, _t(target.get("name", "?"))), _lines([target[key]])]
    blocks.append(_table(header, rows, "metrics", wide=True) if rows else _p("No metrics: nothing was compared."))
    if failures:
        blocks += [_h(3, "Failure and warning lines"), *failures]
    return blocks


def _latency(doc: Mapping[str, Any], targets: list[dict[str, Any]]) -> list[Block]:
    reference = doc.get("reference") or {}
    entries = [(f"{reference.get('name', 'reference')} (reference)", reference, None)]
    entries += [(str(t.get("name", "?")), t, t.get("speedup_vs_reference")) for t in targets]
    timed = [(n, s, x) for n, s, x in entries if isinstance(s.get("latency_ms"), dict)]
    if not timed:
        return [_p("Not timed (", _code("--iters 0"), ", or no target ran).")]
    fastest = max((_float(x) for _, _, x in timed if x is not None), default=math.nan)
    scale = max(fastest, 1.0) if math.isfinite(fastest) else 1.0
    rows = []
    for name, side, speedup in timed:
        t = side["latency_ms"]
        ratio = _float(speedup)
        bar = (
            [{"t": "bar", "w": max(1, min(200, round(160 * ratio / scale)))}]
            if math.isfinite(ratio) and ratio > 0
            else []
        )
        rows.append(
            [
                name,
                _t(side.get("device_name") or side.get("device")),
                _td(_num(t.get("median"), ".2f"), "num"),
                _td(_num(t.get("p90"), ".2f"), "num"),
                _td(f"{_num(t.get('mean'), '.2f')} \u00b1 {_num(t.get('std'), '.2f')}", "num"),
                _td(_num(side.get("throughput_ips"), ".1f"), "num"),
                _td([*bar, f"{_num(speedup, '.2f')}\u00d7"], "nowrap") if speedup is not None else "-",
                f"{t.get('iterations', '?')} runs after {t.get('warmup', '?')} warm-up, batch "
                f"{t.get('batch_size', '?')}, {t.get('clock', '?')}",
            ]
        )
    return [
        _p(
            "Median of synchronised runs; speedup = reference median / target median (above 1: faster than the "
            "reference)."
        ),
        _table(
            ["target", "device", "median ms", "p90 ms", "mean \u00b1 std ms", "images/s", "speedup", "timing"], rows
        ),
    ]


def _tests(doc: Mapping[str, Any]) -> list[Block]:
    tests = doc.get("tests") or []
    counts: dict[str, int] = {}
    for test in tests:
        counts[str(test.get("outcome", "?"))] = counts.get(str(test.get("outcome", "?")), 0) + 1
    bad = [t for t in tests if t.get("outcome") not in ("passed", "skipped")]
    blocks = [_p(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))]
    if bad:
        rows = [
            [_t(t.get("test")), _badge("fail"), [{"t": "lines", "v": str(t.get("message", "")).splitlines()}]]
            for t in bad
        ]
        blocks.append(_table(["test", "outcome", "message"], rows))
    return blocks
