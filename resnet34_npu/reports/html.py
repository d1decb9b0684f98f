"""A saved report as one self-contained HTML page that people can look at: ``python -m
resnet34_npu report html REPORT``, and ``pytest --r34-html=PATH`` beside the acceptance report.

Reads every document the suite writes (``compare``'s report, the acceptance report, an
unfinished run's placeholder, and ``report merge``'s fleet report) and shows, top to bottom:
the verdict, what was tested (machine, weights, profile, reference), the target x image x batch
matrix coloured by verdict, the metrics beside the profile's bounds, latency and speedup, and
for each failing target where it breaks (the per-stage chart of ``localize --png``, embedded as
a PNG ``data:`` URL, and the numbers); a fleet report is a host x card grid per group.

Reports are untrusted input: every string taken from one is HTML-escaped, class names come
from a fixed set, and the page's Content-Security-Policy forbids scripts and every fetch, so
the page neither runs code nor reaches the network. matplotlib is optional: without it the
stages are tables, and the page says so.
"""

from __future__ import annotations

import base64
import html
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from resnet34_npu.core.errors import InputError, show
from resnet34_npu.core.files import STDOUT, check_writable, write_atomic
from resnet34_npu.judge.criteria import PROFILES, Rule, format_bound
from resnet34_npu.judge.localize import Localization, StageResult
from resnet34_npu.reports.chart import MATPLOTLIB_MISSING, stage_chart_png
from resnet34_npu.reports.fleet import Invalid, parse_json, read_text, validate
from resnet34_npu.reports.report import SCHEMA_VERSION

FLEET = "fleet"
#: No scripts, no fetches of any kind; images only from data: URLs, style only inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
#: The CSS class of each status; anything else a report says is "unknown" (grey).
STATUS_CLASSES = {
    "pass": "pass",
    "warn": "warn",
    "fail": "fail",
    "skipped": "skip",
    "not run": "skip",
    "interrupted": "intr",
}
#: Metrics every metrics table shows, whatever the profile judges.
SHOWN_METRICS = ("rel_l2_error", "cosine_similarity", "max_abs_error", "prob_max_rel_error", "top1_match")
#: How a metric reads best (else as bounds are written in failure lines): a cosine needs its nines.
METRIC_FORMATS = {"cosine_similarity": ".8f", "top1_match": ".2f", "top5_overlap": ".2f", "top5_order_match": ".2f"}
_STAGE_NUMBERS = ("rel_l2_error", "cosine_similarity", "max_rel_error", "max_abs_error")

CSS = """
:root { --pass:#1e8449; --warn:#b9770e; --fail:#c0392b; --skip:#7f8c8d; --intr:#6c3483; --unknown:#7f8c8d; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1c2833;
  margin: 0; background: #f4f6f7; }
main { max-width: 1280px; margin: 0 auto; padding: 0 24px 48px; }
header.banner { color: #fff; padding: 20px 24px; margin: 0 -24px 16px; }
header.banner h1 { font-size: 56px; line-height: 1; margin: 0; letter-spacing: 2px; }
header.banner p { margin: 6px 0 0; font-size: 15px; opacity: .95; overflow-wrap: anywhere; }
.bg-pass { background: var(--pass); } .bg-warn { background: var(--warn); } .bg-fail { background: var(--fail); }
.bg-skip { background: var(--skip); } .bg-intr { background: var(--intr); } .bg-unknown { background: var(--unknown); }
section { background: #fff; border: 1px solid #d5d8dc; border-radius: 6px; padding: 12px 18px; margin: 14px 0; }
h2 { font-size: 19px; margin: 4px 0 10px; } h3 { font-size: 15px; margin: 14px 0 6px; overflow-wrap: anywhere; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 0; }
dl.summary dt { font-weight: 600; color: #566573; } dl.summary dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border: 1px solid #d5d8dc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eaeded; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.cell { text-align: center; font-weight: 700; color: #fff; min-width: 84px; }
td.cell small { display: block; font-weight: 400; opacity: .95; }
td.c-pass { background: var(--pass); } td.c-warn { background: var(--warn); } td.c-fail { background: var(--fail); }
td.c-skip { background: var(--skip); } td.c-intr { background: var(--intr); }
td.c-unknown { background: var(--unknown); }
td.cell.slow { box-shadow: inset 0 0 0 3px #f1c40f; }
td.bad { background: #fadbd8; color: #922b21; font-weight: 700; } td.soft { background: #fdebd0; color: #7e5109; }
small.bound { display: block; color: #566573; font-weight: 400; }
span.badge { display: inline-block; padding: 0 7px; border-radius: 9px; color: #fff; font-weight: 700;
  font-size: 12px; }
span.outlier { display: inline-block; background: #f1c40f; color: #1c2833; border-radius: 3px; padding: 0 4px;
  font-size: 11px; font-weight: 700; margin-left: 4px; }
ul.lines { margin: 4px 0; padding-left: 20px; } ul.lines li { font-family: ui-monospace, "DejaVu Sans Mono", monospace;
  font-size: 12px; overflow-wrap: anywhere; }
.bar { background: #5dade2; height: 10px; display: inline-block; vertical-align: middle; min-width: 1px; }
.note { background: #fef9e7; border-left: 4px solid #f1c40f; padding: 6px 10px; margin: 8px 0; }
div.wide { overflow-x: auto; } td.nowrap { white-space: nowrap; }
img.chart { max-width: 100%; height: auto; border: 1px solid #d5d8dc; }
details summary { cursor: pointer; color: #2471a3; }
footer { color: #7f8c8d; font-size: 12px; margin-top: 20px; }
"""


