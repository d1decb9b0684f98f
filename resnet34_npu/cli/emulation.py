"""``emulation fetch``: install the real torch-npu wheel the emulated Ascend host runs, into a folder
of its own (never into this environment); ``emulation show``: where it is and what it holds."""

from __future__ import annotations

import argparse

from resnet34_npu.cli import args as shared
from resnet34_npu.targets.emulation import ENV, wheel


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emulation",
        help=f"the emulated Ascend host ({ENV}=SOC:CARDS): fetch the real torch-npu {wheel.MODELLED} wheel it runs",
    )
    verbs = p.add_subparsers(dest="verb", required=True, parser_class=shared.Parser, metavar="VERB")
    fetch = verbs.add_parser(
        "fetch",
        help=f"pip download torch-npu=={wheel.MODELLED} and install it with --no-deps into its own folder",
    )
    fetch.add_argument(
        "--into",
        metavar="DIR",
        help=f"the folder to install into (default: ${wheel.SITE_ENV} or {wheel.site()})",
    )
    fetch.set_defaults(func=run_fetch)
    show = verbs.add_parser("show", help="the wheel's folder and the torch_npu release it holds")
    show.set_defaults(func=run_show)


def run_fetch(args: argparse.Namespace) -> int:
    from pathlib import Path

    folder = wheel.fetch(Path(args.into).expanduser() if args.into else None)
    print(f"torch_npu {wheel.version_at(folder)} installed in {folder}")
    if args.into:
        print(f"use it with {wheel.SITE_ENV}={folder} {ENV}=Ascend910B3:8")
    return shared.EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    folder = wheel.site()
    version = wheel.version_at(folder)
    print(f"{folder}: " + (f"torch_npu {version}" if version else f"no torch_npu (run `{wheel.FETCH}`)"))
    return shared.EXIT_OK if version else shared.EXIT_FAIL
