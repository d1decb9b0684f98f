"""``report history``: the history of runs (``DIR``: steps and accuracy drift per series, ``--json``,
``-o page.html``), its CI gate (``check DIR``) and the import of pytest-benchmark's saved runs
(``import .benchmarks -o DIR``)."""

from __future__ import annotations

import argparse
import sys

from resnet34_npu.cli import args as shared
from resnet34_npu.core.errors import InputError, one_line, plain
from resnet34_npu.core.files import STDOUT, check_writable, write_json_atomic
from resnet34_npu.history import gate

ACTIONS = ("check", "import")


def register(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "history",
        help="a history of runs: steps and drift per series (DIR), the CI gate (check DIR), "
        "pytest-benchmark's saved runs as records (import SRC -o DIR)",
        usage="%(prog)s [check|import] DIR [--json] [-o PATH] [--strict] [--threshold [TARGET=]PCT ...]",
    )
    p.add_argument("words", nargs="+", metavar="[check|import] DIR", help="the history folder, after the action if any")
    p.add_argument("--json", action="store_true", help="print the analysis (or the gate's verdicts) as JSON")
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="DIR: the trend page (HTML, self-contained); import: the history folder written to (required)",
    )
    p.add_argument("--strict", action="store_true", help="refuse a bad record, exit 2 (default: name it and skip it)")
    p.add_argument(
        "--threshold",
        action="append",
        type=_threshold,
        default=[],
        metavar="[TARGET=]PCT",
        help="check: the practical threshold, for every series or those whose target contains TARGET; "
        "repeatable (default: 5%%)",
    )
    p.set_defaults(func=run)


def _threshold(text: str) -> tuple[str, float]:
    try:
        return gate.parse_threshold(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    words = list(args.words)
    action = words.pop(0) if words[0] in ACTIONS and len(words) > 1 else "show"
    if len(words) != 1:
        raise InputError(f"report history: expected one folder after {action!r}, got {words!r}")
    return {"show": show, "check": check, "import": import_}[action](args, words[0])


def show(args: argparse.Namespace, folder: str) -> int:
    from resnet34_npu.history import analysis, page, store

    output = check_writable(args.output, "page") if args.output else None
    result = analysis.analyse(store.load(folder, strict=args.strict))
    if args.json:
        write_json_atomic(STDOUT, result.to_dict())
    else:
        for skipped in result.history.skipped:
            print(one_line(skipped.line()))
        for line in analysis.summary_lines(result):
            print(plain(line))  # a target or version text with a newline cannot forge a line
    if output is not None:
        page.write(result, output)
        print(f"history page written to {plain(output)}", file=sys.stderr if args.json else sys.stdout)
    return shared.EXIT_OK


def check(args: argparse.Namespace, folder: str) -> int:
    from resnet34_npu.history import store

    history = store.load(folder, strict=args.strict)
    verdicts = gate.check(history.records, thresholds=args.threshold)
    for skipped in history.skipped:
        print(one_line(skipped.line()), file=sys.stderr)
    if args.json:
        write_json_atomic(STDOUT, {"verdicts": [v.to_dict() for v in verdicts], "failed": gate.failed(verdicts)})
    else:
        for verdict in verdicts:
            print(plain(verdict.line))
    return shared.EXIT_FAIL if gate.failed(verdicts) else shared.EXIT_OK


def import_(args: argparse.Namespace, source: str) -> int:
    from resnet34_npu.history import importer, record

    if not args.output:
        raise InputError("report history import: -o DIR (the history folder to write) is required")
    folder = record.check_history_dir(args.output)
    records, skipped = importer.import_benchmarks(source)
    for item in skipped:
        print(one_line(item.line()), file=sys.stderr)
    for item in records:
        record.write_record(folder, item)
    print(f"{len(records)} pytest-benchmark run(s) imported into {plain(folder)}, {len(skipped)} file(s) skipped")
    return shared.EXIT_OK