def _e(value: Any) -> str:
    """Any value from a report as HTML text (escaped, quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def _status(value: Any) -> str:
    """A report's status word, lower-cased: only for choosing a class and for display."""
    return str(value).lower() if isinstance(value, str) else "unknown"


def _cls(value: Any) -> str:
    return STATUS_CLASSES.get(_status(value), "unknown")


def _float(value: Any) -> float:
    """A number from a report: JSON numbers, and the "nan", "inf", "-inf" strings; else NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    return math.nan


def _num(value: Any, spec: str = "") -> str:
    """A number formatted (``spec``, else as a bound is in failure lines); "-" when absent."""
    if value is None:
        return "-"
    number = _float(value)
    if math.isnan(number) and not (isinstance(value, str) and value.lower() == "nan"):
        return _e(value)  # not a number at all: shown as it is
    return _e(format(number, spec) if spec and math.isfinite(number) else format_bound(number))


# ---------------------------------------------------------------- reading and checking


def _where(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def _obj(value: Any, where: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"report {source}: does not match the report schema: {where} is not an object")
    return value


def _list(value: Any, where: str, source: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"report {source}: does not match the report schema: {where} is not a list")
    return value


def _fleet_structure(doc: dict[str, Any], source: str) -> None:
    """The keys of a fleet document (``report merge``, :mod:`fleet`) that the page reads."""
    for g, group in enumerate(_list(doc.get("groups"), "groups", source)):
        where = _where("groups", g)
        group = _obj(group, where, source)
        for key in ("key", "counts"):
            if group.get(key) is not None:
                _obj(group[key], f"{where}.{key}", source)
        for n, population in enumerate(_list(group.get("latency"), f"{where}.latency", source)):
            _obj(population, _where(f"{where}.latency", n), source)
        for c, card in enumerate(_list(group.get("cards"), f"{where}.cards", source)):
            row = _obj(card, _where(f"{where}.cards", c), source)
            if row.get("worst_metric") is not None:
                _obj(row["worst_metric"], _where(f"{where}.cards", c) + ".worst_metric", source)
    for r, refused in enumerate(_list(doc.get("refused"), "refused", source)):
        _obj(refused, _where("refused", r), source)
    _list(doc.get("notes"), "notes", source)


def _report_structure(doc: dict[str, Any], source: str) -> None:
    """The keys of a host's report that the page reads beyond what :func:`fleet.validate` checks."""
    for key in ("machine", "weights", "reference"):
        if doc.get(key) is not None:
            _obj(doc[key], key, source)
    for t, target in enumerate(_list(doc.get("targets"), "targets", source)):
        where = _where("targets", t)
        target = _obj(target, where, source)
        if target.get("latency_ms") is not None:
            _obj(target["latency_ms"], f"{where}.latency_ms", source)
        for i, case in enumerate(_list(target.get("images"), f"{where}.images", source)):
            at = _where(f"{where}.images", i)
            case = _obj(case, at, source)
            _list(case.get("failures"), f"{at}.failures", source)
            _list(case.get("warnings"), f"{at}.warnings", source)
            for key in ("localization", "localisation", "blame"):  # schema 1 spelt it "localisation"
                if case.get(key) is not None:
                    loc = _obj(case[key], f"{at}.{key}", source)
                    for s, stage in enumerate(_list(loc.get("stages"), f"{at}.{key}.stages", source)):
                        _obj(stage, _where(f"{at}.{key}.stages", s), source)
    if doc.get("reference") and doc["reference"].get("latency_ms") is not None:
        _obj(doc["reference"]["latency_ms"], "reference.latency_ms", source)
    for n, test in enumerate(_list(doc.get("tests"), "tests", source)):
        _obj(test, _where("tests", n), source)


