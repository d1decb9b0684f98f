"""The pytest plugin: wiring only. Options come from ``options.OPTIONS``, the matrix from
``matrix``, the session state from ``suite.Suite``, verdicts from ``criteria``, the report and
tables from ``report``: the same code ``python -m resnet34_npu compare`` runs. Every function
here is a pytest hook or fixture. Loaded by the repository's ``conftest.py``
(``pytest_plugins``).

Tests ask for the fixtures ``r34`` (the :class:`~resnet34_npu.suite.state.Suite`), ``r34_target``
(one target name per parameter), ``r34_image``, ``r34_batch`` and ``r34_record``; collection
parametrises them and turns targets that cannot run here into skips that say what is missing
and how to enable it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, Callable

import pytest

from resnet34_npu.core.documents import format_table
from resnet34_npu.core.errors import InputError, one_line, plain
from resnet34_npu.core.files import write_json_atomic
from resnet34_npu.dataset.agreement import summary_lines
from resnet34_npu.model.weights import weights_digest
from resnet34_npu.reports.html import write_html
from resnet34_npu.reports.report import SUMMARY_HEADER, summary_rows
from resnet34_npu.suite import options
from resnet34_npu.suite.acceptance import acceptance_report
from resnet34_npu.suite.state import BATCH_SIZES, Suite
from resnet34_npu.targets import devices
from resnet34_npu.targets.engines import BackendUnavailable

GROUP = "resnet34-npu"
MARKERS = {
    **{kind.name: kind.marker for kind in devices.KINDS.values() if kind.accelerator},
    "accelerator": "runs on any non-CPU target",
    "golden": "compares the CPU reference with the stored golden outputs in fixtures/golden/",
    "ops": "operator-level conformance tests (Hypothesis)",
    "benchmark": "pytest-benchmark timings; run with `pytest -m benchmark`",
    "slow": "long-running (reduced-precision CPU targets, their batch-8 and repeated runs, ...); "
    "left out of a default run, `pytest -m slow` runs them",
    "custom": "runs a custom target (module.path:factory), which may run on any device",
    "r34_heavy": "internal: runs a batch of 8 or runs its target again (slow on reduced-precision CPU targets)",
    "npu_install": "installs the real torch-npu wheel from PyPI into a temporary folder (skipped when it cannot be "
    "had)",
    "subprocess": "starts Python subprocesses that import torch (the few end-to-end tests where the process is the "
    "point)",
    "r34_dataset": "the dataset-scale agreement test: collected only with --r34-dataset DIR",
    "browser": "loads a page in headless Chromium (skipped, with the reason, where Chromium is not installed)",
}
SUITE = pytest.StashKey[Suite]()
ENTRIES = pytest.StashKey[list]()
RECORDS = pytest.StashKey[list]()
NAMED = pytest.StashKey[bool]()
CONFORMANCE = pytest.StashKey[bool]()
MISSING = pytest.StashKey[str]()
REPORT_ERROR = pytest.StashKey[str]()
SIGTERM = pytest.StashKey[Any]()
NO_BASELINE = pytest.StashKey[str]()
LEFT_THREADS = pytest.StashKey[dict]()
EXIT_STATUS = pytest.StashKey[int]()
BENCHMARKS_SKIPPED = "benchmarks run only when asked for: pytest -m benchmark"


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser.getgroup(GROUP, "resnet34-npu conformance suite").addoption)


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    if config.option.help or config.option.version:
        return
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    if workers > 1:
        # Each pytest-xdist worker gets its share of the cores: two workers each running torch's
        # default one-thread-per-core pool on the same cores spin against each other (measured
        # here: the conformance tests went from 6 s to 90 s with -n 2 on 2 cores).
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // workers))
    try:
        values = options.resolve(config.getoption)
        config.stash[SUITE] = Suite.from_options(values, worker=hasattr(config, "workerinput"))
        config.stash[SUITE].slow_selected = options.selects_slow(config.getoption("markexpr") or "")
    except InputError as exc:
        raise pytest.UsageError(one_line(exc)) from None
    config.stash[ENTRIES] = []
    config.stash[NAMED] = options.named_explicitly(values)
    config.pluginmanager.register(_Collector(config.stash[ENTRIES]), "resnet34-npu-collector")
    if not hasattr(config, "workerinput") and threading.current_thread() is threading.main_thread():
        # SIGTERM ends the session as Ctrl-C does, so its report says "interrupted"
        config.stash[SIGTERM] = signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_unconfigure(config: pytest.Config) -> None:
    if SIGTERM in config.stash:
        signal.signal(signal.SIGTERM, config.stash[SIGTERM])
    suite = config.stash.get(SUITE, None)
    if suite is not None and suite.left_threads():
        # A target's non-daemon threads would keep this process from ever exiting (the
        # interpreter joins them first): its failure is reported, so exit with the session's code.
        _exit_past_threads(suite, config.stash.get(EXIT_STATUS, pytest.ExitCode.TESTS_FAILED))


def _exit_past_threads(suite: Suite, code: int) -> None:
    """At interpreter shutdown, before the non-daemon threads are joined: if ``suite``'s
    targets still have threads running, flush and leave with ``code`` (nothing else is left to
    do by then; a test that stops its threads itself exits normally)."""

    def leave() -> None:
        if suite.left_threads():
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(int(code))

    threading._register_atexit(leave)  # noqa: SLF001 - runs before the interpreter joins threads


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


def pytest_report_header(config: pytest.Config) -> list[str]:
    suite = config.stash.get(SUITE, None)
    if suite is None:
        return []
    lines = []
    for row in devices.list_devices():
        if row.available:
            settings = ", ".join(f"{k}={v}" for k, v in row.precision.items())
            lines.append(f"resnet34-npu device {row.device}: {row.name} ({settings})")
        else:
            lines.append(f"resnet34-npu device {row.device}: not available: {row.reason}")
    run = [t.name for t in suite.targets if not suite.skip_reason(t)]
    skipped = [t.name for t in suite.targets if suite.skip_reason(t)]
    lines.append(
        f"resnet34-npu targets: {', '.join(run) or 'none'}" + (f" (skipped: {', '.join(skipped)})" if skipped else "")
    )
    lines.append(f"resnet34-npu weights: {suite.weights} {weights_digest(suite.weights)}")
    lines.append(
        f"resnet34-npu profile: {suite.profile}; images: {', '.join(p.name for p in suite.images)}; "
        f"float64 truth: {'on' if suite.fp64_truth else 'off'}; batch sizes: {', '.join(map(str, BATCH_SIZES))}"
    )
    return [one_line(line) for line in lines]  # names (images, weights, custom targets) cannot split a line


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    suite = metafunc.config.stash[SUITE]
    if "r34_target" in metafunc.fixturenames:
        params = []
        for t in suite.targets:
            kind = devices.KINDS.get(t.kind)
            if kind is None:
                marks = [pytest.mark.custom]
            else:
                marks = [pytest.mark.accelerator, getattr(pytest.mark, kind.name)] if kind.accelerator else []
            params.append(pytest.param(t.name, id=t.name, marks=marks))
        metafunc.parametrize("r34_target", params, scope="session")
    if "r34_image" in metafunc.fixturenames:
        metafunc.parametrize("r34_image", [pytest.param(p, id=p.name) for p in suite.images], scope="session")
    if "r34_batch" in metafunc.fixturenames:
        metafunc.parametrize("r34_batch", [pytest.param(b, id=f"batch{b}") for b in BATCH_SIZES], scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips with reasons (absent devices, slow targets unless ``-m slow``), the ``slow``
    marker on reduced-precision CPU work, and the default selection leaving it out."""
    suite = config.stash[SUITE]
    markexpr = config.getoption("markexpr") or ""
    run_benchmarks = "benchmark" in markexpr or bool(config.getoption("benchmark_only", False))
    for item in items:
        callspec = getattr(item, "callspec", None)
        target = suite.choice(callspec.params.get("r34_target")) if callspec else None
        if target is not None:
            if target.slow_reason or (
                target.reduced_cpu and (callspec.params.get("r34_batch", 1) > 1 or item.get_closest_marker("r34_heavy"))
            ):
                item.add_marker(pytest.mark.slow)
            if suite.missing_required(target):
                item.stash[MISSING] = suite.missing_required(target)
            elif suite.skip_reason(target):
                item.add_marker(pytest.mark.skip(reason=suite.skip_reason(target)))
        if item.get_closest_marker("benchmark") and not run_benchmarks:
            item.add_marker(pytest.mark.skip(reason=BENCHMARKS_SKIPPED))
    if any("r34" in getattr(item, "fixturenames", ()) for item in items):
        try:  # bad weights are a usage error before any test runs, whatever the verbosity
            suite.session  # noqa: B018 - builds the comparison session
        except InputError as exc:
            raise pytest.UsageError(one_line(exc)) from None
    if suite.dataset is None:  # the dataset test needs --r34-dataset: not collected without it
        drop = [item for item in items if item.get_closest_marker("r34_dataset")]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = [item for item in items if not item.get_closest_marker("r34_dataset")]
    if not suite.slow_selected:
        # The default selection leaves the slow cases out (-m slow runs them); named targets
        # keep every case of their own, and nothing else that is slow.
        named = config.stash[NAMED]

        def kept(item: pytest.Item) -> bool:
            has_target = "r34_target" in getattr(getattr(item, "callspec", None), "params", {})
            return (
                not item.get_closest_marker("slow") or bool(item.get_closest_marker("skip")) or (named and has_target)
            )

        drop = [item for item in items if not kept(item)]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = [item for item in items if kept(item)]
    config.stash[CONFORMANCE] = any(
        "r34_image" in getattr(getattr(item, "callspec", None), "params", {}) or item.get_closest_marker("r34_dataset")
        for item in items
    )


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """A backend this host cannot run (no C++ compiler, Triton, TorchAir, onnxruntime or
    provider) skips the target's tests with the reason."""
    try:
        return (yield)
    except BackendUnavailable as exc:
        pytest.skip(one_line(exc))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A required device that is missing fails its tests, with the reason."""
    if MISSING in item.stash:
        pytest.fail(item.stash[MISSING], pytrace=False)


@pytest.fixture(scope="session")
def r34(request: pytest.FixtureRequest) -> Suite:
    """The suite's session state (options, matrix, comparison session and caches)."""
    return request.config.stash[SUITE]


