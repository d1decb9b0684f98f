"""The command line's shared pieces: the parser class (a usage error is one line and exit 2), the
exit codes, the value parsers, and the argument groups each command subscribes to, so that an
option that means one thing is declared once for every command that takes it (Polygraphy's
``tools/args``). Where a pytest option means the same, its help and parser are shared too."""

from __future__ import annotations

import argparse
import math

from resnet34_npu.core.constants import DEFAULT_IMAGE
from resnet34_npu.dataset.sources import default_workers
from resnet34_npu.judge.criteria import DEFAULT_PROFILE, PROFILES
from resnet34_npu.model.weights import SPEC_HELP as WEIGHTS_HELP
from resnet34_npu.targets.timing import DEFAULT_ITERS, DEFAULT_WARMUP

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 3


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def positive(text: str) -> int:
    value = non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive, finite number of seconds")
    return value


def add_weights(parser: argparse.ArgumentParser, what: str = "weights") -> None:
    """``--weights SPEC``: the same weights file on every side of a command."""
    parser.add_argument("--weights", default="seeded", metavar="SPEC", help=f"{what}: {WEIGHTS_HELP} (default: seeded)")


def add_profile(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, choices=tuple(PROFILES), help=f"{what} (default: {DEFAULT_PROFILE})"
    )


def add_image(parser: argparse.ArgumentParser) -> None:
    """``--image PATH``: one image."""
    parser.add_argument(
        "--image", default=str(DEFAULT_IMAGE), metavar="PATH", help="image file (default: the bundled cat photo)"
    )


def add_images(parser: argparse.ArgumentParser, what: str = "images or folders") -> None:
    """``--image PATH ...``: any number of images and folders."""
    parser.add_argument(
        "--image", action="extend", nargs="+", metavar="PATH", help=f"{what} (default: the bundled photos)"
    )


def add_reference(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reference", default="cpu", metavar="SPEC", help="the reference target (default: cpu, i.e. cpu/fp32)"
    )


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def add_timing(parser: argparse.ArgumentParser, *, timing_optional: bool) -> None:
    """``--warmup N --iters N``: untimed runs, then timed runs (``timing_optional``: 0 iterations
    means no timing)."""
    parser.add_argument(
        "--warmup",
        default=DEFAULT_WARMUP,
        type=non_negative,
        metavar="N",
        help=f"untimed runs before timing (default: {DEFAULT_WARMUP})",
    )
    parser.add_argument(
        "--iters",
        default=DEFAULT_ITERS,
        type=non_negative if timing_optional else positive,
        metavar="N",
        help=(
            f"timed runs per target, 0 = no timing (default: {DEFAULT_ITERS})"
            if timing_optional
            else f"timed runs; the median is printed (default: {DEFAULT_ITERS})"
        ),
    )


def add_fp64_truth(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--fp64-truth", action="store_true", help=what)


def add_dataset_options(parser: argparse.ArgumentParser, *, compare: bool) -> None:
    """The options of a dataset run, shared by ``compare --dataset`` and ``reference build``."""
    group = parser.add_argument_group("dataset" + (" (compare --dataset DIR)" if compare else ""))
    group.add_argument(
        "--dataset",
        required=not compare,
        metavar="DIR",
        help="a folder of images (searched recursively), an ImageFolder layout (class folders) or an ImageNet "
        "validation folder with MLPerf's val_map.txt",
    )
    group.add_argument(
        "--labels", metavar="FILE", help="labels in val_map.txt form ('FILE LABEL' a line; default: DIR/val_map.txt)"
    )
    group.add_argument(
        "--batch-size", default=16, type=positive, metavar="N", help="images a forward pass (default: 16)"
    )
    group.add_argument(
        "--workers",
        default=None,
        type=non_negative,
        metavar="N",
        help=f"DataLoader processes decoding images (default: cores - 1, at most 8; here {default_workers()})",
    )
    group.add_argument(
        "--strict-images", action="store_true", help="an unreadable image stops the run (default: listed, run goes on)"
    )
    if not compare:
        return
    group.add_argument(
        "--reference-file", metavar="REF", help="the stored reference (`reference build`), instead of recomputing it"
    )
    group.add_argument(
        "--results",
        metavar="DIR",
        help="per-image results, streamed (default: the --output path with .images instead of .json)",
    )
    group.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its results folder, nothing twice"
    )
    group.add_argument(
        "--cross-check",
        default=None,
        type=non_negative,
        metavar="N",
        help="under torchrun, every rank also computes the dataset's first N images and rank 0 compares their "
        "outputs bit for bit across the cards, naming a card that differs from the majority (N extra forward "
        "passes a rank; default: 4 with several ranks, 0 with one)",
    )
    group.add_argument(
        "--rank-timeout",
        default=600.0,
        type=seconds,
        metavar="S",
        help="under torchrun, a rank not finished S seconds after the others is named as hung (default: 600)",
    )
