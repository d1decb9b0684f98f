"""``report``: work on saved reports: ``merge`` many hosts' reports into a fleet report, ``html``
renders one as a page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet34_npu.cli import args as shared
from resnet34_npu.cli import history
from resnet34_npu.core.errors import InputError, one_line, plain, show
from resnet34_npu.core.files import STDOUT, check_writable, write_json_atomic

EXIT_OK, EXIT_FAIL, EXIT_USAGE = shared.EXIT_OK, shared.EXIT_FAIL, shared.EXIT_USAGE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="work on saved reports: merge many hosts' reports, render one as HTML")
    actions = p.add_subparsers(dest="action", required=True, parser_class=shared.Parser, metavar="ACTION")
    p = actions.add_parser(
        "merge", help="merge many hosts' compare and acceptance reports: failing cards first, slow cards named"
    )
    p.add_argument("reports", nargs="+", metavar="REPORT", help="report files, or folders searched for *.json")
    p.add_argument(
        "-o",
        "--output",
        default="fleet.json",
        metavar="PATH",
        help="the fleet report, written atomically; - prints it (default: fleet.json)",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="merge the valid reports and list the refused files in the fleet report (default: refuse, exit 2)",
    )
    p.add_argument("--all", action="store_true", help="list every card, not only those that need a look")
    p.set_defaults(func=merge)
    p = actions.add_parser("html", help="render a report (compare's, pytest's or a merged fleet's) as one HTML page")
    p.add_argument("report", metavar="REPORT", help="the JSON report")
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="the page, self-contained, written atomically; - prints it (default: REPORT with .html)",
    )
    p.add_argument("--no-charts", action="store_true", help="per-stage tables instead of charts (a smaller page)")
    p.set_defaults(func=html)
    p = actions.add_parser("validate", help="check reports against their JSON Schemas (compare, pytest, fleet)")
    p.add_argument("reports", nargs="+", metavar="FILE", help="the JSON reports to check")
    p.set_defaults(func=validate)
    history.register(actions)


def merge(args: argparse.Namespace) -> int:
    from resnet34_npu.judge.criteria import Status
    from resnet34_npu.reports import fleet

    if args.output != STDOUT and any(
        Path(r).is_file() and Path(r).resolve() == Path(args.output).resolve() for r in args.reports
    ):
        raise InputError(f"--output {args.output!r}: is one of the reports to merge; write the fleet report elsewhere")
    try:
        merged = fleet.merge(args.reports, skip_invalid=args.skip_invalid, exclude=args.output)
    except fleet.RefusedReports as exc:  # every refused file, one line each, then what to do
        for refusal in exc.refusals:
            print(f"resnet34-npu report: error: {one_line(refusal.line())}", file=sys.stderr)
        print(
            f"resnet34-npu report: error: {len(exc.refusals)} file(s) refused, nothing written "
            "(--skip-invalid merges the others and lists these)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    output = check_writable(args.output)
    out = sys.stderr if output == STDOUT else sys.stdout  # with -o -, the document alone is standard output
    for line in fleet.summary_lines(merged, every_card=args.all):
        print(line, file=out)
    write_json_atomic(output, merged.to_dict())
    where = "standard output" if output == STDOUT else plain(output)
    print(f"{fleet.verdict_line(merged)}; fleet report written to {where}", file=out)
    return EXIT_OK if merged.verdict == Status.PASS else EXIT_FAIL


def html(args: argparse.Namespace) -> int:
    from resnet34_npu.reports.html import convert

    path = convert(args.report, args.output, charts=not args.no_charts)
    if path is not None:
        print(f"HTML report written to {plain(path)}")
    return EXIT_OK


def validate(args: argparse.Namespace) -> int:
    """One line per file: ``FILE: valid <schema>``, or the first rule it breaks (then exit 2)."""
    from resnet34_npu.reports import fleet

    refused = 0
    for path in args.reports:
        try:
            name = fleet.check_file(path)
        except fleet.Invalid as exc:
            refused += 1
            print(f"resnet34-npu report: error: report {show(path)}: {one_line(exc)}", file=sys.stderr)
            continue
        print(f"{plain(path)}: valid {name}")
    return EXIT_USAGE if refused else EXIT_OK
