"""The command line's shared pieces: the parser class (a usage error is one line and exit 2), the
exit codes, the value parsers, and the argument groups each command subscribes to, so that an
option that means one thing is declared once for every command that takes it (Polygraphy's
``tools/args``). Where a pytest option means the same, its help and parser are shared too."""

from __future__ import annotations

import argparse
import difflib
import math
import sys

from resnet34_npu.core.constants import DEFAULT_IMAGE
from resnet34_npu.core.errors import InputError
from resnet34_npu.dataset import default_workers
from resnet34_npu.judge.criteria import DEFAULT_PROFILE, PROFILES
from resnet34_npu.model.weights import SPEC_HELP as WEIGHTS_HELP
from resnet34_npu.targets.timing import DEFAULT_ITERS, DEFAULT_WARMUP

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 3


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit code 2, and a misspelt
    option gets the nearest spelling (``compare --targets cpu``: "did you mean --target?")."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._words = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{self._nearest(message)}\n")

    def _nearest(self, message: str) -> str:
        """The hint for the first unrecognized option close to one of the command's own (the
        subcommand's, found in the words parsed): ``" (did you mean --target?)"``, else ""."""
        if not message.startswith("unrecognized arguments: "):
            return ""
        parser, words = self, getattr(self, "_words", [])
        while parser._subparsers is not None:  # descend into the subcommand the words name
            choices = parser._subparsers._group_actions[0].choices
            index = next((i for i, word in enumerate(words) if word in choices), None)
            if index is None:
                break
            parser, words = choices[words[index]], words[index + 1 :]
        known = [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]
        for word in message.removeprefix("unrecognized arguments: ").split():
            near = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6)
            if word.startswith("-") and near:
                return f" (did you mean {near[0]}?)"
        return ""


def label(text: str) -> tuple[str, str]:
    """``--label KEY=VALUE`` (history records): :func:`resnet34_npu.history.record.parse_label`."""
    from resnet34_npu.history.record import parse_label

    try:
        return parse_label(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


#: ``--deadline`` / ``--r34-deadline``: what it means (shared by the CLI and the pytest plugin).
DEADLINE_HELP = (
    "seconds a device call (a forward pass with its synchronize) may take before its card is named as hung and "
    "the other cards go on; a build (compiling, capturing, exporting), a capture and a target's first forward "
    "pass get 10 times it (default: 100 forward passes of the reference, measured at the start, at least 30 s; "
    "refused when shorter than one)"
)
ISOLATE_HELP = (
    "run each card's targets in a process of its own, so that a crash fails that card only: auto = every "
    "accelerator card (npu:K, cuda:K, ...) isolated, CPU and custom targets in this process; on; off (default: auto)"
)


def add_watchdog(parser: argparse.ArgumentParser) -> None:
    """``--deadline S --isolate MODE``: the watchdog of every command that runs a device."""
    parser.add_argument("--deadline", default=None, type=seconds, metavar="S", help=DEADLINE_HELP)
    parser.add_argument("--isolate", default="auto", choices=("auto", "on", "off"), help=ISOLATE_HELP)


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
