"""The command line: ``python -m resnet34_npu`` or ``resnet34-npu``. The parser is assembled from
one module per command (``cli/<command>.py``, each with ``register(subparsers)``); a command whose
module cannot be imported (a broken optional backend) is replaced by a stand-in that says so in one
line, so it never breaks the other commands (Polygraphy's ``try_register_tool``).

Every user error (bad path, image, weights, device or option) is one line on stderr and exit
code 2; no traceback. A crash is exit 3, never 1 ("a target failed").
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from resnet34_npu.cli.args import EXIT_CRASH, EXIT_FAIL, EXIT_OK, EXIT_USAGE, Parser
from resnet34_npu.core.constants import __version__
from resnet34_npu.core.errors import InputError, Terminated, one_line
from resnet34_npu.suite.options import unknown_environment

__all__ = ["COMMANDS", "DEBUG_ENV", "EXIT_CRASH", "EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

DEBUG_ENV = "RESNET34_NPU_DEBUG"
#: The commands, in the order ``--help`` lists them: each is ``resnet34_npu.cli.<name>``.
COMMANDS = ("infer", "compare", "perf", "localize", "controls", "devices", "reference", "report", "emulation")


def _unavailable(name: str, exc: BaseException) -> Callable[[argparse.Namespace], int]:
    """A stand-in for a command whose module failed to import."""

    def run(args: argparse.Namespace) -> int:
        raise RuntimeError(f"the {name} command cannot be loaded: {type(exc).__name__}: {one_line(exc)}")

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="resnet34-npu", description="ResNet34 conformance suite for accelerators (Ascend NPU, CUDA, ...)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"resnet34_npu.cli.{name}")
        except ImportError as exc:
            stand_in = sub.add_parser(name, help=f"(unavailable: {one_line(exc)})")
            stand_in.add_argument("rest", nargs=argparse.REMAINDER)
            stand_in.set_defaults(func=_unavailable(name, exc))
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for line in unknown_environment():  # R34_TARGET for R34_TARGETS: said, not silently ignored
        print(f"resnet34-npu: warning: {line}", file=sys.stderr)
    try:
        return int(args.func(args))
    except Terminated:
        print("resnet34-npu: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except InputError as exc:
        print(f"resnet34-npu {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("resnet34-npu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of a pipe (`| head`) stopped reading: stop quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except Exception as exc:
        # A crash is not a verdict: exit 3, never 1 ("a target failed").
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        print(
            f"resnet34-npu {args.command}: internal error: {type(exc).__name__}: {one_line(exc)} "
            + ("" if os.environ.get(DEBUG_ENV) else f"(set {DEBUG_ENV}=1 for the traceback)"),
            file=sys.stderr,
        )
        return EXIT_CRASH
