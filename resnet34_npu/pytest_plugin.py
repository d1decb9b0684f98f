"""The pytest plugin: options, markers, parametrisation, skips, header, summary and report.

Only wiring: every metric, verdict, timing and report comes from the library (compare.Session,
criteria, report), the same code ``python -m resnet34_npu compare`` runs. Loaded by the
repository's ``conftest.py`` (``pytest_plugins``).

Tests ask for the fixtures ``r34`` (the session state), ``r34_target`` (one target spec per
parameter), ``r34_image`` and ``r34_batch``; collection parametrises them and turns targets
whose device is absent into skips that say what is missing and how to enable it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from . import devices
from .bench import Timing, time_runner
from .compare import CaseResult, Session, describe_runner, run_checked
from .constants import IMAGES_DIR, PHOTOS
from .criteria import DEFAULT_PROFILE, PROFILES, worst_status
from .errors import InputError
from .images import find_images, load_image
from .report import build_report, check_writable, write_json_atomic
from .targets import CustomSpec, Runner, TargetSpec, accelerator_targets, parse_target
from .weights import parse_weights_spec, weights_digest

GROUP = "resnet34-npu"
BATCH_SIZES = (1, 8)
#: CPU targets always under test: real comparisons against the CPU fp32 reference on CI too.
CPU_TARGETS = ("cpu/fp32", "cpu/bf16-autocast", "cpu/fp32/channels_last")
#: Accelerator kinds that always appear in the matrix, as skips with a reason when absent.
SHOWN_KINDS = ("npu", "cuda", "mps")

MARKERS = {
    "npu": "runs on an Ascend NPU (torch_npu); skipped with the reason when none is available",
    "cuda": "runs on a CUDA GPU; skipped with the reason when none is available",
    "mps": "runs on Apple MPS; skipped with the reason when it is not available",
    "xpu": "runs on an Intel XPU; skipped with the reason when none is available",
    "accelerator": "runs on any non-CPU target",
    "golden": "compares the CPU reference with the stored golden outputs in fixtures/golden/",
    "ops": "operator-level conformance tests (Hypothesis)",
    "benchmark": "pytest-benchmark timings; run with `pytest -m benchmark`",
    "slow": "long-running (reduced-precision CPU targets at batch 8, ...); deselect with -m 'not slow'",
    "custom": "runs a custom target (module.path:factory), which may run on any device",
    "r34_heavy": "internal: runs a batch of 8 or runs its target again (slow on reduced-precision CPU targets)",
    "npu_install": "installs the real torch-npu wheel from PyPI into a temporary folder (skipped when it cannot be had)",
}

#: The options, their environment variables and defaults, in one table.
ENV = {
    "r34_targets": "R34_TARGETS",
    "r34_weights": "R34_WEIGHTS",
    "r34_images": "R34_IMAGES",
    "r34_profile": "R34_PROFILE",
    "r34_fp64_truth": "R34_FP64_TRUTH",
    "r34_report": "R34_REPORT",
    "r34_iters": "R34_ITERS",
}
DEFAULT_REPORT = "acceptance_report.json"
DEFAULT_ITERS = 5


def _arg(check: Callable[[str], Any]) -> Callable[[str], str]:
    """An argparse ``type=`` that validates with the library and keeps the text."""

    def parse(text: str) -> str:
        try:
            check(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = getattr(check, "__name__", "value")
    return parse


def _profile(text: str) -> str:
    if text not in PROFILES:
        raise argparse.ArgumentTypeError(f"Unknown profile {text!r}. Choose one of: {', '.join(PROFILES)}")
    return text


def _iters(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "resnet34-npu conformance suite")
    group.addoption("--r34-target", dest="r34_targets", action="append", metavar="SPEC", type=_arg(parse_target),
                    help="target under test, repeatable: DEVICE[/DTYPE][/MODE][/KNOB=VALUE], e.g. npu:0/fp16 "
                    "(env R34_TARGETS, comma-separated; default: cpu/fp32, cpu/bf16-autocast, "
                    "cpu/fp32/channels_last, and every available accelerator index at fp32 and its reduced precisions)")
    group.addoption("--r34-weights", dest="r34_weights", metavar="SPEC", type=_arg(_check_weights),
                    help="seeded, seeded:N, imagenet or a state-dict file (env R34_WEIGHTS; default: seeded)")
    group.addoption("--r34-images", dest="r34_images", action="append", metavar="PATH",
                    help="image file or folder, repeatable (env R34_IMAGES, os.pathsep-separated; default: the bundled photos)")
    group.addoption("--r34-profile", dest="r34_profile", metavar="NAME", type=_profile,
                    help=f"verdict profile: {', '.join(PROFILES)} (env R34_PROFILE; default: {DEFAULT_PROFILE})")
    group.addoption("--r34-fp64-truth", dest="r34_fp64_truth", action="store_true", default=None,
                    help="also compare each side with a float64 CPU run (env R34_FP64_TRUTH=1; default: off)")
    group.addoption("--r34-report", dest="r34_report", metavar="PATH",
                    help=f"acceptance report JSON, written at session end (env R34_REPORT; default: {DEFAULT_REPORT}; 'none' to skip)")
    group.addoption("--r34-iters", dest="r34_iters", metavar="N", type=_iters,
                    help=f"timed runs per target and batch size for the latency column, 0 = none (env R34_ITERS; default: {DEFAULT_ITERS})")
    group.addoption("--r34-update-golden", dest="r34_update_golden", action="store_true", default=False,
                    help="regenerate fixtures/golden/ from the CPU reference instead of checking it")


def _check_weights(text: str) -> None:
    parse_weights_spec(text)


@dataclass(frozen=True)
class TargetChoice:
    """One target of the matrix: available, or why not (the skip reason)."""

    spec: TargetSpec | CustomSpec
    reason: str = ""

    @property
    def kind(self) -> str:
        return "custom" if isinstance(self.spec, CustomSpec) else self.spec.device.partition(":")[0]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def slow(self) -> bool:
        """Reduced precision on the CPU: no native fp16 kernels on most CPUs (seconds per image)."""
        return self.kind == "cpu" and self.spec.dtype != "fp32"

    def marks(self) -> list[pytest.MarkDecorator]:
        if self.kind == "custom":
            return [pytest.mark.custom]
        if self.kind == "cpu":
            return []
        return [pytest.mark.accelerator, getattr(pytest.mark, self.kind)]


def skip_reason(kind: str, reason: str) -> str:
    return f"{kind.upper()}: {reason}"


def choose_targets(specs: list[str] | None) -> list[TargetChoice]:
    """Resolve the matrix: explicit specs, or the default (CPU targets, every available
    accelerator index and precision, and one skipped entry per absent shown kind)."""
    if specs:
        parsed = [parse_target(s) for s in specs]
    else:
        parsed = [parse_target(s) for s in CPU_TARGETS + tuple(accelerator_targets())]
        parsed += [TargetSpec(f"{kind}:0" if kind != "mps" else kind) for kind in SHOWN_KINDS if not devices.probe(kind).available]
    choices: dict[str, TargetChoice] = {}
    for spec in parsed:
        if isinstance(spec, CustomSpec):
            choices.setdefault(spec.name, TargetChoice(spec))
            continue
        try:
            device = devices.resolve_device(spec.device)
            if spec.device == "auto":  # name, mark and judge it as the device it is
                spec = TargetSpec("cpu" if device.type == "cpu" else str(device), spec.dtype, spec.mode, spec.knobs)
            choices.setdefault(spec.name, TargetChoice(spec))
        except InputError as exc:
            kind = spec.device.partition(":")[0]
            status = devices.probe(kind) if kind in devices.KINDS and kind != "auto" else None
            reason = status.reason if status is not None and not status.available else str(exc)
            choices.setdefault(spec.name, TargetChoice(spec, skip_reason(kind, reason)))
    return list(choices.values())


@dataclass
class R34:
    """The plugin's session state: options, the matrix, and (lazily) the comparison session
    with its caches of runners, logits and latencies."""

    targets: list[TargetChoice]
    weights: str
    images: list[Path]
    profile: str
    fp64_truth: bool
    report: Path | None
    iters: int
    update_golden: bool
    _session: Session | None = None
    _runners: dict[str, Runner] = field(default_factory=dict)
    _logits: dict[tuple[str, tuple[str, ...]], Any] = field(default_factory=dict)
    _latency: dict[tuple[str, int], Timing] = field(default_factory=dict)
    _cases: dict[tuple[str, tuple[str, ...]], CaseResult] = field(default_factory=dict)

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session(self.weights, "cpu", fp64_truth=self.fp64_truth, profile=self.profile)
        return self._session

    def runner(self, spec: str) -> Runner:
        if spec not in self._runners:
            self._runners[spec] = self.session.runner(spec)
        return self._runners[spec]

    def batch_images(self, image: Path, batch: int) -> tuple[Path, ...]:
        """``image`` first, then the next images of the list, cyclically, up to ``batch``."""
        start = self.images.index(image)
        return tuple(self.images[(start + k) % len(self.images)] for k in range(batch))

    def logits(self, spec: str, images: tuple[Path, ...]):
        """The target's logits for the batch, computed once per session."""
        key = (spec, tuple(map(str, images)))
        if key not in self._logits:
            self._logits[key] = run_checked(self.runner(spec), self.session.batch(images))
        return self._logits[key]

    def case(self, spec: str, images: tuple[Path, ...]) -> CaseResult:
        """The comparison (and, when it fails, the localisation), computed once per session."""
        key = (spec, tuple(map(str, images)))
        if key not in self._cases:
            self._cases[key] = self.session.compare(self.runner(spec), images, logits=self.logits(spec, images))
        return self._cases[key]

    def latency(self, spec: str, batch: int) -> Timing | None:
        if self.iters == 0:
            return None
        key = (spec, batch)
        if key not in self._latency:
            images = self.batch_images(self.images[0], batch)
            self._latency[key] = time_runner(self.runner(spec), self.session.batch(images), warmup=1, iters=self.iters)
        return self._latency[key]

    def reference_latency(self, batch: int) -> Timing | None:
        if self.iters == 0:
            return None
        return self.session.reference_timing(batch, 1, self.iters, self.images[0])


