"""The suite's pytest options, declared once as data: flag, environment variable, parser,
default and help. ``pytest --help`` (the plugin's ``pytest_addoption``) and the environment
path (:func:`resolve`) both read :data:`OPTIONS`; a command-line value wins over the
environment, which wins over the default. Every bad value, from either, is one line naming the
option or variable and the allowed values.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from resnet34_npu.core.errors import InputError
from resnet34_npu.judge.criteria import DEFAULT_PROFILE, PROFILES
from resnet34_npu.model.weights import SPEC_HELP as WEIGHTS_HELP
from resnet34_npu.model.weights import parse_weights_spec
from resnet34_npu.targets import devices
from resnet34_npu.targets.emulation import ENV as EMULATE_ENV
from resnet34_npu.targets.emulation.faults import ENV as FAULTS_ENV
from resnet34_npu.targets.emulation.wheel import SITE_ENV

DEFAULT_REPORT = "acceptance_report.json"
DEFAULT_ITERS = 5
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def parse_target_text(text: str) -> str:
    from resnet34_npu.targets.spec import parse_target

    parse_target(text)
    return text


def parse_weights_text(text: str) -> str:
    parse_weights_spec(text)
    return text


def parse_profile(text: str) -> str:
    if text not in PROFILES:
        raise InputError(f"Unknown profile {text!r}. Choose one of: {', '.join(PROFILES)}")
    return text


def parse_count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise InputError(f"{text!r} is not a non-negative integer")
    return int(text)


def parse_kind(text: str) -> str:
    if text not in devices.KINDS:
        raise InputError(f"Unknown device kind {text!r}. Choose one of: {', '.join(devices.KINDS)}")
    return text


def parse_burn_in(text: str) -> float:
    from resnet34_npu.judge.burnin import parse_seconds

    return parse_seconds(text, "--r34-burn-in")


def parse_deadline(text: str) -> float:
    from resnet34_npu.targets.watchdog import parse_deadline as parse

    return parse(text, "--r34-deadline")


ISOLATE = ("auto", "on", "off")


def parse_isolate(text: str) -> str:
    if text not in ISOLATE:
        raise InputError(f"{text!r} is not one of: {', '.join(ISOLATE)}")
    return text


def isolates(values: Mapping[str, Any], *, workers: Any, xdist: bool, debugging: bool) -> bool:
    """Whether this run isolates its tests in a pytest-xdist worker (``--r34-isolate``): ``on``
    always, ``auto`` for an acceptance run on an accelerator; never when ``-n`` was given (``-n 0``
    included: xdist turned off by hand), nor when collecting or debugging (a debugger cannot reach
    a worker). ``on`` without pytest-xdist is an :class:`InputError`."""
    asked = values["r34_isolate"]
    if asked == "on" and not xdist:
        raise InputError(
            "--r34-isolate=on needs pytest-xdist, which is not installed or is disabled (-p no:xdist): "
            "pip install pytest-xdist, or --r34-isolate=off"
        )
    accelerators = {name for name, kind in devices.KINDS.items() if kind.accelerator}
    wanted = asked == "on" or (asked == "auto" and bool(set(values["r34_require"] or ()) & accelerators))
    return xdist and workers is None and wanted and not debugging


def parse_label(text: str) -> tuple[str, str]:
    from resnet34_npu.history.record import parse_label as parse

    return parse(text)


def parse_bool(text: str) -> bool:
    if text.lower() not in _BOOLEANS:
        raise InputError(f"{text!r} is not a boolean (use 1 or 0)")
    return _BOOLEANS[text.lower()]


@dataclass(frozen=True)
class Option:
    """One option. ``kind``: ``value`` (one value), ``list`` (repeatable; the environment
    variable holds several, split on ``separator``) or ``flag`` (on/off)."""

    dest: str
    flag: str
    env: str | None
    parse: Callable[[str], Any]
    default: Any
    help: str
    kind: str = "value"
    metavar: str | None = None
    separator: str = ","

    def argparse_type(self) -> Callable[[str], Any]:
        """``type=`` for argparse: the parser, its :class:`InputError` as argparse's error."""

        def convert(text: str) -> Any:
            try:
                return self.parse(text)
            except InputError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None

        convert.__name__ = self.parse.__name__
        return convert

    def full_help(self) -> str:
        """The help text, its environment variable and its default (where ``help`` does not say
        the default itself, as a list option's does)."""
        parts = []
        if self.env:
            split = {",": "comma-separated", os.pathsep: "os.pathsep-separated"}[self.separator]
            parts.append(f"env {self.env}" + (f", {split}" if self.kind == "list" else ""))
        if self.default is not None:
            parts.append(f"default: {self.default}")
        return f"{self.help} ({'; '.join(parts)})" if parts else self.help

    def from_env(self) -> Any:
        """The value of the environment variable, parsed (None when unset or empty)."""
        text = os.environ.get(self.env) if self.env else None
        if not text:
            return None
        try:
            if self.kind == "list":
                return [self.parse(part.strip()) for part in text.split(self.separator) if part.strip()]
            return parse_bool(text) if self.kind == "flag" else self.parse(text)
        except InputError as exc:
            raise InputError(f"{self.env}={text!r}: {exc}") from None


