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
import re
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable

import pytest

from resnet34_npu.core.documents import format_table
from resnet34_npu.core.errors import InputError, cannot_import, one_line, plain
from resnet34_npu.core.files import write_json_atomic
from resnet34_npu.suite import options
from resnet34_npu.targets import devices
from resnet34_npu.targets.engines import BackendUnavailable
from resnet34_npu.targets.watchdog import CARDS_DOWN_ENV

if TYPE_CHECKING:
    from resnet34_npu.suite.state import Suite

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
    "r34_cards": "internal: parametrised only over targets that two or more cards of this host run (card-to-card)",
    "npu_install": "installs the real torch-npu wheel from PyPI into a temporary folder (skipped when it cannot be "
    "had)",
    "subprocess": "starts Python subprocesses that import torch (the few end-to-end tests where the process is the "
    "point)",
    "r34_dataset": "the dataset-scale agreement test: collected only with --r34-dataset DIR",
    "browser": "loads a page in headless Chromium (skipped, with the reason, where Chromium is not installed)",
    "selftest": "a test of the suite's own code (tests/unit, integration, benchmarks): left out of an acceptance "
    "run (--r34-require), where it would say nothing about the device; `-m selftest` runs them there",
}
SUITE = pytest.StashKey["Suite"]()
ENTRIES = pytest.StashKey[list]()
RECORDS = pytest.StashKey[list]()
NAMED = pytest.StashKey[bool]()
CONFORMANCE = pytest.StashKey[bool]()
SELF_TESTS_LEFT_OUT = pytest.StashKey[int]()
FAILING = pytest.StashKey[list]()
LAST_OF = pytest.StashKey[dict]()
MISSING = pytest.StashKey[str]()
REPORT_ERROR = pytest.StashKey[str]()
HISTORY_RECORD = pytest.StashKey[str]()
HISTORY_GATE = pytest.StashKey[list]()
SIGTERM = pytest.StashKey[Any]()
NO_BASELINE = pytest.StashKey[str]()
LEFT_THREADS = pytest.StashKey[dict]()
EXIT_STATUS = pytest.StashKey[int]()
RAN = pytest.StashKey[list]()
NOTHING_RAN = pytest.StashKey[str]()
CARDS = pytest.StashKey[list]()
BURN_IN = pytest.StashKey[Any]()
BURN_IN_ERROR = pytest.StashKey[str]()
CARD_FAILURE = pytest.StashKey[dict]()
ISOLATED = pytest.StashKey[bool]()
CARDS_DOWN_FILE = pytest.StashKey[str]()
ENV_BEFORE = pytest.StashKey[dict]()
BENCHMARKS_SKIPPED = "benchmarks run only when asked for: pytest -m benchmark"


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser.getgroup(GROUP, "resnet34-npu conformance suite").addoption)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Crash isolation (``--r34-isolate``): the tests run in a pytest-xdist worker, replaced when
    it dies, so a card that kills the process fails alone. Decided before pytest-xdist reads ``-n``
    (its own ``pytest_cmdline_main``); every xdist run shares the cards that failed through a file."""
    if hasattr(config, "workerinput") or config.option.help or config.option.version:
        return
    try:
        values = options.resolve(config.getoption)
    except InputError:
        return  # said once, as a usage error, by pytest_configure
    xdist = config.pluginmanager.hasplugin("xdist")
    workers = getattr(config.option, "numprocesses", None)
    debugging = any(config.getoption(name, None) for name in ("collectonly", "usepdb", "trace"))
    try:
        isolated = options.isolates(values, workers=workers, xdist=xdist, debugging=debugging)
    except InputError as exc:
        raise pytest.UsageError(one_line(exc)) from None
    if isolated:
        import resnet34_npu

        # the worker imports this package as this process did, from wherever pytest was started
        home = os.path.dirname(os.path.dirname(os.path.abspath(resnet34_npu.__file__)))
        paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if home not in paths:
            _set_env(config, "PYTHONPATH", os.pathsep.join([home, *filter(None, paths)]))
        config.option.numprocesses = 1
        if getattr(config.option, "maxworkerrestart", None) is None:
            config.option.maxworkerrestart = 64  # a replaced worker skips the dead cards: one restart per card
        config.stash[ISOLATED] = True
    if xdist and getattr(config.option, "numprocesses", None):
        import tempfile

        # the run's own file, never one inherited from a run that started this one
        handle, path = tempfile.mkstemp(prefix="r34-cards-down-", suffix=".jsonl")
        os.close(handle)
        config.stash[CARDS_DOWN_FILE] = path
        _set_env(config, CARDS_DOWN_ENV, path)


def _set_env(config: pytest.Config, name: str, value: str) -> None:
    """Set ``name`` for this run's processes (the workers inherit it); ``pytest_unconfigure`` puts
    back what was there before."""
    config.stash.setdefault(ENV_BEFORE, {}).setdefault(name, os.environ.get(name))
    os.environ[name] = value


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, on the controller: a worker died running ``crashitem``
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    """A worker that died in a card's test: that card crashed. The test fails naming it (the signal
    when the worker's exit status gives one), the acceptance report fails its target with a
    ``crashed`` finding, and the replacement worker does not run that card again."""
    node = getattr(report, "node", None)
    config = getattr(node, "config", None)
    suite = config.stash.get(SUITE, None) if config is not None else None
    if suite is None or "[" not in crashitem:
        return
    from resnet34_npu.judge.compare import card_of
    from resnet34_npu.targets.watchdog import CardFailure, write_card_down

    params = crashitem.split("[", 1)[1].rstrip("]")
    names = [t.name for t in suite.targets if params == t.name or params.startswith(t.name + "-")]
    if not names:
        return
    name = max(names, key=len)
    if not suite.on_card(name):
        return  # not a card: a crash of the suite's own process is not blamed on the CPU
    card = card_of(name)
    status = None
    with contextlib.suppress(Exception):  # execnet keeps the worker's Popen; its status names the signal
        status = node.gateway._io.popen.wait(timeout=5)
    how = signal.Signals(-status).name if isinstance(status, int) and status < 0 else None
    test = crashitem.rpartition("::")[2]
    failure = CardFailure(
        "crashed",
        card,
        name,
        test,
        signal=how,
        exit_status=status if how is None else None,
    )
    write_card_down(failure)
    report.when = "call"
    report.longrepr = failure.line
    report.r34_card_failure = failure.to_dict()
    report.r34_params = {"r34_target": name}


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    if config.option.help or config.option.version:
        return
    if not hasattr(config, "workerinput"):  # the controller says it once
        for line in options.unknown_environment():
            config.issue_config_time_warning(pytest.PytestConfigWarning(line), stacklevel=2)
    from resnet34_npu.targets.emulation import refused

    if refused():
        raise pytest.UsageError(one_line(refused()))
    import resnet34_npu

    error = resnet34_npu.import_error()  # torch itself cannot be imported (a broken torch_npu auto-loaded): one line
    if error is not None:
        raise pytest.UsageError(cannot_import(error, resnet34_npu.USER_AUTOLOAD))
    from resnet34_npu.suite.state import Suite  # torch: not for --help

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
        if values.get("r34_deterministic"):
            from resnet34_npu.targets import determinism

            for problem in determinism.apply():  # before any device starts; the policy falls back to tolerance
                print(f"resnet34-npu determinism: {problem}; run-to-run falls back to 'tolerance'")
        config.stash[SUITE] = Suite.from_options(values, worker=hasattr(config, "workerinput"))
        config.stash[SUITE].slow_selected = options.selects_slow(config.getoption("markexpr") or "")
    except InputError as exc:
        raise pytest.UsageError(one_line(exc)) from None
    config.stash[ENTRIES] = []
    config.stash[RAN] = []
    config.stash[NAMED] = options.named_explicitly(values)
    config.pluginmanager.register(_Collector(config.stash[ENTRIES], config.stash[RAN]), "resnet34-npu-collector")
    if not hasattr(config, "workerinput") and threading.current_thread() is threading.main_thread():
        # SIGTERM ends the session as Ctrl-C does, so its report says "interrupted"
        config.stash[SIGTERM] = signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_unconfigure(config: pytest.Config) -> None:
    if CARDS_DOWN_FILE in config.stash:
        with contextlib.suppress(OSError):
            os.remove(config.stash[CARDS_DOWN_FILE])
    for name, before in config.stash.get(ENV_BEFORE, {}).items():
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if NOTHING_RAN in config.stash and reporter is not None:
        # the reason the run fails, as its last line: below the skips and pytest's counts
        reporter.write_line(f"resnet34-npu: {config.stash[NOTHING_RAN]}", red=True)
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


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """The session's warm-up (weights, model, the reference's first forward pass) before the
    first test, when a target is compared on an image, so that that test's duration is its own."""
    suite = session.config.stash.get(SUITE, None)
    if suite is None or session.config.option.collectonly:
        return
    from resnet34_npu.suite.state import TIMED_BATCHES

    runs = [
        (item, params)
        for item in session.items
        if (params := getattr(getattr(item, "callspec", None), "params", {}))
        and (choice := suite.choice(params.get("r34_target", "")))
        and not suite.skip_reason(choice)
    ]
    if runs:
        # timed: a record at a timed batch size carries the reference's latency beside the target's
        timed = any(p.get("r34_batch") in TIMED_BATCHES and "r34_record" in item.fixturenames for item, p in runs)
        with contextlib.suppress(Exception):  # it fails again, as before, in the tests that need it
            suite.warm_up(timed)