STATE = pytest.StashKey[R34]()
RECORDS = pytest.StashKey[list]()


def _option(config: pytest.Config, name: str) -> Any:
    value = config.getoption(name)
    if value is not None:
        return value
    env = os.environ.get(ENV[name])
    if env is None or env == "":
        return None
    try:
        if name == "r34_targets":
            return [_arg(parse_target)(s.strip()) for s in env.split(",") if s.strip()]
        if name == "r34_images":
            return [p for p in env.split(os.pathsep) if p]
        if name == "r34_weights":
            return _arg(_check_weights)(env)
        if name == "r34_profile":
            return _profile(env)
        if name == "r34_iters":
            return _iters(env)
        if name == "r34_fp64_truth":
            if env.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise argparse.ArgumentTypeError(f"{env!r} is not a boolean (use 1 or 0)")
            return env.lower() in ("1", "true", "yes", "on")
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"{ENV[name]}={env!r}: {exc}") from None
    return env


def _share_cores_between_xdist_workers(config: pytest.Config) -> None:
    """Each pytest-xdist worker gets its share of the cores: two workers each running torch's
    default one-thread-per-core pool on the same cores spin against each other (measured here:
    the conformance tests went from 6 s to 90 s with -n 2 on 2 cores)."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    if workers > 1:
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // workers))


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    if config.option.help or config.option.version:
        return
    _share_cores_between_xdist_workers(config)
    try:
        images = list(dict.fromkeys(p.resolve() for p in find_images(_option(config, "r34_images") or [IMAGES_DIR / p for p in PHOTOS])))
        for image in images:
            load_image(image)
        report = _option(config, "r34_report") or DEFAULT_REPORT
        state = R34(
            targets=choose_targets(_option(config, "r34_targets")),
            weights=_option(config, "r34_weights") or "seeded",
            images=images,
            profile=_option(config, "r34_profile") or DEFAULT_PROFILE,
            fp64_truth=bool(_option(config, "r34_fp64_truth")),
            report=None if report == "none" or hasattr(config, "workerinput") else check_writable(Path(report)),
            iters=DEFAULT_ITERS if _option(config, "r34_iters") is None else _option(config, "r34_iters"),
            update_golden=config.getoption("r34_update_golden"),
        )
        for choice in state.targets:
            if choice.kind == "custom":
                state.runner(choice.name)  # import, build and check it now: a broken one is a usage error
    except InputError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[STATE] = state
    config.stash[RECORDS] = []
    config.pluginmanager.register(_Collector(config), "resnet34-npu-collector")


def pytest_sessionstart(session: pytest.Session) -> None:
    """pytest-benchmark refuses --benchmark-compare-fail after all the benchmarks ran when no
    baseline exists yet; say so at once and run without the gate instead."""
    bench = getattr(session.config, "_benchmarksession", None)
    if bench is not None and bench.compare and getattr(bench, "compare_fail", None) and not bench.compared_mapping:
        bench.compare_fail = []
        session.config.stash[NO_BASELINE] = (
            f"no benchmark baseline in {bench.storage} yet: --benchmark-compare-fail was not applied. "
            "Save one with --benchmark-autosave (or --benchmark-save=NAME), then compare."
        )


NO_BASELINE = pytest.StashKey[str]()


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(STATE, None)
    if state is None:
        return []
    lines = []
    for row in devices.list_devices():
        if row.available:
            settings = ", ".join(f"{k}={v}" for k, v in row.precision.items())
            lines.append(f"resnet34-npu device {row.device}: {row.name} ({settings})")
        else:
            lines.append(f"resnet34-npu device {row.device}: not available: {row.reason}")
    run = [t.name for t in state.targets if not t.reason]
    skipped = [t.name for t in state.targets if t.reason]
    lines.append(f"resnet34-npu targets: {', '.join(run) or 'none'}" + (f" (skipped: {', '.join(skipped)})" if skipped else ""))
    lines.append(f"resnet34-npu weights: {state.weights} {weights_digest(state.weights)}")
    lines.append(f"resnet34-npu profile: {state.profile}; images: {', '.join(p.name for p in state.images)}; "
                 f"float64 truth: {'on' if state.fp64_truth else 'off'}; batch sizes: {', '.join(map(str, BATCH_SIZES))}")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = metafunc.config.stash[STATE]
    if "r34_target" in metafunc.fixturenames:
        metafunc.parametrize(
            "r34_target",
            [pytest.param(t.name, id=t.name, marks=t.marks()) for t in state.targets],
            scope="session",
        )
    if "r34_image" in metafunc.fixturenames:
        metafunc.parametrize("r34_image", [pytest.param(p, id=p.name) for p in state.images], scope="session")
    if "r34_batch" in metafunc.fixturenames:
        metafunc.parametrize("r34_batch", [pytest.param(b, id=f"batch{b}") for b in BATCH_SIZES], scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[STATE]
    by_name = {t.name: t for t in state.targets}
    run_benchmarks = "benchmark" in (config.getoption("markexpr") or "") or bool(config.getoption("benchmark_only", False))
    for item in items:
        callspec = getattr(item, "callspec", None)
        target = by_name.get(callspec.params.get("r34_target")) if callspec else None
        if target is not None:
            if target.reason:
                item.add_marker(pytest.mark.skip(reason=target.reason))
            elif target.slow and (callspec.params.get("r34_batch", 1) > 1 or item.get_closest_marker("r34_heavy")):
                item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("benchmark") and not run_benchmarks:
            item.add_marker(pytest.mark.skip(reason="benchmarks run only when asked for: pytest -m benchmark"))
    if any("r34" in getattr(item, "fixturenames", ()) for item in items):
        try:  # bad weights are a usage error before any test runs, whatever the verbosity
            state.session  # noqa: B018 - builds the comparison session
        except InputError as exc:
            raise pytest.UsageError(str(exc)) from None
    markexpr = config.getoption("markexpr") or ""
    if "slow" not in markexpr and not config.getoption("r34_targets") and not os.environ.get("R34_TARGETS"):
        # The default selection leaves the slow reduced-precision CPU cases out; ask for them
        # with -m slow (or name the targets).
        keep, drop = [], []
        for item in items:
            (drop if item.get_closest_marker("slow") else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


@pytest.fixture(scope="session")
def r34(request: pytest.FixtureRequest) -> R34:
    """The plugin's session state (options, matrix, comparison session and caches)."""
    return request.config.stash[STATE]