OPTIONS: tuple[Option, ...] = (
    Option(
        "r34_targets",
        "--r34-target",
        "R34_TARGETS",
        parse_target_text,
        None,
        "target under test, repeatable: DEVICE[/DTYPE][/MODE][/KNOB=VALUE] or module.path:factory, e.g. npu:0/fp16; "
        "default: the host's matrix (CPU targets, and every available accelerator index at fp32 and its reduced "
        "precisions)",
        kind="list",
        metavar="SPEC",
    ),
    Option(
        "r34_weights",
        "--r34-weights",
        "R34_WEIGHTS",
        parse_weights_text,
        "seeded",
        WEIGHTS_HELP,
        metavar="SPEC",
    ),
    Option(
        "r34_images",
        "--r34-images",
        "R34_IMAGES",
        str,
        None,
        "image file or folder, repeatable; default: the bundled photos",
        kind="list",
        metavar="PATH",
        separator=os.pathsep,
    ),
    Option(
        "r34_profile",
        "--r34-profile",
        "R34_PROFILE",
        parse_profile,
        DEFAULT_PROFILE,
        f"verdict profile: {', '.join(PROFILES)}",
        metavar="NAME",
    ),
    Option(
        "r34_fp64_truth",
        "--r34-fp64-truth",
        "R34_FP64_TRUTH",
        parse_bool,
        False,
        "also compare each side with a float64 CPU run",
        kind="flag",
    ),
    Option(
        "r34_report",
        "--r34-report",
        "R34_REPORT",
        str,
        DEFAULT_REPORT,
        "acceptance report JSON, written at session end ('none' to skip)",
        metavar="PATH",
    ),
    Option(
        "r34_iters",
        "--r34-iters",
        "R34_ITERS",
        parse_count,
        DEFAULT_ITERS,
        "timed runs per target at batch 1 for the latency column, 0 = none",
        metavar="N",
    ),
    Option(
        "r34_update_golden",
        "--r34-update-golden",
        None,
        parse_bool,
        False,
        "regenerate fixtures/golden/ from the CPU reference instead of checking it",
        kind="flag",
    ),
    Option(
        "r34_require",
        "--r34-require",
        "R34_REQUIRE",
        parse_kind,
        None,
        "device kind that must be present and tested, repeatable (e.g. npu): its targets fail, with the reason, "
        "instead of skipping when it is missing; default: none (absent devices skip)",
        kind="list",
        metavar="KIND",
    ),
    Option(
        "r34_dataset",
        "--r34-dataset",
        "R34_DATASET",
        str,
        None,
        "a dataset folder (images found recursively, ImageFolder, or ImageNet with val_map.txt): adds one "
        "dataset-scale agreement test per target; default: none",
        metavar="DIR",
    ),
    Option(
        "r34_reference_file",
        "--r34-reference-file",
        "R34_REFERENCE_FILE",
        str,
        None,
        "the dataset's stored reference (`python -m resnet34_npu reference build`) instead of recomputing it; "
        "default: none",
        metavar="REF",
    ),
    Option(
        "r34_html",
        "--r34-html",
        "R34_HTML",
        str,
        None,
        "also write the acceptance report as one self-contained HTML page at session end (the same page as "
        "`python -m resnet34_npu report html`); default: none",
        metavar="PATH",
    ),
    Option(
        "r34_history",
        "--r34-history",
        "R34_HISTORY",
        str,
        None,
        "add this run's record (environment, methodology, raw latency samples, accuracy figures) to a history "
        "folder at session end, for `python -m resnet34_npu report history DIR`; default: none",
        metavar="DIR",
    ),
    Option(
        "r34_history_check",
        "--r34-history-check",
        "R34_HISTORY_CHECK",
        parse_bool,
        False,
        "with --r34-history: judge this run against its history at session end (`report history check`'s "
        "gate, 5 %% threshold): a regression fails the run",
        kind="flag",
    ),
    Option(
        "r34_labels",
        "--r34-label",
        "R34_LABELS",
        parse_label,
        None,
        "with --r34-history: a label of this run's record (a release, a firmware, a config), repeatable; "
        "shown at each step where it changes (release=2026.11 -> 2026.12); default: none",
        kind="list",
        metavar="KEY=VALUE",
    ),
)