def check_document(document: Any, source: str) -> dict[str, Any]:
    """``document`` if it is a report this version can show; else :class:`InputError`, one
    line naming ``source`` (already :func:`show`-n) and what is wrong. A host's report is
    checked against the schema by :func:`fleet.validate` (the check ``report merge`` makes),
    a fleet document here; then the structure the page reads, so a malformed report is a clear
    refusal, never a crash."""
    if isinstance(document, dict):
        version = document.get("schema_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            raise InputError(
                f"report {source}: was written by a newer resnet34-npu (schema_version {version}; this one reads up "
                f"to {SCHEMA_VERSION}): upgrade resnet34-npu to show it"
            )
    if isinstance(document, dict) and document.get("kind") == FLEET:
        version = document.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InputError(f"report {source}: a fleet report without a valid schema_version")
        if not isinstance(document.get("verdict"), str):
            raise InputError(f"report {source}: a fleet report without a verdict")
        _fleet_structure(document, source)
        return document
    try:
        validate(document, source)
    except Invalid as exc:
        raise InputError(f"report {source}: {exc}") from None
    _report_structure(document, source)
    return document


def load_document(path: str | Path) -> dict[str, Any]:
    """Read and check a saved report (see :func:`check_document`), with ``report merge``'s
    reader (a size cap; a FIFO, a truncated file or NaN tokens are refused)."""
    if Path(path).is_dir():  # before read_text, which opens it
        raise InputError(f"report {show(path)}: is a directory")
    try:
        document = parse_json(read_text(Path(path)))
    except Invalid as exc:
        raise InputError(f"report {show(path)}: {exc}") from None
    return check_document(document, show(path))


# ---------------------------------------------------------------- page pieces


def _badge(status: Any) -> str:
    return f'<span class="badge bg-{_cls(status)}">{_e(_status(status).upper())}</span>'