def pytest_report_header(config: pytest.Config) -> list[str]:
    from resnet34_npu.model.weights import weights_digest
    from resnet34_npu.suite.state import BATCH_SIZES

    suite = config.stash.get(SUITE, None)
    if suite is None:
        return []
    from resnet34_npu.targets import emulation

    host = emulation.active()
    lines = [emulation.banner(host)] if host is not None else []
    if config.stash.get(ISOLATED, False):
        lines.append(
            "resnet34-npu isolation: the tests run in a pytest-xdist worker process (-n 1), replaced when it dies: "
            "a card that crashes it fails alone (--r34-isolate=off runs them in this process)"
        )
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
    from resnet34_npu.suite.state import BATCH_SIZES

    suite = metafunc.config.stash[SUITE]
    if "r34_target" in metafunc.fixturenames:
        params = []
        cards = metafunc.definition.get_closest_marker("r34_cards") is not None
        for t in suite.targets:
            if cards and not suite.card_peers(t.name):
                continue  # card-to-card: only targets that two or more cards of this host run
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
    suite.named |= _selected_by_name(config, suite)
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
            missing = suite.missing_required(target) or suite.missing_named(target)
            if missing:
                item.stash[MISSING] = missing
            elif suite.skip_reason(target):
                item.add_marker(pytest.mark.skip(reason=suite.skip_reason(target)))
        if item.get_closest_marker("benchmark") and not run_benchmarks:
            item.add_marker(pytest.mark.skip(reason=BENCHMARKS_SKIPPED))
    if any("r34" in getattr(item, "fixturenames", ()) for item in items):
        try:  # bad weights are a usage error before any test runs, whatever the verbosity
            suite.session  # noqa: B018 - builds the comparison session
        except InputError as exc:
            raise pytest.UsageError(one_line(exc)) from None
    if suite.required and "selftest" not in markexpr:
        # An acceptance run judges the device: the suite's self-tests (they check its code, in
        # CPU-only CI) would add time and process-wide settings to it and answer nothing about the card.
        drop = [item for item in items if item.get_closest_marker("selftest")]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = [item for item in items if not item.get_closest_marker("selftest")]
            config.stash[SELF_TESTS_LEFT_OUT] = len(drop)
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
                not item.get_closest_marker("slow")
                or bool(item.get_closest_marker("skip"))
                or MISSING in item.stash
                or (named and has_target)
            )

        drop = [item for item in items if not kept(item)]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = [item for item in items if kept(item)]
    # card-to-card where no two cards run a target (a CPU-only host): no case at all, not a skip
    items[:] = [i for i in items if not (i.get_closest_marker("r34_cards") and not isinstance(_target_of(i), str))]
    config.stash[CONFORMANCE] = any(_is_conformance(item) for item in items)
    _group_by_target(config, items)


