"""``report history show|check|import``: a history of runs (``show DIR``: steps, drift and the
gate per series, ``--json``, ``-o page.html``), its CI gate (``check DIR``) and the import of
pytest-benchmark's saved runs (``import .benchmarks -o DIR``), each an argparse subcommand with
its own options. The old spelling ``report history DIR`` is read as ``show DIR`` with a one-line
notice (for one release)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resnet34_npu.cli import args as shared
from resnet34_npu.core.errors import InputError, one_line, plain
from resnet34_npu.core.errors import show as quoted
from resnet34_npu.core.files import STDOUT, check_writable, write_json_atomic
from resnet34_npu.history import gate

ACTIONS = ("show", "check", "import")
#: the notice for the old spelling (``report history DIR``), printed once to standard error
OLD_SPELLING = (
    "resnet34-npu report history: note: `report history DIR` is now `report history show DIR`; "
    "the old spelling is accepted for one release"
)


class _HistoryParser(shared.Parser):
    """``report history``'s parser: a first word that is not an action (nor an option) is the old
    spelling's folder, read as ``show`` with :data:`OLD_SPELLING`."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        words = list(sys.argv[1:] if args is None else args)
        if words and words[0] not in ACTIONS and not words[0].startswith("-"):
            print(OLD_SPELLING, file=sys.stderr)
            words.insert(0, "show")
        return super().parse_known_args(words, namespace)


def _threshold(text: str) -> tuple[str, float]:
    try:
        return gate.parse_threshold(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_reading(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="DIR", help="the history folder (compare --history, pytest --r34-history)")
    p.add_argument("--strict", action="store_true", help="refuse a bad record, exit 2 (default: name it and skip it)")
    p.add_argument(
        "--threshold",
        action="append",
        type=_threshold,
        default=[],
        metavar="[TARGET=]PCT",
        help="the gate's practical threshold, for every series or those whose target contains TARGET; "
        "repeatable (default: 5%%)",
    )


def register(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "history",
        help="a history of runs: steps, drift and the gate per series (show DIR), the CI gate (check DIR), "
        "pytest-benchmark's saved runs as records (import SRC -o DIR)",
    )
    p.__class__ = _HistoryParser  # the old spelling (report history DIR) is read before the actions
    verbs = p.add_subparsers(dest="history_action", required=True, parser_class=shared.Parser, metavar="ACTION")
    show_p = verbs.add_parser("show", help="steps and accuracy drift per series, the gate's failures; a trend page")
    _add_reading(show_p)
    show_p.add_argument("--json", action="store_true", help="print the analysis as JSON")
    show_p.add_argument("-o", "--output", metavar="PAGE", help="also write the trend page (HTML, self-contained)")
    show_p.set_defaults(func=show)
    check_p = verbs.add_parser("check", help="the CI gate: exit 1 when any series' newest run regressed")
    _add_reading(check_p)
    check_p.add_argument("--json", action="store_true", help="print the gate's verdicts as JSON")
    check_p.set_defaults(func=check)
    import_p = verbs.add_parser(
        "import", help="pytest-benchmark's saved runs as history records (each run once: a second import adds none)"
    )
    import_p.add_argument(
        "source", metavar="SRC", help="a saved run (.json) or a folder searched for them (.benchmarks)"
    )
    import_p.add_argument("-o", "--output", required=True, metavar="DIR", help="the history folder written to")
    import_p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="import the saved runs and name each refused file (default: a file that is not a saved run "
        "refuses the import, exit 2, nothing written)",
    )
    import_p.set_defaults(func=import_)


def show(args: argparse.Namespace) -> int:
    from resnet34_npu.history import analysis, page, store

    output = check_writable(args.output, "page") if args.output else None
    result = analysis.analyse(store.load(args.folder, strict=args.strict), thresholds=args.threshold)
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


def check(args: argparse.Namespace) -> int:
    from resnet34_npu.history import store

    history = store.load(args.folder, strict=args.strict)
    verdicts = gate.check(history.records, thresholds=args.threshold)
    for skipped in history.skipped:
        print(one_line(skipped.line()), file=sys.stderr)
    if args.json:
        write_json_atomic(STDOUT, {"verdicts": [v.to_dict() for v in verdicts], "failed": gate.failed(verdicts)})
    else:
        for verdict in verdicts:
            print(plain(verdict.line))
    return shared.EXIT_FAIL if gate.failed(verdicts) else shared.EXIT_OK


def import_(args: argparse.Namespace) -> int:
    """Every saved run under SRC not yet in DIR, written as a record; nothing written when a file
    is refused (unless ``--skip-invalid``) or when no saved run was found."""
    from resnet34_npu.history import importer, record, store

    source = args.source
    if Path(args.output).exists():  # a file or an unwritable folder: refused before reading anything
        record.check_history_dir(args.output)
    records, refused = importer.import_benchmarks(source)
    if refused and not args.skip_invalid:
        for item in refused[:-1]:
            print(f"resnet34-npu report: error: {one_line(item.line())}", file=sys.stderr)
        others = " (--skip-invalid imports the others and names these)" if records else ""
        raise InputError(f"{refused[-1].line()}; {len(refused)} file(s) refused, nothing imported{others}")
    if not records:
        why = f"{len(refused)} file(s) refused" if refused else "no *.json file"
        raise InputError(
            f"report history import {quoted(source)}: no pytest-benchmark saved run ({why}); nothing imported"
        )
    folder = record.check_history_dir(args.output)
    there = {r.run_id for r in store.load(folder).records}
    new = [r for r in records if r.run_id not in there]
    for item in refused:
        print(one_line(item.line()), file=sys.stderr)
    for item in new:
        record.write_record(folder, item)
    print(
        f"{len(new)} new pytest-benchmark run(s) imported into {plain(folder)}, "
        f"{len(records) - len(new)} already there, {len(refused)} file(s) skipped"
    )
    return shared.EXIT_OK