def _summary(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in pairs if v not in (None, ""))
    return f'<dl class="summary">{rows}</dl>'


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """Cells are HTML already (escape what goes in); header cells are plain text."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _lines(lines: Iterable[Any]) -> str:
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return f'<ul class="lines">{items}</ul>' if items else ""


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _page(title: str, verdict: Any, subtitle: str, sections: list[str], generator: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
        f'<header class="banner bg-{_cls(verdict)}"><h1 id="verdict">{_e(_status(verdict).upper())}</h1>'
        f"<p>{subtitle}</p></header>" + "".join(sections) + f"<footer>{_e(generator)}</footer></main></body></html>\n"
    )


def _cases(target: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(target.get("images") or [])


def _case_key(case: Mapping[str, Any]) -> tuple[str, str]:
    return (str(case.get("image", "?")), str(case.get("batch_size", 1)))


def _image_label(case: Mapping[str, Any]) -> str:
    """A batch is named ``a.jpg+b.jpg+...``: its first image and the batch size say enough."""
    name = str(case.get("image", "?"))
    return name.split("+")[0] + (f" (+{name.count('+')})" if "+" in name else "")


def _matrix(targets: list[dict[str, Any]]) -> str:
    columns: dict[tuple[str, str], Mapping[str, Any]] = {}
    for target in targets:
        for case in _cases(target):
            columns.setdefault(_case_key(case), case)
    if not columns:
        return '<p class="note">No comparison ran: no target was compared on any image.</p>'
    header = ["target", "verdict", *(f"{_image_label(c)} \u00d7{k[1]}" for k, c in columns.items())]
    rows = []
    for target in targets:
        by_key = {_case_key(c): c for c in _cases(target)}
        cells = [f"<b>{_e(target.get('name', '?'))}</b>", _badge(target.get("verdict"))]
        if not by_key:
            reason = target.get("skipped") or target.get("required_missing") or "not run"
            cells.append(f'<td class="cell c-{_cls(target.get("verdict"))}" colspan="{len(columns)}">{_e(reason)}</td>')
        for key in columns if by_key else ():
            case = by_key.get(key)
            if case is None:
                cells.append('<td class="cell c-skip">-</td>')
                continue
            metrics = case.get("metrics") or {}
            cells.append(
                f'<td class="cell c-{_cls(case.get("verdict"))}" title="{_e(case.get("image"))}">'
                f"{_e(_status(case.get('verdict')).upper())}<small>rel L2 {_num(metrics.get('rel_l2_error'), '.2e')}"
                "</small></td>"
            )
        rows.append(cells)
    return _table(header, rows, "matrix")


def _rules(profile: str, precision: Any) -> tuple[Rule, ...]:
    known = PROFILES.get(profile)
    if known is None or not isinstance(precision, str):
        return ()
    try:
        return known.rules_for(precision)
    except KeyError:
        return ()


def _metric_cell(metric: str, metrics: dict[str, float], rules: tuple[Rule, ...], raw: Any) -> str:
    """The measured value, its bounds underneath, red where a fail rule breaks, amber for a warn."""
    value = metrics.get(metric, math.nan)
    bounds, cls = [], ""
    for rule in rules:
        if rule.metric != metric or not rule.applies(metrics):
            continue
        bounds.append(f"{rule.op} {format_bound(rule.bound)}" + (" (warn)" if rule.level == "warn" else ""))
        if not rule.holds(value):
            cls = "bad" if rule.level == "fail" or cls == "bad" else "soft"
    shown = _num(raw, METRIC_FORMATS.get(metric, ""))
    bound = f'<small class="bound">allowed {_e(", ".join(bounds))}</small>' if bounds else ""
    return f'<td class="num {cls}">{shown}{bound}</td>'


def _metrics(doc: Mapping[str, Any], targets: list[dict[str, Any]]) -> str:
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
                    _e(target.get("name", "?")),
                    _e(_image_label(case)),
                    _e(case.get("batch_size", 1)),
                    _e(precision),
                    _badge(case.get("verdict")),
                    *(_metric_cell(m, metrics, rules, raw.get(m)) for m in columns),
                ]
            )
    note = (
        f"<p>Bounds are profile <b>{_e(profile)}</b>'s rules for each target's effective precision: "
        f"{_e(known.description)}. A red cell breaks a failing rule, an amber one a warning rule.</p>"
        if known
        else f'<p class="note">Profile {_e(profile) or "(none)"} is unknown to this version: the bounds are not shown; '
        "the verdicts are the report's own.</p>"
    )
    failures = []
    for target in targets:
        for case in _cases(target):
            lines = [*(case.get("failures") or []), *(f"warning: {w}" for w in case.get("warnings") or [])]
            if case.get("error"):
                lines.insert(0, f"error: {case['error']}")
            if lines:
                failures.append(
                    f"<h3>{_e(target.get('name', '?'))} on {_e(case.get('image', '?'))}</h3>{_lines(lines)}"
                )
        for key in ("left_threads", "required_missing"):
            if target.get(key):
                failures.append(f"<h3>{_e(target.get('name', '?'))}</h3>{_lines([target[key]])}")
    table = f'<div class="wide">{_table(header, rows, "metrics")}</div>'
    body = note + (table if rows else "<p>No metrics: nothing was compared.</p>")
    if failures:
        body += "<h3>Failure and warning lines</h3>" + "".join(failures)
    return body


def _latency(doc: Mapping[str, Any], targets: list[dict[str, Any]]) -> str:
    reference = doc.get("reference") or {}
    entries = [(f"{reference.get('name', 'reference')} (reference)", reference, None)]
    entries += [(str(t.get("name", "?")), t, t.get("speedup_vs_reference")) for t in targets]
    timed = [(n, s, x) for n, s, x in entries if isinstance(s.get("latency_ms"), dict)]
    if not timed:
        return "<p>Not timed (<code>--iters 0</code>, or no target ran).</p>"
    fastest = max((_float(x) for _, _, x in timed if x is not None), default=math.nan)
    scale = max(fastest, 1.0) if math.isfinite(fastest) else 1.0
    rows = []
    for name, side, speedup in timed:
        t = side["latency_ms"]
        ratio = _float(speedup)
        bar = (
            f'<span class="bar" style="width:{max(1, min(200, round(160 * ratio / scale)))}px"></span> '
            if math.isfinite(ratio) and ratio > 0
            else ""
        )
        rows.append(
            [
                _e(name),
                _e(side.get("device_name") or side.get("device")),
                f'<td class="num">{_num(t.get("median"), ".2f")}</td>',
                f'<td class="num">{_num(t.get("p90"), ".2f")}</td>',
                f'<td class="num">{_num(t.get("mean"), ".2f")} \u00b1 {_num(t.get("std"), ".2f")}</td>',
                f'<td class="num">{_num(side.get("throughput_ips"), ".1f")}</td>',
                f'<td class="nowrap">{bar}{_num(speedup, ".2f")}\u00d7</td>' if speedup is not None else "-",
                _e(
                    f"{t.get('iterations', '?')} runs after {t.get('warmup', '?')} warm-up, batch "
                    f"{t.get('batch_size', '?')}, {t.get('clock', '?')}"
                ),
            ]
        )
    return (
        "<p>Median of synchronised runs; speedup = reference median / target median (above 1: faster than the "
        "reference).</p>"
        + _table(
            ["target", "device", "median ms", "p90 ms", "mean \u00b1 std ms", "images/s", "speedup", "timing"], rows
        )
    )


def _localization(data: Mapping[str, Any]) -> Localization:
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


def _stage_table(localization: Localization) -> str:
    rows = [
        [
            _e(s.name),
            *(f'<td class="num">{_num(getattr(s, key))}</td>' for key in _STAGE_NUMBERS),
            f'<td class="cell c-{_cls(s.status)}">{_e(s.status.upper())}</td>',
            _e(s.failure),
        ]
        for s in localization.stages
    ]
    return _table(["stage", "rel L2", "cosine", "max rel", "max abs", "verdict", "broken rule"], rows, "stages")


def _localisation_section(targets: list[dict[str, Any]], charts: bool) -> tuple[str, bool]:
    """Per failing target: the first failing case's per-stage chart (or table) and each failing
    case's first diverging stage. Also says whether a chart was wanted but matplotlib is missing."""
    parts, missing = [], False
    for target in targets:
        failing = [c for c in _cases(target) if _status(c.get("verdict")) == "fail"]
        if not failing:
            continue
        name = str(target.get("name", "?"))
        located = [(c, c.get("localization") or c.get("localisation")) for c in failing]
        summary_rows = []
        for case, loc in located:
            if not loc:
                where = "not localised"
            elif loc.get("first_failing_stage"):
                where = f"first diverging stage: <b>{_e(loc['first_failing_stage'])}</b>"
            elif loc.get("note"):
                where = _e(loc["note"])
            else:
                where = "no stage of the module breaks the profile: the difference arises after the last stage"
            blame = case.get("blame") or {}
            if blame.get("blamed"):
                where += f"; blamed: <b>{_e(blame['blamed'])}</b> (eager twin {_e(blame.get('eager_twin'))}: " + (
                    f"{_e(blame.get('eager_verdict'))})"
                )
            summary_rows.append([_e(_image_label(case)), _e(case.get("batch_size", 1)), where])
        part = f"<h3>{_e(name)}</h3>" + _table(["image", "batch", "where it breaks"], summary_rows)
        shown = next(((c, loc) for c, loc in located if loc and loc.get("stages")), None)
        if shown is not None:
            case, data = shown
            localization = _localization(data)
            title = f"{name} on {_image_label(case)}, batch {case.get('batch_size', 1)}"
            png = stage_chart_png(localization, title) if charts else None
            if png is not None:
                part += (
                    f'<img class="chart" alt="relative L2 error per stage: {_e(title)}" '
                    f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
                )
            missing = missing or (charts and png is None)
            opened = "" if png is not None else " open"
            part += (
                f"<details{opened}><summary>per-stage numbers: {_e(title)}</summary>{_stage_table(localization)}"
                "</details>"
            )
        parts.append(part)
    return "".join(parts), missing


