"""The command line: ``python -m resnet34_npu`` or ``resnet34-npu``.

Every user error (bad path, image, weights, device or option) is one line on stderr and exit
code 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import __version__, devices
from .bench import DEFAULT_ITERS, DEFAULT_WARMUP
from .constants import DEFAULT_IMAGE
from .errors import InputError
from .infer import infer
from .labels import describe

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="resnet34-npu", description="ResNet34 conformance suite for accelerators (Ascend NPU, CUDA, ...).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("infer", help="classify one image on one device (the model card's inference.py)")
    p.add_argument("--image", default=str(DEFAULT_IMAGE), metavar="PATH", help="image file (default: the bundled cat photo)")
    p.add_argument("--device", default="auto", metavar="DEVICE", help="auto, cpu, npu[:N], cuda[:N], mps or xpu[:N] (default: auto = npu, cuda, mps, then cpu)")
    p.add_argument("--weights", default="seeded", metavar="SPEC", help="seeded, seeded:N, imagenet or a state-dict file (default: seeded)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"), help="weights and input dtype (default: fp32)")
    p.add_argument("--topk", default=5, type=_positive, metavar="K", help="classes to print (default: 5)")
    p.add_argument("--warmup", default=DEFAULT_WARMUP, type=_non_negative, metavar="N", help=f"untimed runs first (default: {DEFAULT_WARMUP})")
    p.add_argument("--iters", default=DEFAULT_ITERS, type=_positive, metavar="N", help=f"timed runs; the median is printed (default: {DEFAULT_ITERS})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=_cmd_infer)

    p = sub.add_parser("devices", help="list every device kind and index: available, why not, name, precision settings")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=_cmd_devices)
    return parser


def _cmd_infer(args: argparse.Namespace) -> int:
    result = infer(
        Path(args.image), device=args.device, dtype=args.dtype, weights=args.weights,
        topk=args.topk, warmup=args.warmup, iters=args.iters,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return EXIT_OK
    t = result.latency_ms
    print(f"device:    {result.device} ({result.device_name}), {result.dtype}")
    print(f"precision: {_settings(result.precision_settings)}")
    print(f"image:     {result.image}")
    print(f"weights:   {result.weights.spec} ({result.weights.path})")
    print(f"sha256:    {result.weights.sha256}")
    print(f"latency:   {t.median:.2f} ms median of {t.iterations} synchronized runs after {t.warmup} warm-up "
          f"(mean {t.mean:.2f} ms, std {t.std:.2f} ms)")
    print(f"top-{len(result.top)}:")
    for rank, (index, _, prob) in enumerate(result.top, 1):
        print(f"  {rank}. {describe(index, prob)}")
    return EXIT_OK


def _settings(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "-"


def _cmd_devices(args: argparse.Namespace) -> int:
    rows = devices.list_devices()
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2))
        return EXIT_OK
    width = max(len(row.device) for row in rows)
    for row in rows:
        if row.available:
            print(f"{row.device:<{width}}  available      {row.name}; {_settings(row.precision)}")
        else:
            print(f"{row.device:<{width}}  not available  {row.reason}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"resnet34-npu {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("resnet34-npu: interrupted", file=sys.stderr)
        return 130