@pytest.fixture
def r34_record(request: pytest.FixtureRequest, r34: Suite) -> Callable[..., None]:
    """``r34_record(kind, target, case, batch=None, **extra)`` attaches a record of this check
    to the test's report (it travels through pytest-xdist to the acceptance report)."""
    records: list[dict[str, Any]] = []
    request.node.stash[RECORDS] = records

    def record(kind: str, target: str, result: Any, **kwargs: Any) -> None:
        made = r34.dataset_record(target, result) if kind == "dataset" else r34.record(kind, target, result, **kwargs)
        records.append(made)

    return record


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
                    item.warn(
                        pytest.PytestWarning(
                            f"{record['target']} on {record['case']['image']}: " + "; ".join(record["case"]["warnings"])
                        )
                    )
        report.r34_records = [dict(r, test=item.nodeid) for r in records]
        params = getattr(item, "callspec", None)
        report.r34_params = {k: str(v) for k, v in params.params.items() if k.startswith("r34_")} if params else {}


class _Collector:
    """Collects every test's outcome and records; on the xdist controller the reports arrive
    from the workers, already carrying their records."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not (report.when == "call" or (report.when in ("setup", "teardown") and not report.passed)):
            return
        if report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif report.outcome != "passed":
            errors = [line[1:].strip() for line in (report.longreprtext or "").splitlines() if line.startswith("E ")]
            message = "\n".join(errors) if errors else (report.longreprtext or "").strip()
        else:
            message = ""
        self.entries.append(
            {
                "test": report.nodeid,
                "outcome": report.outcome,
                "duration_s": round(report.duration, 4),
                "params": getattr(report, "r34_params", {}),
                "message": message,
                "records": getattr(report, "r34_records", []),
            }
        )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or SUITE not in config.stash:
        return
    message = config.stash.get(NO_BASELINE, None)
    if message:
        terminalreporter.write_line(f"resnet34-npu: {message}", yellow=True)
    rows = summary_rows(r for entry in config.stash[ENTRIES] for r in entry["records"])
    if rows:
        terminalreporter.section("resnet34-npu comparisons")
        for line in format_table(SUMMARY_HEADER, rows):
            terminalreporter.write_line(line)
    datasets = [r for entry in config.stash[ENTRIES] for r in entry["records"] if r.get("kind") == "dataset"]
    if datasets:
        terminalreporter.section("resnet34-npu dataset agreement")
        for record in datasets:
            for line in summary_lines(record["target"], record["dataset"]):
                terminalreporter.write_line(line)
    suite = config.stash[SUITE]
    for name, line in config.stash.get(LEFT_THREADS, {}).items():
        terminalreporter.write_line(one_line(f"resnet34-npu: target {name!r} {line}: it fails"), red=True)
    if REPORT_ERROR in config.stash:
        terminalreporter.write_line(f"resnet34-npu: error: {config.stash[REPORT_ERROR]}", red=True)
    elif any(entry["records"] for entry in config.stash[ENTRIES]):
        for what, path in (("acceptance report", suite.report), ("HTML report", suite.html)):
            if path is not None:
                terminalreporter.write_line(f"resnet34-npu: {what} written to {plain(path)}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist controller: the targets that left threads running on a worker."""
    left = getattr(node, "workeroutput", {}).get("r34_left_threads", {})
    node.config.stash.setdefault(LEFT_THREADS, {}).update(left)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if SUITE not in config.stash:
        return
    suite, entries = config.stash[SUITE], config.stash[ENTRIES]
    if hasattr(config, "workerinput"):
        config.workeroutput["r34_left_threads"] = suite.left_threads()  # sent to the controller
        return
    left = {**config.stash.get(LEFT_THREADS, {}), **suite.left_threads()}
    config.stash[LEFT_THREADS] = left
    if left and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a target that cannot let the process end fails
    config.stash[EXIT_STATUS] = session.exitstatus
    # Conformance tests selected here, or (on the pytest-xdist controller, which collects nothing)
    # reported by the workers; else (unit, operator or benchmark runs) leave the last report alone.
    # An interrupted session (Ctrl-C, SIGTERM, an internal error) says so, whatever it had
    # compared, and replaces the last report even when it never reached a comparison.
    interrupted = exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
    selected = config.stash.get(CONFORMANCE, False) or any(
        entry["params"].get("r34_image") or any(r.get("kind") == "dataset" for r in entry["records"])
        for entry in entries
    )
    if (suite.report is None and suite.html is None) or not (selected or interrupted):
        return
    document = acceptance_report(suite, entries, interrupted=interrupted, left_threads=left)
    try:
        if suite.report is not None:
            write_json_atomic(suite.report, document)
        if suite.html is not None:  # the same document, as a page (--r34-html)
            write_html(document, suite.html, suite.report.name if suite.report else "pytest acceptance report")
    except InputError as exc:  # a full disk: one line, and the run is not a success
        config.stash[REPORT_ERROR] = one_line(exc)
        session.exitstatus = config.stash[EXIT_STATUS] = pytest.ExitCode.INTERNAL_ERROR
        return
    if document["verdict"] == "fail" and session.exitstatus == pytest.ExitCode.OK:
        # every selected test passed, yet the report fails (a required device not tested): so does the run
        session.exitstatus = config.stash[EXIT_STATUS] = pytest.ExitCode.TESTS_FAILED