def _tests(doc: Mapping[str, Any]) -> str:
    tests = doc.get("tests") or []
    counts: dict[str, int] = {}
    for test in tests:
        counts[str(test.get("outcome", "?"))] = counts.get(str(test.get("outcome", "?")), 0) + 1
    bad = [t for t in tests if t.get("outcome") not in ("passed", "skipped")]
    body = "<p>" + _e(", ".join(f"{n} {k}" for k, n in sorted(counts.items()))) + "</p>"
    if bad:
        body += _table(
            ["test", "outcome", "message"],
            [[_e(t.get("test")), _badge("fail"), f"{_lines(str(t.get('message', '')).splitlines())}"] for t in bad],
        )
    return body


def _subtitle(doc: Mapping[str, Any], source: str) -> str:
    return f"resnet34-npu conformance report &middot; {_e(source)} &middot; created {_e(doc.get('created', '?'))}"


def _report_page(doc: dict[str, Any], source: str, charts: bool) -> str:
    targets = list(doc.get("targets") or [])
    machine = doc.get("machine") or {}
    weights = doc.get("weights") or {}
    reference = doc.get("reference") or {}
    verdicts = [_status(t.get("verdict")) for t in targets]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
    failing = [str(t.get("name", "?")) for t in targets if _status(t.get("verdict")) == "fail"]
    summary = _summary(
        [
            ("targets", _e(f"{len(targets)}: {counts}" if targets else "none")),
            ("failing", _e(", ".join(failing))),
            ("note", _e(doc.get("note"))),
            ("host", _e(machine.get("host"))),
            ("platform", _e(machine.get("platform"))),
            ("CPU", _e(f"{machine.get('cpu', '?')} ({machine.get('cpu_count', '?')} cores)") if machine else ""),
            (
                "software",
                _e(
                    ", ".join(
                        f"{k} {machine[k]}"
                        for k in ("python", "torch", "torchvision", "torch_npu", "cann", "cuda_runtime", "resnet34_npu")
                        if machine.get(k)
                    )
                ),
            ),
            ("devices", _e(", ".join(map(str, machine.get("devices") or [])))),
            ("weights", _e(f"{weights.get('spec', '?')}  sha256 {weights.get('sha256', '?')}") if weights else ""),
            ("profile", _e(doc.get("profile"))),
            (
                "reference",
                _e(
                    f"stored reference file {reference['path']} ({reference.get('images', '?')} images, "
                    f"created {reference.get('created', '?')})"
                    if "path" in reference
                    else f"{reference.get('name', '?')} on {reference.get('device_name', '?')}, "
                    f"{reference.get('effective_precision', '?')}"
                )
                if reference
                else "",
            ),
            ("dataset", _e(_dataset_line(doc.get("dataset")))),
            ("images", _e(", ".join(Path(str(p)).name for p in doc.get("images") or []))),
            ("float64 truth", "on" if doc.get("fp64_truth") else ""),
        ]
    )
    sections = [_section("Summary", summary, "summary")]
    datasets = [t for t in targets if isinstance(t.get("dataset"), dict)]
    if datasets:
        sections.append(_section("Dataset agreement", _datasets(doc, datasets), "dataset"))
    targets = [t for t in targets if not isinstance(t.get("dataset"), dict)]
    if targets:
        sections.append(_section("Target \u00d7 image \u00d7 batch", _matrix(targets), "matrix"))
        sections.append(_section("Metrics and bounds", _metrics(doc, targets), "metrics"))
        sections.append(_section("Latency", _latency(doc, targets), "latency"))
        body, missing = _localisation_section(targets, charts)
        if body:
            note = (
                f'<p class="note">Charts are not drawn: {_e(MATPLOTLIB_MISSING)}; the per-stage tables show the '
                "same numbers.</p>"
                if missing
                else ""
            )
            sections.append(_section("Where failing targets break (per-stage localisation)", note + body, "where"))
    if doc.get("tests"):
        sections.append(_section("Tests", _tests(doc), "tests"))
    title = f"resnet34-npu report: {_status(doc.get('verdict')).upper()} \u2014 {source}"
    return _page(title, doc.get("verdict"), _subtitle(doc, source), sections, "resnet34-npu report html")