OPTIONS += (
    Option(
        "r34_allow_missing",
        "--r34-allow-missing",
        "R34_ALLOW_MISSING",
        parse_bool,
        False,
        "targets named with --r34-target (or selected by -k / node id) that cannot run here skip instead of "
        "failing, and a run where no conformance case ran is not a failure (for a superset of targets named on "
        "purpose); --r34-require still fails",
        kind="flag",
    ),
    Option(
        "r34_deterministic",
        "--r34-deterministic",
        "R34_DETERMINISTIC",
        parse_bool,
        False,
        "set the determinism settings (torch.use_deterministic_algorithms, CUBLAS_WORKSPACE_CONFIG, "
        "HCCL_DETERMINISTIC, CLOSE_MATMUL_K_SHIFT, cuDNN) before any device starts; one that cannot be set is "
        "named and the run-to-run check falls back to 'tolerance' (compare --deterministic)",
        kind="flag",
    ),
    Option(
        "r34_burn_in",
        "--r34-burn-in",
        "R34_BURN_IN",
        parse_burn_in,
        None,
        "after the session's tests, run every selected accelerator target (the CPU targets when there is none) "
        "at once, in a loop, for SECONDS, each output checked bit for bit against the card's first; a card with "
        "a mismatch, an error or a hang fails the run (compare --burn-in)",
        metavar="SECONDS",
    ),
    Option(
        "r34_deadline",
        "--r34-deadline",
        "R34_DEADLINE",
        parse_deadline,
        None,
        "seconds a device call (a forward pass with its synchronize) may take before its card is named as hung: "
        "its test fails with a 'hung' finding, its card's remaining tests are not run, the other cards go on; a "
        "build (compiling, capturing, exporting) and a target's first forward pass get 10 times it (default: 100 "
        "reference forward passes, at least 30 s; refused when shorter than one) (compare --deadline)",
        metavar="S",
    ),
    Option(
        "r34_isolate",
        "--r34-isolate",
        "R34_ISOLATE",
        parse_isolate,
        "auto",
        "run the tests in a pytest-xdist worker process, replaced when it dies, so that a card that crashes "
        "the process (a signal, an exit) fails with a 'crashed' finding and the other cards go on: 'auto' "
        "does so for an acceptance run on an accelerator (--r34-require=npu, cuda, xpu, mps) without -n "
        "(-n already runs workers); 'on' always; 'off' runs in this process",
        metavar="{auto,on,off}",
    ),
)


#: The suite's environment variables that are not options: the emulated Ascend host's, and those
#: the repository's own tests and scripts read.
OTHER_ENV = (
    EMULATE_ENV,
    FAULTS_ENV,
    SITE_ENV,
    "R34_EMULATED_COSTS",  # set by the suite for its own processes
    "R34_CARDS_DOWN",  # likewise
    "R34_BIG_BATCH",
    "R34_CALIBRATION_RUNS",
    "R34_TEST_COUNT_FILE",
)
ENV_PREFIX = "R34_"


def unknown_environment(environ: Mapping[str, str] = os.environ) -> list[str]:
    """One line for each ``R34_*`` variable set here that the suite does not read (it is
    ignored), with the nearest known name when one is close (``R34_TARGET``: ``R34_TARGETS``)."""
    known = sorted({option.env for option in OPTIONS if option.env} | set(OTHER_ENV))
    lines = []
    for name in sorted(n for n in environ if n.upper().startswith(ENV_PREFIX) and n not in known):
        near = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.75)
        hint = f"did you mean {near[0]}?" if near else "`pytest --help` lists the suite's own"
        lines.append(f"environment variable {name} is not one of the suite's and is ignored: {hint}")
    return lines


def add_options(addoption: Callable[..., None]) -> None:
    """Declare every option through ``addoption`` (pytest's option group)."""
    for option in OPTIONS:
        if option.kind == "flag":
            addoption(option.flag, dest=option.dest, action="store_true", default=None, help=option.full_help())
        else:
            addoption(
                option.flag,
                dest=option.dest,
                action="append" if option.kind == "list" else "store",
                type=option.argparse_type(),
                metavar=option.metavar,
                help=option.full_help(),
            )


def resolve(getoption: Callable[[str], Any]) -> dict[str, Any]:
    """Every option's value: the command line's, else the environment's, else the default.
    Raises :class:`InputError` for a bad environment value."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        value = getoption(option.dest)
        if value is None:
            value = option.from_env()
        values[option.dest] = option.default if value is None else value
    return values


def named_explicitly(values: dict[str, Any]) -> bool:
    """Whether the user named the targets (then nothing of theirs is deselected as slow)."""
    return bool(values["r34_targets"])


#: Markers that only slow tests carry: ``-m browser`` asks for slow tests as ``-m slow`` does.
ONLY_SLOW = ("slow", "browser", "npu_install", "subprocess")


def selects_slow(markexpr: str) -> bool:
    """Whether ``-m`` selects a test marked ``slow`` (a marker of :data:`ONLY_SLOW`): ``slow``
    or ``browser`` yes, ``not slow`` no."""
    if not any(name in markexpr for name in ONLY_SLOW):
        return False
    try:
        from _pytest.mark.expression import Expression

        return bool(Expression.compile(markexpr).evaluate(lambda name, **_: name in ONLY_SLOW))
    except Exception:  # pytest's expression API is internal: fall back to the word
        return "not slow" not in markexpr and "slow" in markexpr
