"""``devices``: every device kind and index, available or why not, its name and precision settings."""

from __future__ import annotations

import argparse

from resnet34_npu.cli import args as shared
from resnet34_npu.cli.infer import settings_line
from resnet34_npu.core.documents import dumps


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list every device kind and index: available, why not, name, precision settings")
    shared.add_json(p, "a JSON list instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet34_npu.targets import devices, emulation

    rows = devices.list_devices()
    if args.json:
        print(dumps([row.to_dict() for row in rows]), end="")
        return shared.EXIT_OK
    host = emulation.active()
    if host is not None:
        print(emulation.banner(host))
    width = max(len(row.device) for row in rows)
    for row in rows:
        if row.available:
            print(f"{row.device:<{width}}  available      {row.name}; {settings_line(row.precision)}")
        else:
            print(f"{row.device:<{width}}  not available  {row.reason}")
    return shared.EXIT_OK