def _dataset_line(dataset: Any) -> str:
    if not isinstance(dataset, dict):
        return ""
    return (
        f"{dataset.get('root', '?')}: {dataset.get('images', '?')} images ({dataset.get('layout', '?')}"
        + (", labelled" if dataset.get("labelled") else "")
        + ")"
    )


def _datasets(doc: Mapping[str, Any], targets: list[dict[str, Any]]) -> str:
    """Per dataset-scale target (``compare --dataset``): its verdict and failure lines, the
    distribution of the per-image errors, accuracy and MLPerf's rule, a row per card and the
    worst images with the command that localises each."""
    parts = []
    for target in targets:
        s = target["dataset"]
        rel, cos = s.get("rel_l2") or {}, s.get("cosine") or {}
        statuses = ", ".join(f"{k} {v}" for k, v in (s.get("statuses") or {}).items())
        pairs = [
            ("compared", _e(f"{s.get('compared', '?')} of {s.get('images', '?')} images; {statuses}")),
            ("missing", _e(s.get("missing")) if s.get("missing") else ""),
            ("NaN or Inf", _e(s.get("nonfinite")) if s.get("nonfinite") else ""),
            (
                "rel L2",
                f"median {_num(rel.get('median'), '.3e')}, p99 {_num(rel.get('p99'), '.3e')}, "
                f"max {_num(rel.get('max'), '.3e')}",
            ),
            (
                "cosine",
                f"median {_num(cos.get('median'), '.8f')}, p1 {_num(cos.get('p1'), '.8f')}, "
                f"min {_num(cos.get('min'), '.8f')}",
            ),
            ("top-1 agreement", _num(s.get("top1_agreement"), ".5g")),
        ]
        acc = s.get("accuracy")
        if isinstance(acc, dict):
            rule = {True: "PASS", False: "FAIL", None: "not applicable"}.get(acc.get("mlperf_pass"), "?")
            pairs.append(
                (
                    "accuracy",
                    _e(
                        f"{acc.get('images')} labelled images: reference top-1 {_num(acc.get('reference_top1'), '.5g')}"
                        f", top-5 {_num(acc.get('reference_top5'), '.5g')}; target top-1 "
                        f"{_num(acc.get('target_top1'), '.5g')}, top-5 {_num(acc.get('target_top5'), '.5g')}; "
                        f"MLPerf rule (>= {acc.get('mlperf_fraction')} x the reference's top-1): {rule}"
                    ),
                )
            )
        cards = [
            [
                _e(c.get("rank")),
                _e(c.get("card")),
                f'<td class="cell c-{_cls(c.get("verdict"))}">{_e(_status(c.get("verdict")).upper())}</td>',
                _e(c.get("images")),
                _e(c.get("worst_image") or "-"),
                _num(c.get("worst_rel_l2"), ".3e"),
                _num(c.get("images_per_s"), ".1f"),
                _e(c.get("error") or ""),
            ]
            for c in s.get("cards") or []
            if isinstance(c, dict)
        ]
        worst = [
            [
                _e(w.get("path")),
                _e(w.get("card")),
                _badge(w.get("status")),
                _num(w.get("rel_l2"), ".3e"),
                f"<code>{_e(w.get('localize'))}</code>",
            ]
            for w in s.get("worst") or []
            if isinstance(w, dict)
        ]
        unreadable = [
            [_e(u.get("path")), _e(u.get("reason"))] for u in s.get("unreadable") or [] if isinstance(u, dict)
        ]
        parts.append(
            f"<h3>{_e(target.get('name', '?'))} {_badge(s.get('verdict'))}</h3>"
            + _lines(s.get("failures") or [])
            + _summary(pairs)
            + (
                _table(["rank", "card", "verdict", "images", "worst image", "rel L2", "images/s", "error"], cards)
                if cards
                else ""
            )
            + (
                "<h4>Worst images</h4>" + _table(["image", "card", "verdict", "rel L2", "localise it with"], worst)
                if worst
                else ""
            )
            + ("<h4>Unreadable images</h4>" + _table(["image", "reason"], unreadable) if unreadable else "")
        )
    return "".join(parts)