@pytest.fixture
def r34_record(request: pytest.FixtureRequest) -> Callable[[dict[str, Any]], None]:
    """Attach a comparison record to this test's report (it travels through pytest-xdist)."""
    records: list[dict[str, Any]] = []
    request.node.stash[RECORDS] = records
    return records.append


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and not report.passed):
        records = item.stash.get(RECORDS, [])
        if report.when == "call" and report.passed:
            for record in records:
                if record.get("kind") == "verdict" and record["case"]["verdict"] == "warn":
                    # a warning verdict passes, but says so
                    item.warn(pytest.PytestWarning(f"{record['target']} on {record['case']['image']}: "
                                                   + "; ".join(record["case"]["warnings"])))
        report.r34_records = [dict(r, test=item.nodeid) for r in records]
        params = getattr(item, "callspec", None)
        report.r34_params = {k: str(v) for k, v in params.params.items() if k.startswith("r34_")} if params else {}


class _Collector:
    """Collects every test's outcome and records; on the xdist controller the reports arrive
    from the workers, already carrying their records."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.skipped) or (report.when == "setup" and report.failed):
            self.config.stash[RECORDS].append(
                {
                    "test": report.nodeid,
                    "outcome": report.outcome,
                    "duration_s": round(report.duration, 4),
                    "params": getattr(report, "r34_params", {}),
                    "message": _message(report) if report.outcome != "passed" else "",
                    "records": getattr(report, "r34_records", []),
                }
            )


def _message(report: pytest.TestReport) -> str:
    """The skip reason, or the failure's ``E`` lines (all of a ``pytest.fail`` message)."""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    text = report.longreprtext or ""
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    return "\n".join(errors) if errors else text.strip()