def _group_by_target(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run each target's tests together, in the matrix's order, and card-to-card last (when every
    card's logits are at hand), so that a target's runner (its model copy on the device) is freed
    after its last test (``pytest_runtest_teardown``): the memory of a run holds one target's
    model at a time, not the matrix's."""
    suite = config.stash[SUITE]
    order = {t.name: i for i, t in enumerate(suite.targets)}

    def target(item: pytest.Item) -> str | None:
        return getattr(getattr(item, "callspec", None), "params", {}).get("r34_target")

    def key(item: pytest.Item) -> tuple[int, int]:
        return (1 if item.get_closest_marker("r34_cards") else 0, order.get(target(item) or "", len(order)))

    # the target tests are sorted among the places they hold; every other test keeps its place
    slots = [i for i, item in enumerate(items) if target(item)]
    for slot, item in zip(
        slots, sorted((items[i] for i in slots), key=key)
    ):  # stable: a target's tests keep their order
        items[slot] = item
    # card-to-card reads the logits the verdicts computed, not the runner: it does not hold it
    config.stash[LAST_OF] = {
        target(item): item.nodeid for item in items if target(item) and not item.get_closest_marker("r34_cards")
    }


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    suite = item.config.stash.get(SUITE, None)
    name = getattr(getattr(item, "callspec", None), "params", {}).get("r34_target")
    if suite is None or not name:
        return
    last = item.config.stash.get(LAST_OF, {}).get(name) == item.nodeid
    # a pytest-xdist worker runs only some of the items: it frees a target when its next item is another's
    moved_on = hasattr(item.config, "workerinput") and (nextitem is None or _target_of(nextitem) != name)
    if last or moved_on:
        suite.release(name)


def _target_of(item: pytest.Item) -> str | None:
    return getattr(getattr(item, "callspec", None), "params", {}).get("r34_target")


def _selected_by_name(config: pytest.Config, suite: Suite) -> set[str]:
    """The matrix targets that cannot run here and that the user asked for by name anyway: a
    node id whose parameters hold the target's name, or a ``-k`` expression naming the target
    or (for an absent device, not a missing backend) its kind, as ``-k npu``."""
    keyword = config.getoption("keyword") or ""
    params = " ".join(arg.split("[", 1)[1] for arg in config.args if "::" in arg and "[" in arg)
    named = set()
    for choice in suite.targets:
        if not choice.reason:
            continue
        kind_named = not choice.backend and re.search(rf"(?<![\w/]){re.escape(choice.kind)}(?![\w/])", keyword)
        if choice.name in keyword or choice.name in params or kind_named:
            named.add(choice.name)
    return named


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """A backend this host cannot run (no C++ compiler, Triton, TorchAir, onnxruntime or
    provider), found while a target's engine is built: a skip with the reason for a target of
    the default matrix, a failure with the reason for a named one (unless
    ``--r34-allow-missing``). Raised anywhere else, it is an error like any other."""
    from resnet34_npu.targets.watchdog import CardDown

    suite = pyfuncitem.config.stash.get(SUITE, None)
    down = suite.cards_down() if suite is not None else set()
    name = _target_of(pyfuncitem)
    failure = suite.failure_of(name) if suite is not None and name else None
    if failure is not None:  # its card is down: not run (nothing may touch that card's memory again)
        pyfuncitem.stash[CARD_FAILURE] = failure.to_dict()
        pytest.skip(f"{failure.not_run}: {failure.line}")
    try:
        return (yield)
    except CardDown as exc:  # the card failed in this test (a failure naming it), or before it (not run)
        pyfuncitem.stash[CARD_FAILURE] = exc.failure.to_dict()
        if exc.first or exc.failure.card not in down:  # (Hypothesis replays a failing example: not "first")
            pytest.fail(exc.failure.line, pytrace=False)
        pytest.skip(str(exc))
    except BackendUnavailable as exc:
        suite = pyfuncitem.config.stash[SUITE]
        name = suite.unavailable(exc)
        if not name:
            raise  # not an engine build of the suite's: a bug, with its traceback
        if suite.must_run(name):
            pytest.fail(f"{name}: {one_line(exc)} (named target; --r34-allow-missing skips it instead)", pytrace=False)
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
    from resnet34_npu.suite.junit import verdict_properties

    records: list[dict[str, Any]] = []
    request.node.stash[RECORDS] = records

    def record(kind: str, target: str, result: Any, **kwargs: Any) -> None:
        made = r34.dataset_record(target, result) if kind == "dataset" else r34.record(kind, target, result, **kwargs)
        records.append(made)
        if kind == "verdict":  # the JUnit XML's <property> entries (record_property's list)
            request.node.user_properties.extend(verdict_properties(made, r34.session.profile))

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
        # pytest-html is installed and writes a page (--html): drawing a chart for no page costs
        # matplotlib's import and a figure per failing verdict
        if report.when == "call" and item.config.pluginmanager.hasplugin("html") and _html_page(item.config):
            from pytest_html import extras

            from resnet34_npu.suite import html_extras

            charts = [(r, c) for r in records for c in [html_extras.failing_chart(r)] if c]
            report.extras = [
                *getattr(report, "extras", []),
                *(extras.png(c, name=f"localisation of {r['target']}") for r, c in charts),
            ]
        params = getattr(item, "callspec", None)
        report.r34_params = {k: str(v) for k, v in params.params.items() if k.startswith("r34_")} if params else {}
        report.r34_conformance = _is_conformance(item)
        if CARD_FAILURE in item.stash:  # the card hung, crashed or lost here, or before (its case not run)
            report.r34_card_failure = item.stash[CARD_FAILURE]


def _html_page(config: pytest.Config) -> bool:
    """Whether pytest-html writes a page in this run (its ``--html`` option, dest ``htmlpath``)."""
    return bool(config.getoption("htmlpath", None))


def _is_conformance(item: pytest.Item) -> bool:
    """A conformance case: a target compared on an image, or the dataset agreement test."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return "r34_image" in params or bool(item.get_closest_marker("r34_dataset"))


class _Collector:
    """Collects every test's outcome and records; on the xdist controller the reports arrive
    from the workers, already carrying their records."""

    def __init__(self, entries: list[dict[str, Any]], ran: list[str]) -> None:
        self.entries = entries
        self.ran = ran  # the conformance cases whose test body ran (passed or failed)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and not report.skipped and getattr(report, "r34_conformance", False):
            self.ran.append(report.nodeid)
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
                "card_failure": getattr(report, "r34_card_failure", None),
            }
        )


@pytest.hookimpl(optionalhook=True)  # pytest-html's hook: called only when it is installed
def pytest_html_results_summary(prefix: list[str], summary: list[str], postfix: list[str], session: Any) -> None:
    config = session.config
    if hasattr(config, "workerinput") or SUITE not in config.stash:
        return
    from resnet34_npu.suite import html_extras

    table = html_extras.summary_table(r for entry in config.stash[ENTRIES] for r in entry["records"])
    if table:
        prefix.append(table)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from resnet34_npu.dataset.agreement import summary_lines
    from resnet34_npu.judge.consistency import ulps
    from resnet34_npu.reports.report import SUMMARY_HEADER, summary_rows

    if hasattr(config, "workerinput") or SUITE not in config.stash:
        return
    message = config.stash.get(NO_BASELINE, None)
    if message:
        terminalreporter.write_line(f"resnet34-npu: {message}", yellow=True)
    left_out = config.stash.get(SELF_TESTS_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(
            f"resnet34-npu: acceptance run (--r34-require): the suite's {left_out} self-tests were left out "
            "(they check its code in CPU-only CI; `-m selftest` runs them here)"
        )
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
    repeats = {r["target"]: r["run_to_run"] for e in config.stash[ENTRIES] for r in e["records"] if r.get("run_to_run")}
    for name, repeat in repeats.items():
        if repeat["distinct"] > 1:
            word = "note" if repeat["passed"] else "FAIL"
            terminalreporter.write_line(
                f"resnet34-npu: run-to-run {word} {plain(name)}: {repeat['distinct']} distinct outputs in "
                f"{repeat['outputs']} runs, max {ulps(repeat['max_ulp'], repeat.get('max_ulp_raw'))} "
                f"({repeat['policy']}: {plain(repeat['reason'])})",
                red=not repeat["passed"],
            )
    for group in config.stash.get(CARDS, []):
        for line in group.lines():
            terminalreporter.write_line(f"resnet34-npu: {plain(line)}", red=not group.passed)
    failing = config.stash.get(FAILING, [])
    if failing:
        terminalreporter.section("resnet34-npu failing targets and what to run next")
        for target in failing:
            terminalreporter.write_line(f"FAIL {plain(target['name'])}", red=True)
            for step in target.get("next_steps", ()):
                terminalreporter.write_line(f"  next: {plain(step)}")
    burned = config.stash.get(BURN_IN, None)
    if burned is not None:
        terminalreporter.section("resnet34-npu burn-in")
        head, *rest = burned.lines()
        terminalreporter.write_line(plain(head), red=not burned.passed)
        for line in rest:
            terminalreporter.write_line(plain(line), red=" FAIL " in line)
    if BURN_IN_ERROR in config.stash:
        terminalreporter.write_line(f"resnet34-npu: error: {config.stash[BURN_IN_ERROR]}", red=True)
    suite = config.stash[SUITE]
    for name, line in config.stash.get(LEFT_THREADS, {}).items():
        terminalreporter.write_line(one_line(f"resnet34-npu: target {name!r} {line}: it fails"), red=True)
    if REPORT_ERROR in config.stash:
        terminalreporter.write_line(f"resnet34-npu: error: {config.stash[REPORT_ERROR]}", red=True)
    elif any(entry["records"] for entry in config.stash[ENTRIES]):
        for what, path in (("acceptance report", suite.report), ("HTML report", suite.html)):
            if path is not None:
                terminalreporter.write_line(f"resnet34-npu: {what} written to {plain(path)}")
        if HISTORY_RECORD in config.stash:
            where = plain(config.stash[HISTORY_RECORD])
            terminalreporter.write_line(f"resnet34-npu: history record written to {where}")
        for line in config.stash.get(HISTORY_GATE, []):
            terminalreporter.write_line(f"resnet34-npu: history gate: {plain(line)}", red=line.startswith("FAIL"))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist controller: the targets that left threads running on a worker."""
    left = getattr(node, "workeroutput", {}).get("r34_left_threads", {})
    node.config.stash.setdefault(LEFT_THREADS, {}).update(left)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from resnet34_npu.history import gate, store
    from resnet34_npu.history.from_report import record_of_report
    from resnet34_npu.history.record import write_record
    from resnet34_npu.reports.html import write_html
    from resnet34_npu.suite.acceptance import acceptance_report

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
    selected = config.stash.get(CONFORMANCE, False) or any(
        entry["params"].get("r34_image") or any(r.get("kind") == "dataset" for r in entry["records"])
        for entry in entries
    )
    ran = config.stash[RAN] or config.option.collectonly or suite.allow_missing
    if selected and not ran and session.exitstatus == pytest.ExitCode.OK:
        # Conformance cases were selected and every one skipped: nothing was verified. Exit 1 (a
        # failed check), not pytest's 5 ("no tests collected"): tests were collected, and CI
        # scripts often accept 5 as "nothing to do here".
        skipped = sorted({e["message"] for e in entries if e["outcome"] == "skipped" and e["params"].get("r34_target")})
        config.stash[NOTHING_RAN] = one_line(
            "conformance tests were selected but no conformance case ran"
            + (f" ({'; '.join(skipped)})" if skipped else "")
            + ": the run fails; --r34-allow-missing accepts it"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    interrupted = exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
    if _consistency(config, suite, entries, interrupted) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # an outlier card or a burn-in failure fails the run
    if getattr(config.stash.get(BURN_IN, None), "interrupted", False):  # Ctrl-C or SIGTERM during the burn-in
        session.exitstatus, interrupted = pytest.ExitCode.INTERRUPTED, True
    config.stash[EXIT_STATUS] = session.exitstatus
    # Conformance tests selected here, or (on the pytest-xdist controller, which collects nothing)
    # reported by the workers; else (unit, operator or benchmark runs) leave the last report alone.
    # An interrupted session (Ctrl-C, SIGTERM, an internal error) says so, whatever it had
    # compared, and replaces the last report even when it never reached a comparison.
    if (suite.report is None and suite.html is None and suite.history is None) or not (selected or interrupted):
        return
    burned = config.stash.get(BURN_IN, None)
    document = acceptance_report(
        suite, entries, interrupted=interrupted, left_threads=left, burn_in=None if burned is None else burned.to_dict()
    )
    config.stash[FAILING] = [t for t in document["targets"] if t["verdict"] == "fail"]
    try:
        if suite.report is not None:
            write_json_atomic(suite.report, document)
        if suite.html is not None:  # the same document, as a page (--r34-html)
            write_html(document, suite.html, suite.report.name if suite.report else "pytest acceptance report")
    except InputError as exc:  # a full disk: one line, and the run is not a success
        config.stash[REPORT_ERROR] = one_line(exc)
        session.exitstatus = config.stash[EXIT_STATUS] = pytest.ExitCode.INTERNAL_ERROR
        return
    if suite.history is not None and not interrupted:  # after the report: a failed record never loses it
        try:
            labels = options.resolve(config.getoption)["r34_labels"]  # --r34-label / R34_LABELS
            record = record_of_report(document, source="pytest", labels=labels)
            config.stash[HISTORY_RECORD] = str(write_record(suite.history, record))
            verdicts = gate.check(store.load(suite.history).records) if suite.history_check else []
        except InputError as exc:
            config.stash[REPORT_ERROR] = one_line(exc)
            session.exitstatus = config.stash[EXIT_STATUS] = pytest.ExitCode.INTERNAL_ERROR
            return
        config.stash[HISTORY_GATE] = [v.line for v in verdicts]
        if gate.failed(verdicts) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = config.stash[EXIT_STATUS] = pytest.ExitCode.TESTS_FAILED
    if document["verdict"] == "fail" and session.exitstatus == pytest.ExitCode.OK:
        # every selected test passed, yet the report fails (a required device not tested): so does the run
        session.exitstatus = config.stash[EXIT_STATUS] = pytest.ExitCode.TESTS_FAILED


def _consistency(config: pytest.Config, suite: Suite, entries: list[dict[str, Any]], interrupted: bool) -> bool:
    """Card-to-card over the session's verdict records, then (``--r34-burn-in``, a session that
    finished) the burn-in of the targets whose tests ran; stashed for the summary and the
    report. True when either failed."""
    from resnet34_npu.suite.acceptance import card_groups

    cards = config.stash[CARDS] = card_groups(entries)
    failed = any(not g.passed for g in cards)
    if suite.burn_in is None or interrupted or config.option.collectonly:
        return failed
    ran = {e["params"]["r34_target"] for e in entries if e["params"].get("r34_target") and e["outcome"] != "skipped"}
    names = suite.burn_in_targets(ran)
    if not names:
        config.stash[BURN_IN_ERROR] = "--r34-burn-in: no target ran in this session, nothing to burn in"
        return True
    try:
        burned = config.stash[BURN_IN] = suite.run_burn_in(names)
    except InputError as exc:
        config.stash[BURN_IN_ERROR] = one_line(exc)
        return True
    return failed or not burned.passed