def _card_label(row: Mapping[str, Any]) -> str:
    return "(no targets)" if row.get("card") is None else str(row.get("card"))


def _fleet_grid(group: Mapping[str, Any]) -> str:
    """Hosts down, cards across; a cell is coloured by the worst verdict of that card's targets
    and lists each target, a latency outlier marked."""
    cards = list(group.get("cards") or [])
    hosts = list(dict.fromkeys(str(c.get("host")) for c in cards))
    slots = list(dict.fromkeys(_card_label(c) for c in cards))
    rows = []
    for host in hosts:
        cells = [f"<b>{_e(host)}</b>"]
        for slot in slots:
            here = [c for c in cards if str(c.get("host")) == host and _card_label(c) == slot]
            if not here:
                cells.append('<td class="cell c-skip">-</td>')
                continue
            statuses = [_status(c.get("verdict")) for c in here]
            worst = next((s for s in ("fail", "interrupted", "not run", "warn", "pass") if s in statuses), statuses[0])
            lines = "".join(
                f"<small>{_e(c.get('target') or 'report ' + str(c.get('report')))}: "
                f"{_e(_status(c.get('verdict')).upper())}"
                + ('<span class="outlier">SLOW</span>' if c.get("latency_outlier") is True else "")
                + "</small>"
                for c in here
            )
            tip = "; ".join(
                f"{c.get('target')}: median {_num(c.get('latency_median_ms'), '.2f')} ms, "
                f"robust z {_num(c.get('robust_z'), '.2f')}"
                for c in here
            )
            slow = " slow" if any(c.get("latency_outlier") is True for c in here) else ""
            cells.append(f'<td class="cell c-{_cls(worst)}{slow}" title="{_e(tip)}">{_e(worst.upper())}{lines}</td>')
        rows.append(cells)
    grid = '<div class="wide">' + _table(["host / card", *slots], rows, "grid") + "</div>"
    detail = []
    for c in cards:
        worst = c.get("worst_metric") or {}
        detail.append(
            [
                _badge(c.get("verdict")),
                _e(c.get("host")),
                _e(_card_label(c)),
                _e(c.get("target")),
                _e(worst.get("name")),
                f'<td class="num">{_num(worst.get("value"), ".2e")}</td>',
                _e(worst.get("image")),
                f'<td class="num">{_num(c.get("latency_median_ms"), ".2f")}</td>',
                f'<td class="num">{_num(c.get("robust_z"), ".2f")}</td>',
                '<span class="outlier">SLOW</span>' if c.get("latency_outlier") is True else "",
                _e(c.get("report")),
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
            _e(p.get("population")),
            f'<td class="num">{_num(p.get("cards"))}</td>',
            f'<td class="num">{_num(p.get("median_ms"), ".2f")}</td>',
            f'<td class="num">{_num(p.get("mad_ms"), ".3f")}</td>',
            _e(p.get("scale")),
        ]
        for p in group.get("latency") or []
    ]
    body = grid + f"<details><summary>every card target ({len(cards)} rows, failing first)</summary>{table}</details>"
    if populations:
        body += (
            "<details><summary>latency populations (what each card is compared with)</summary>"
            + _table(["population", "cards", "median ms", "MAD ms", "scale"], populations)
            + "</details>"
        )
    return body


