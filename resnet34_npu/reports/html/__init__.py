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

This module holds the entry points (:func:`check_document`, :func:`load_document`,
:func:`render`, :func:`write_html`, :func:`convert`) and the page's assembly: the template
environment, each page's sections in order and the report page's summary. The view of each
section is its own module: ``nodes`` (the view model's building blocks and a report's values as
text), ``targets`` (matrix, metrics and bounds, latency, tests), ``localization`` (where failing
targets break, charts), ``consistency`` (run to run, card to card), ``dataset`` and ``fleet``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resnet34_npu.core.errors import InputError, show
from resnet34_npu.core.files import STDOUT, check_writable, write_atomic
from resnet34_npu.reports.chart import MATPLOTLIB_MISSING
from resnet34_npu.reports.fleet import Invalid, check_schema, parse_json, read_text
from resnet34_npu.reports.html.consistency import _consistency
from resnet34_npu.reports.html.dataset import _dataset_line, _datasets
from resnet34_npu.reports.html.fleet import _fleet_sections
from resnet34_npu.reports.html.localization import _localisation_section, localization_of
from resnet34_npu.reports.html.nodes import (
    OUTLIER,
    STATUS_CLASSES,
    Block,
    _cls,
    _h,
    _lines,
    _p,
    _section,
    _status,
    _summary,
    _t,
)
from resnet34_npu.reports.html.targets import METRIC_FORMATS, SHOWN_METRICS, _latency, _matrix, _metrics, _tests
from resnet34_npu.reports.report import SCHEMA_VERSION

__all__ = [
    "CSP",
    "FLEET",
    "METRIC_FORMATS",
    "OUTLIER",
    "SHOWN_METRICS",
    "STATUS_CLASSES",
    "check_document",
    "convert",
    "load_document",
    "localization_of",
    "render",
    "write_html",
]

FLEET = "fleet"
#: No scripts, no fetches of any kind; images only from data: URLs, style only inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


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


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    """The templates' environment (built once: compiling the template takes ~15 ms)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent.parent / "templates"),
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
    emulated = machine.get("emulated") if isinstance(machine.get("emulated"), dict) else None
    if emulated:  # a banner before anything else: no card computed these figures
        banner = (
            f"EMULATED Ascend host: {emulated.get('cards', '?')} x {emulated.get('soc', '?')}, the real torch_npu "
            f"{emulated.get('torch_npu', '?')} Python layer over an emulated native layer. No card computed anything "
            "on this page."
        )
        sections.insert(0, _section("Emulated host", [_p(_t(banner), cls="note")], "emulated"))
    steps = [(str(t.get("name", "?")), t["next_steps"]) for t in targets if t.get("next_steps")]
    if steps:
        body: list[Block] = []
        for name, lines in steps:
            body += [_h(3, _t(name)), _lines(lines)]
        sections.append(_section("Failing targets: what to run next", body, "next"))
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


def _fleet_page(doc: dict[str, Any], source: str) -> str:
    sections = _fleet_sections(doc)
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