def record_case(record: Callable[[dict[str, Any]], None], r34: R34, kind: str, target: str, case: CaseResult,
                batch: int | None = None, **extra: Any) -> None:
    """The shape of a record: what the terminal table and the acceptance report read, made
    where the test ran (an xdist worker), so the controller needs nothing but the records.
    ``target`` is the matrix name (the test id); ``batch`` asks for the latencies of the
    target and the reference at that batch size."""
    session = r34.session
    latency = r34.latency(target, batch) if batch else None
    reference_latency = r34.reference_latency(batch) if batch else None
    record({
        "kind": kind,
        "target": target,
        "target_info": describe_runner(r34.runner(target)),
        "reference": describe_runner(session.reference),
        "weights": session.weights_info.to_dict(),
        "case": case.to_dict(),
        "latency_ms": None if latency is None else latency.to_dict(),
        "reference_latency_ms": None if reference_latency is None else reference_latency.to_dict(),
        **extra,
    })


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or STATE not in config.stash:
        return
    message = config.stash.get(NO_BASELINE, None)
    if message:
        terminalreporter.write_line(f"resnet34-npu: {message}", yellow=True)
    rows = _comparison_rows(config.stash[RECORDS])
    if rows:
        terminalreporter.section("resnet34-npu comparisons")
        header = ("target", "image", "batch", "verdict", "rel L2", "cosine", "max abs", "top-1", "top-5", "median ms")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            terminalreporter.write_line("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    state = config.stash[STATE]
    if state.report is not None and any(entry["records"] for entry in config.stash[RECORDS]):
        terminalreporter.write_line(f"resnet34-npu: acceptance report written to {state.report}")


def _comparison_rows(entries: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = {}
    for entry in entries:
        for record in entry["records"]:
            if record.get("kind") != "verdict":
                continue
            case, m = record["case"], record["case"]["metrics"]
            latency = record.get("latency_ms")
            rows[(record["target"], tuple(case["paths"]), case["batch_size"])] = (
                record["target"], case["image"].split("+")[0], str(case["batch_size"]), case["verdict"].upper(),
                f"{m['rel_l2_error']:.2e}" if isinstance(m["rel_l2_error"], float) else str(m["rel_l2_error"]),
                f"{m['cosine_similarity']:.8f}" if isinstance(m["cosine_similarity"], float) else str(m["cosine_similarity"]),
                f"{m['max_abs_error']:.2e}" if isinstance(m["max_abs_error"], float) else str(m["max_abs_error"]),
                f"{m['top1_match']:.2f}", f"{m['top5_overlap']:.2f}/5",
                "-" if not latency else f"{latency['median']:.2f}",
            )
    return list(rows.values())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput") or STATE not in config.stash:
        return
    state = config.stash[STATE]
    entries = config.stash[RECORDS]
    if state.report is None or not any(entry["params"].get("r34_image") for entry in entries):
        return  # no conformance test ran or was skipped (unit, operator or benchmark runs): leave the last report alone
    write_json_atomic(state.report, acceptance_report(state, entries))


NOT_RUN = "not run"


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def acceptance_report(state: R34, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The compare report's schema, built from the records of every test (from every xdist
    worker), plus each test's outcome. A target nothing was compared on is "not run" (or
    "skipped", with the reason); a run that compared nothing is "not run" as a whole."""
    targets: dict[str, dict[str, Any]] = {
        choice.name: {"name": choice.name, "skipped": choice.reason or None, "images": [], "checks": []}
        for choice in state.targets
    }
    reference: dict[str, Any] = {}
    weights: dict[str, Any] = {"spec": state.weights}
    reference_latency: dict[str, Any] | None = None
    for entry in entries:
        for record in entry["records"]:
            target = targets.setdefault(record["target"], {"name": record["target"], "skipped": None, "images": [], "checks": []})
            for key, value in record["target_info"].items():
                target.setdefault(key, value)
            reference = reference or record["reference"]
            weights = record["weights"]
            if record["kind"] == "verdict":
                target["images"].append(record["case"])
                if record["case"]["batch_size"] == 1 and record["latency_ms"] and "latency_ms" not in target:
                    target["latency_ms"] = record["latency_ms"]
                    reference_latency = reference_latency or record["reference_latency_ms"]
            else:
                target["checks"].append({"kind": record["kind"], "test": entry["test"], **record["case"],
                                         **({"nondeterministic": record["nondeterministic"]} if "nondeterministic" in record else {})})
    for target in targets.values():
        statuses = [c["verdict"] for c in target["images"] + target["checks"]]
        target["verdict"] = worst_status(statuses) if statuses else ("skipped" if target["skipped"] else NOT_RUN)
        latency = target.setdefault("latency_ms", None)
        target["throughput_ips"] = None if not latency else _ratio(latency["batch_size"] * 1000.0, latency["median"])
        target["speedup_vs_reference"] = (
            _ratio(reference_latency["median"], latency["median"]) if latency and reference_latency else None
        )
    if reference_latency is not None:
        reference["latency_ms"] = reference_latency
    tests = [{k: v for k, v in e.items() if k != "records"} for e in entries]
    document = build_report(
        profile=state.profile,
        weights=weights,
        reference=reference,
        targets=list(targets.values()),
        extra={"fp64_truth": state.fp64_truth, "images": [str(p) for p in state.images], "tests": tests},
    )
    if any(t["outcome"] == "failed" for t in tests):
        document["verdict"] = "fail"
    elif not any(t["images"] or t["checks"] for t in targets.values()):
        document["verdict"] = NOT_RUN
    return document