def _fleet_page(doc: dict[str, Any], source: str) -> str:
    groups = list(doc.get("groups") or [])
    refused = list(doc.get("refused") or [])
    cards = [c for g in groups for c in g.get("cards") or []]

    def named(rows: list[Mapping[str, Any]], most: int = 20) -> str:
        text = ", ".join(f"{c.get('host')} {_card_label(c)} {c.get('target') or ''}".strip() for c in rows[:most])
        return text + (f" and {len(rows) - most} more (the grids show every one)" if len(rows) > most else "")

    rule = doc.get("outlier_rule") if isinstance(doc.get("outlier_rule"), dict) else {}
    summary = _summary(
        [
            ("reports", _e(sum(len(g.get("reports") or []) for g in groups) or "")),
            ("hosts", _e(len({str(c.get("host")) for c in cards}))),
            ("card targets", _e(len(cards))),
            ("failing", _e(named([c for c in cards if _status(c.get("verdict")) == "fail"]))),
            ("latency outliers", _e(named([c for c in cards if c.get("latency_outlier") is True]))),
            (
                "outlier rule",
                _e(
                    f"robust z above {rule.get('robust_z_above')} and at least "
                    f"{_num(rule.get('min_excess_over_median'), '.0%')} over the median of at least "
                    f"{rule.get('min_cards')} cards"
                )
                if rule
                else "",
            ),
            ("groups", _e(len(groups))),
            ("refused reports", _e(len(refused)) if refused else ""),
        ]
    )
    notes = _lines(doc.get("notes") or [])
    sections = [_section("Summary", summary + notes, "summary")]
    for g, group in enumerate(groups, 1):
        key = group.get("key") or {}
        label = ", ".join(f"{k} {v}" for k, v in key.items() if isinstance(v, (str, int, float)) and v != "")
        head = f"<p>{_badge(group.get('verdict'))} {_e(label)}</p>"
        if group.get("apart"):
            head += f'<p class="note">{_e(group["apart"])}</p>'
        sections.append(_section(f"Group {g}: host \u00d7 card", head + _fleet_grid(group), f"group-{g}"))
    if refused:
        rows = [[_e(r.get("path")), _e(r.get("reason"))] for r in refused]
        sections.append(_section("Refused reports", _table(["path", "reason"], rows), "refused"))
    sections.append(
        _section(
            "Legend",
            "<p>Each cell is one card of one host, coloured by the worst verdict of its targets; "
            '<span class="outlier">SLOW</span> marks a latency outlier: slower than the cards running the same '
            "target, by the outlier rule above. Hover a cell for the medians and robust z-scores.</p>",
            "legend",
        )
    )
    title = f"resnet34-npu fleet report: {_status(doc.get('verdict')).upper()} \u2014 {source}"
    subtitle = f"resnet34-npu fleet report &middot; {_e(source)} &middot; created {_e(doc.get('created', '?'))}"
    return _page(title, doc.get("verdict"), subtitle, sections, "resnet34-npu report html")


def render(document: dict[str, Any], source: str, *, charts: bool = True) -> str:
    """The page for a checked document (:func:`check_document`); ``source`` names it in the
    title. ``charts=False`` (or no matplotlib) shows per-stage tables instead of charts."""
    if document.get("kind") == FLEET:
        return _fleet_page(document, source)
    return _report_page(document, source, charts)


def write_html(document: dict[str, Any], output: str | Path, source: str, *, charts: bool = True) -> Path | None:
    """Check ``document``, render it and write it to ``output`` atomically (``-``: standard
    output). Nothing is written when the document is refused."""
    document = check_document(document, show(source))
    try:
        target = check_writable(output)  # before any chart is drawn
    except InputError as exc:
        raise InputError(f"HTML {exc}") from None  # "HTML report 'x': is a directory"
    page = render(document, source, charts=charts).encode("utf-8")
    if target == STDOUT:
        sys.stdout.write(page.decode("utf-8"))
        sys.stdout.flush()
        return None
    path = Path(target)
    write_atomic(path, lambda handle: handle.write(page), what="HTML report", prefix=f".{path.name}.")
    return path


def convert(report: str | Path, output: str | Path | None = None, *, charts: bool = True) -> Path | None:
    """``report html``: the report at ``report`` as a page at ``output`` (default: beside it,
    ``.html``). Every bad input is one :class:`InputError`, and nothing is written."""
    report = Path(report)
    document = load_document(report)
    output = report.with_suffix(".html") if output is None else output
    if str(output) != STDOUT and Path(output).resolve() == report.resolve():
        raise InputError(f"HTML report {show(output)}: is the report being read; choose another -o")
    return write_html(document, output, report.name, charts=charts)
