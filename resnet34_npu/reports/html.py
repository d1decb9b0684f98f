"""A saved report as one self-contained HTML page that people can look at: ``python -m
resnet34_npu report html REPORT``, and ``pytest --r34-html=PATH`` beside the acceptance report.

Reads every document the suite writes (``compare``'s report, the acceptance report, an
unfinished run's placeholder, and ``report merge``'s fleet report) and shows, top to bottom:
the verdict, what was tested (machine, weights, profile, reference), the target x image x batch
matrix coloured by verdict, the metrics beside the profile's bounds, latency and speedup, and
for each failing target where it breaks (the per-stage chart of ``localize --png``, embedded as
a PNG ``data:`` URL, and the numbers); a fleet report is a host x card grid per group.

Reports are untrusted input: the page is a Jinja2 template (``templates/report.html.j2``,
autoescape on) fed a plain view model of text, so every string taken from one is HTML-escaped;
class names come from a fixed set, and the page's Content-Security-Policy forbids scripts and every fetch, so
the page neither runs code nor reaches the network. matplotlib is optional: without it the
stages are tables, and the page says so.
"""

from __future__ import annotations

import base64
import functools
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
from resnet34_npu.reports.fleet import Invalid, check_schema, parse_json, read_text
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
        return str(value)  # not a number at all: shown as it is
    return format(number, spec) if spec and math.isfinite(number) else format_bound(number)


# ---------------------------------------------------------------- reading and checking


def check_document(document: Any, source: str) -> dict[str, Any]:
    """``document`` if it is a report this version can show; else :class:`InputError`, one
    line naming ``source`` (already :func:`show`-n) and what is wrong. Every kind (compare,
    acceptance, fleet) is checked against its JSON Schema by :func:`fleet.check_schema`, the
    check ``report merge`` makes, so a malformed report is a clear refusal, never a crash."""
    if isinstance(document, dict):
        version = document.get("schema_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            raise InputError(
                f"report {source}: was written by a newer resnet34-npu (schema_version {version}; this one reads up "
                f"to {SCHEMA_VERSION}): upgrade resnet34-npu to show it"
            )
    try:
        check_schema(document)
    except Invalid as exc:
        raise InputError(f"report {source}: {exc}") from None
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


# ---------------------------------------------------------------- the view model
# The page is a plain view model of already-formatted text handed to the Jinja2 template
# ``templates/report.html.j2`` (autoescape on): a section is a list of blocks ({"k": "table" ...}),
# a block's content a list of nodes (a string is text; {"t": "b"|"code"|"badge"|"small"|...}).
# Nothing here writes markup, so nothing here can forget to escape.

Nodes = list[Any]
Block = dict[str, Any]


def _t(value: Any) -> str:
    """Any value from a report as text (the template escapes it)."""
    return "" if value is None else str(value)


def _b(value: Any) -> dict[str, Any]:
    return {"t": "b", "v": _t(value)}


def _code(value: Any) -> dict[str, Any]:
    return {"t": "code", "v": _t(value)}


def _small(content: Nodes, cls: str = "") -> dict[str, Any]:
    return {"t": "small", "cls": cls, "c": content}


OUTLIER = {"t": "outlier"}


def _badge(status: Any) -> dict[str, Any]:
    return {"t": "badge", "cls": _cls(status), "v": _status(status).upper()}


def _nodes(content: Any) -> Nodes:
    if isinstance(content, list):
        return content
    if isinstance(content, dict):
        return [content]
    return [_t(content)]


def _td(content: Any, cls: str | None = None, *, title: Any = None, colspan: int | None = None) -> dict[str, Any]:
    return {
        "td": True,
        "cls": cls,
        "title": None if title is None else _t(title),
        "colspan": colspan,
        "c": _nodes(content),
    }


def _status_cell(status: Any) -> dict[str, Any]:
    return _td(_status(status).upper(), f"cell c-{_cls(status)}")


def _summary(pairs: Iterable[tuple[str, Any]]) -> Block:
    shown = [(label, _nodes(value)) for label, value in pairs if value not in (None, "", [])]
    return {"k": "summary", "pairs": shown}


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]], cls: str = "", *, wide: bool = False) -> Block:
    """Header cells are text; a row's cell is text, a node, a node list or a :func:`_td`."""
    body = [[c if isinstance(c, dict) and c.get("td") else {"td": False, "c": _nodes(c)} for c in row] for row in rows]
    return {"k": "table", "header": list(header), "rows": body, "cls": cls, "wide": wide}


def _lines(lines: Iterable[Any]) -> Block:
    return {"k": "lines", "v": [_t(line) for line in lines]}


def _p(*content: Any, cls: str = "") -> Block:
    return {"k": "p", "cls": cls, "c": [n for part in content for n in _nodes(part)]}


def _h(level: int, *content: Any) -> Block:
    return {"k": "h", "level": level, "c": [n for part in content for n in _nodes(part)]}


def _section(title: str, blocks: list[Block], anchor: str) -> dict[str, Any]:
    return {"title": title, "blocks": blocks, "anchor": anchor}


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    """The templates' environment (built once: compiling the template takes ~15 ms)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _page(title: str, verdict: Any, subtitle: list[str], sections: list[dict[str, Any]], generator: str) -> str:
    page = {
        "csp": CSP,
        "title": title,
        "verdict": _status(verdict).upper(),
        "verdict_class": _cls(verdict),
        "subtitle": subtitle,
        "sections": sections,
        "generator": generator,
    }
    return _environment().get_template("report.html.j2").render(page=page)


def _cases(target: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(target.get("images") or [])


def _case_key(case: Mapping[str, Any]) -> tuple[str, str]:
    return (str(case.get("image", "?")), str(case.get("batch_size", 1)))


def _image_label(case: Mapping[str, Any]) -> str:
    """A batch is named ``a.jpg+b.jpg+...``: its first image and the batch size say enough."""
    name = str(case.get("image", "?"))
    return name.split("+")[0] + (f" (+{name.count('+')})" if "+" in name else "")


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


def _subtitle(doc: Mapping[str, Any], source: str, kind: str = "conformance report") -> list[str]:
    return [f"resnet34-npu {kind}", _t(source), f"created {_t(doc.get('created', '?'))}"]


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
            ("targets", _t(f"{len(targets)}: {counts}" if targets else "none")),
            ("failing", _t(", ".join(failing))),
            ("note", _t(doc.get("note"))),
            ("host", _t(machine.get("host"))),
            ("platform", _t(machine.get("platform"))),
            ("CPU", _t(f"{machine.get('cpu', '?')} ({machine.get('cpu_count', '?')} cores)") if machine else ""),
            (
                "software",
                _t(
                    ", ".join(
                        f"{k} {machine[k]}"
                        for k in ("python", "torch", "torchvision", "torch_npu", "cann", "cuda_runtime", "resnet34_npu")
                        if machine.get(k)
                    )
                ),
            ),
            ("devices", _t(", ".join(map(str, machine.get("devices") or [])))),
            ("weights", _t(f"{weights.get('spec', '?')}  sha256 {weights.get('sha256', '?')}") if weights else ""),
            ("profile", _t(doc.get("profile"))),
            (
                "reference",
                _t(
                    f"stored reference file {reference['path']} ({reference.get('images', '?')} images, "
                    f"created {reference.get('created', '?')})"
                    if "path" in reference
                    else f"{reference.get('name', '?')} on {reference.get('device_name', '?')}, "
                    f"{reference.get('effective_precision', '?')}"
                )
                if reference
                else "",
            ),
            ("dataset", _t(_dataset_line(doc.get("dataset")))),
            ("images", _t(", ".join(Path(str(p)).name for p in doc.get("images") or []))),
            ("float64 truth", "on" if doc.get("fp64_truth") else ""),
        ]
    )
    sections = [_section("Summary", [summary], "summary")]
    datasets = [t for t in targets if isinstance(t.get("dataset"), dict)]
    if datasets:
        sections.append(_section("Dataset agreement", _datasets(doc, datasets), "dataset"))
    targets = [t for t in targets if not isinstance(t.get("dataset"), dict)]
    if targets:
        sections.append(_section("Target \u00d7 image \u00d7 batch", _matrix(targets), "matrix"))
        sections.append(_section("Metrics and bounds", _metrics(doc, targets), "metrics"))
        sections.append(_section("Latency", _latency(doc, targets), "latency"))
        burn_in = doc.get("burn_in") if isinstance(doc.get("burn_in"), dict) else {}
        consistency = _consistency(
            targets,
            [("report", g) for g in doc.get("card_to_card") or []]
            + [("burn-in", g) for g in burn_in.get("card_to_card") or []],
        )
        if consistency:
            sections.append(_section("Consistency", consistency, "consistency"))
        body, missing = _localisation_section(targets, charts)
        if body:
            note = (
                [
                    _p(
                        f"Charts are not drawn: {MATPLOTLIB_MISSING}; the per-stage tables show the same numbers.",
                        cls="note",
                    )
                ]
                if missing
                else []
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
            ("compared", _t(f"{s.get('compared', '?')} of {s.get('images', '?')} images; {statuses}")),
            ("missing", _t(s.get("missing")) if s.get("missing") else ""),
            ("NaN or Inf", _t(s.get("nonfinite")) if s.get("nonfinite") else ""),
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
                    _t(
                        f"{acc.get('images')} labelled images: reference top-1 {_num(acc.get('reference_top1'), '.5g')}"
                        f", top-5 {_num(acc.get('reference_top5'), '.5g')}; target top-1 "
                        f"{_num(acc.get('target_top1'), '.5g')}, top-5 {_num(acc.get('target_top5'), '.5g')}; "
                        f"MLPerf rule (>= {acc.get('mlperf_fraction')} x the reference's top-1): {rule}"
                    ),
                )
            )
        cards = [
            [
                _t(c.get("rank")),
                _t(c.get("card")),
                _status_cell(c.get("verdict")),
                _t(c.get("images")),
                _t(c.get("worst_image") or "-"),
                _num(c.get("worst_rel_l2"), ".3e"),
                _num(c.get("images_per_s"), ".1f"),
                _t(c.get("error") or ""),
            ]
            for c in s.get("cards") or []
            if isinstance(c, dict)
        ]
        worst = [
            [
                _t(w.get("path")),
                _t(w.get("card")),
                _badge(w.get("status")),
                _num(w.get("rel_l2"), ".3e"),
                _code(w.get("localize")),
            ]
            for w in s.get("worst") or []
            if isinstance(w, dict)
        ]
        unreadable = [
            [_t(u.get("path")), _t(u.get("reason"))] for u in s.get("unreadable") or [] if isinstance(u, dict)
        ]
        parts += [_h(3, f"{_t(target.get('name', '?'))} ", _badge(s.get("verdict"))), _lines(s.get("failures") or [])]
        parts.append(_summary(pairs))
        if cards:
            parts.append(
                _table(["rank", "card", "verdict", "images", "worst image", "rel L2", "images/s", "error"], cards)
            )
        if worst:
            parts += [_h(4, "Worst images"), _table(["image", "card", "verdict", "rel L2", "localise it with"], worst)]
        if unreadable:
            parts += [_h(4, "Unreadable images"), _table(["image", "reason"], unreadable)]
    return parts


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
    title = f"resnet34-npu fleet report: {_status(doc.get('verdict')).upper()} \u2014 {source}"
    subtitle = _subtitle(doc, source, "fleet report")
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
