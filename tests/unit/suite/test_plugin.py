"""The plugin, run for real with pytester: a healthy run, an impossible profile, bad options,
skip reasons, selections, and the report under pytest-xdist. In process (the model, the
weights and the CPU reference are shared with this session), except the pytest-xdist run,
whose worker processes are the point."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from xml.etree import ElementTree

import pytest

from resnet34_npu.core import schemas
from resnet34_npu.model.weights import cache_dir
from resnet34_npu.targets.devices import NPU_NOT_INSTALLED, probe

REPO = Path(__file__).resolve().parents[3]
CONFORMANCE = REPO / "tests" / "conformance" / "test_conformance.py"
CACHE = cache_dir()  # read at import, before pytester points HOME at a temporary folder


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    # pytester points HOME at a temporary folder: keep using the real weights cache
    monkeypatch.setenv("RESNET34_NPU_CACHE", str(CACHE))
    for name in [k for k in __import__("os").environ if k.startswith("R34_")]:
        monkeypatch.delenv(name)
    pytester.makeconftest('pytest_plugins = ["resnet34_npu.pytest_plugin"]\n')
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:benchmark --strict-markers\n")
    shutil.copy(CONFORMANCE, pytester.path / "test_conformance.py")
    return pytester


ONE_IMAGE = "--r34-images=" + str(REPO / "fixtures/images/cat.jpg")


def run(pytester, *args):
    return pytester.runpytest_inprocess("--r34-iters=0", ONE_IMAGE, *args)


def test_an_unknown_r34_variable_is_a_warning_with_the_right_spelling(suite, monkeypatch):
    monkeypatch.setenv("R34_TARGET", "npu")
    result = suite.runpytest_inprocess("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*PytestConfigWarning: environment variable R34_TARGET is not one of the suite's and is ignored: "
            "did you mean R34_TARGETS?"
        ]
    )


@pytest.mark.slow
def test_the_session_warms_up_before_the_first_test(suite):
    """The weights, the model and the reference's first forward pass are done before the first
    conformance test starts, so that its duration is its own."""
    suite.makeconftest(
        'pytest_plugins = ["resnet34_npu.pytest_plugin"]\n'
        "from resnet34_npu.judge import compare\n"
        "def pytest_runtest_call(item):\n"
        "    print('warm at the first call:', any(key[0] == 'reference' for key in compare._SHARED))\n"
    )
    result = run(suite, "--r34-target=cpu", "-k", "test_verdict and batch1", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*warm at the first call: True*"])


def test_healthy_run_passes_and_writes_the_report(suite):
    result = run(suite, "--r34-target=cpu", "--r34-target=cpu/channels_last", "-k", "batch1 or repeat")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(
        [
            "resnet34-npu targets: cpu/fp32, cpu/fp32/channels_last",
            "resnet34-npu weights: seeded sha256 *",
            "*resnet34-npu comparisons*",
            "cpu/fp32/channels_last  cat.jpg  1      PASS*",
        ]
    )
    report = json.loads((suite.path / "acceptance_report.json").read_text())
    schemas.validate(report, "acceptance-report", source="acceptance_report.json")  # the default run's document
    assert report["verdict"] == "pass" and [t["name"] for t in report["targets"]] == [
        "cpu/fp32",
        "cpu/fp32/channels_last",
    ]
    assert all(t["effective_precision"] == "fp32" for t in report["targets"])
    assert len(report["tests"]) == 8 and all(t["outcome"] == "passed" for t in report["tests"])


HAVE_PYTEST_HTML = importlib.util.find_spec("pytest_html") is not None


def test_without_pytest_html_the_plugin_adds_nothing_and_loads(suite):
    """pytest-html's hooks are optional: with it disabled the suite loads and runs (no forward pass)."""
    result = run(suite, "-p", "no:html", "-k", "no_such_test")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED, result.stdout.str() + result.stderr.str()
    assert "unknown hook" not in result.stderr.str() + result.stdout.str()


def junit_properties(path) -> dict[str, dict[str, str]]:
    """The ``<property>`` entries of each ``<testcase>`` of a JUnit XML file, by test name, once
    the file is checked against the JUnit XSD shipped beside this test (junit.xsd)."""
    xmlschema = pytest.importorskip("xmlschema")
    xmlschema.XMLSchema(str(Path(__file__).with_name("junit.xsd"))).validate(str(path))
    tree = ElementTree.parse(path)
    return {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in tree.iter("testcase")
    }


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_PYTEST_HTML, reason="pytest-html is not installed")
def test_the_pytest_html_page_has_the_verdicts_and_the_failing_chart(suite):
    """pytest-html's page: the verdict table, and the failing target's localisation chart (slow:
    matplotlib draws the chart)."""
    result = run(
        suite,
        "--r34-target=resnet34_npu.faults:bn_stats_off",
        "-k",
        "test_verdict and batch1",
        "--html=page.html",
        "--self-contained-html",
    )
    result.assert_outcomes(failed=1)
    page = (suite.path / "page.html").read_text()
    assert '<table id="r34-verdicts">' in page and "resnet34_npu.faults:bn_stats_off" in page
    assert "localisation of resnet34_npu.faults:bn_stats_off" in page and "image/png;base64," in page


def test_a_faulty_target_fails_with_the_right_lines(suite):
    result = run(
        suite,
        "--r34-target=resnet34_npu.faults:bn_stats_off",
        "-k",
        "test_verdict and batch1",
        "--junitxml=j.xml",
    )
    result.assert_outcomes(failed=1)
    # the JUnit entry names the target, its device and precision, the deciding metric, its value and its bound
    (props,) = junit_properties(suite.path / "j.xml").values()
    assert props["r34_target"] == "resnet34_npu.faults:bn_stats_off" and props["r34_verdict"] == "fail"
    assert props["r34_effective_precision"] == "fp32" and props["r34_device_name"]
    assert props["r34_metric"] == "rel_l2_error" and props["r34_bound"] == "<= 1e-05"
    assert float(props["r34_value"]) > 1e-5, "the measured value, which broke the bound"
    result.stdout.fnmatch_lines(
        [
            "*resnet34_npu.faults:bn_stats_off on cat.jpg fails profile 'default':",
            "*rel_l2_error: * > 1.000e-05 (allowed: <= 1.000e-05 for fp32); worst element: sample 0, class *",
            "*first diverging stage: layer2.0.bn2: *",
        ]
    )
    report = json.loads((suite.path / "acceptance_report.json").read_text())
    assert report["verdict"] == "fail" and report["targets"][0]["images"][0]["failures"]
    schemas.validate(report, "acceptance-report", source="acceptance_report.json")  # a failing case, its findings


@pytest.mark.parametrize(
    "args, words",
    [
        (["--r34-target=tpu"], "Unknown device 'tpu'"),
        (["--r34-target=cpu/fp8"], "unknown or repeated part 'fp8'"),
        (["--r34-profile=lenient"], "Unknown profile 'lenient'. Choose one of: default, seed, msprobe, strict"),
        (["--r34-weights=seeded:x"], "weights 'seeded:x'"),
        (["--r34-images=/no/such.jpg"], "image '/no/such.jpg': no such file"),
        (["--r34-iters=many"], "'many' is not a non-negative integer"),
    ],
)
def test_bad_options_are_usage_errors(suite, args, words):
    result = suite.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert words in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_bad_environment_values_are_usage_errors(suite, monkeypatch):
    monkeypatch.setenv("R34_PROFILE", "lenient")
    result = suite.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "R34_PROFILE='lenient'" in result.stderr.str()


def test_environment_variables_choose_targets(suite, monkeypatch):
    monkeypatch.setenv("R34_TARGETS", "cpu/channels_last")
    result = run(suite, "-k", "test_verdict and batch1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["resnet34-npu targets: cpu/fp32/channels_last"])


@pytest.mark.slow
@pytest.mark.skipif(probe("npu").available, reason="an NPU is available here")
def test_skips_carry_their_reasons_and_markers_select(suite):
    result = run(suite, "--r34-target=cpu", "--r34-target=npu:0/fp16", "-m", "npu", "-rs", "--r34-allow-missing")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) > 0 and "passed" not in outcomes
    reason = "NPU: " + probe("npu").reason
    result.stdout.fnmatch_lines([f"SKIPPED * {reason}"])
    if probe("npu").reason == NPU_NOT_INSTALLED:
        assert "pip install -r requirements-npu.txt" in result.stdout.str()
    cpu_only = run(suite, "--r34-target=cpu", "--r34-target=npu:0/fp16", "-m", "not accelerator", "-k", "batch1")
    assert "skipped" not in cpu_only.parseoutcomes() and cpu_only.parseoutcomes()["passed"] == 3


@pytest.mark.slow
@pytest.mark.subprocess
def test_report_is_merged_under_xdist(suite, monkeypatch):
    """One image, one target, two workers: the controller's report has every worker's records.
    The controller runs in this process; its two workers are processes that import torch.
    pytest-xdist gives local workers the sys.path it froze when it was imported (before pytest
    put the checkout on it, when pytest runs as a console script): add the checkout."""
    workermanage = pytest.importorskip("xdist.workermanage")
    monkeypatch.setattr(workermanage, "_sys_path", [str(REPO), *getattr(workermanage, "_sys_path", [])])
    # pytest-benchmark disables itself under xdist with a warning; there are no benchmarks here
    args = ("--r34-target=cpu/channels_last", "-k", "not batch8", "--r34-iters=2", "-p", "no:benchmark")
    plain = run(suite, *args, "--r34-report=plain.json")
    xdist = run(suite, *args, "--r34-report=xdist.json", "-n", "2", "--junitxml=xdist.xml")
    ran = {k: v for k, v in plain.parseoutcomes().items() if k != "deselected"}  # xdist does not print deselections
    assert ran == xdist.parseoutcomes() == {"passed": 5}
    a = json.loads((suite.path / "plain.json").read_text())
    b = json.loads((suite.path / "xdist.json").read_text())
    assert len(b["tests"]) == len(a["tests"]) == 5
    for ta, tb in zip(a["targets"], b["targets"]):
        assert ta["name"] == tb["name"]
        assert sorted(i["image"] for i in ta["images"]) == sorted(i["image"] for i in tb["images"])
        assert len(ta["checks"]) == len(tb["checks"])
        assert {i["image"]: i["metrics"]["rel_l2_error"] for i in ta["images"]} == pytest.approx(
            {i["image"]: i["metrics"]["rel_l2_error"] for i in tb["images"]}, rel=0.5
        )
        assert tb["speedup_vs_reference"] is not None and tb["latency_ms"]["iterations"] == 2
    assert b["reference"]["latency_ms"]["iterations"] == 2
    verdicts = [p for p in junit_properties(suite.path / "xdist.xml").values() if p]  # the workers' properties too
    assert verdicts and all(p["r34_verdict"] == "pass" and p["r34_metric"] == "rel_l2_error" for p in verdicts)
    assert b["reference"]["precision_settings"]["num_threads"] == 1, "what the workers really ran with"


@pytest.mark.slow
def test_a_run_that_compares_nothing_replaces_an_old_report(suite):
    (suite.path / "r.json").write_text('{"verdict": "pass", "stale": true}')
    args = ("--r34-target=npu:0/fp16", "--r34-report=r.json", "--r34-allow-missing")
    result = run(suite, *args) if not probe("npu").available else None
    if result is None:
        pytest.skip("an NPU is available here")
    assert result.ret == 0
    report = json.loads((suite.path / "r.json").read_text())
    assert "stale" not in report and report["verdict"] == "not run"
    assert report["targets"][0]["verdict"] == "skipped" and report["targets"][0]["skipped"].startswith("NPU: ")


@pytest.mark.slow
def test_targets_selected_away_are_not_run_not_pass(suite):
    run(
        suite,
        "--r34-target=cpu",
        "--r34-target=cpu/channels_last",
        "-k",
        "cpu/fp32-cat.jpg-batch1 and verdict",
        "--r34-report=r.json",
    )
    report = json.loads((suite.path / "r.json").read_text())
    assert [t["verdict"] for t in report["targets"]] == ["pass", "not run"]


def test_custom_target_problems_are_usage_errors_in_pytest(suite):
    suite.makepyfile(
        broken_engine="""
        import torch
        def build(model):
            def run(batch):
                raise RuntimeError("engine not loaded")
            return run
    """
    )
    result = suite.runpytest_inprocess("--r34-target=broken_engine:build", "--r34-iters=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "target 'broken_engine:build': calling it on a batch of two raised RuntimeError: engine not loaded"
        in result.stderr.str()
    )


def test_report_none_writes_nothing(suite):
    result = run(suite, "--r34-target=cpu", "-k", "test_verdict and batch1", "--r34-report=none")
    result.assert_outcomes(passed=1)
    assert not (suite.path / "acceptance_report.json").exists()


@pytest.mark.slow
def test_junit_xml_works_as_usual(suite):
    result = run(suite, "--r34-target=cpu", "-k", "test_verdict and batch1", "--junitxml", "j.xml")
    result.assert_outcomes(passed=1)
    text = (suite.path / "j.xml").read_text()
    assert 'tests="1"' in text and "test_verdict" in text


def test_reduced_precision_without_native_kernels_is_skipped_with_the_reason(suite, avx2_only):
    result = run(suite, "-k", "test_verdict and batch1 and bf16 and cpu", "-rs")
    assert result.parseoutcomes().get("skipped") == 1 and "passed" not in result.parseoutcomes()
    result.stdout.fnmatch_lines(["SKIPPED * cpu/bf16-autocast: this CPU has no native bf16 kernels (*"])


@pytest.mark.slow
def test_reduced_precision_without_native_kernels_runs_with_m_slow(suite, avx2_only):
    result = run(suite, "-m", "slow", "-k", "test_verdict and batch1 and bf16", "--r34-report=r.json")
    assert result.parseoutcomes() == {"passed": 1, "deselected": result.parseoutcomes()["deselected"]}
    report = json.loads((suite.path / "r.json").read_text())
    bf16 = next(t for t in report["targets"] if t["name"] == "cpu/bf16-autocast")
    assert bf16["verdict"] == "pass" and bf16["skipped"] is None, "it ran: not reported as skipped"


@pytest.mark.slow
def test_named_targets_keep_their_slow_cases_and_nothing_else_slow(suite):
    suite.makepyfile(test_other="import pytest\n\n@pytest.mark.slow\ndef test_unrelated_slow():\n    pass\n")
    result = run(suite, "--r34-target=cpu/bf16-autocast", "-k", "unrelated or (test_repeatability)")
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == 1 and outcomes["deselected"] >= 1, outcomes  # the target's slow case ran
    assert "test_unrelated_slow" not in result.stdout.str()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["test_aa_stop.py", "test_zz_stop.py"])
def test_an_interrupted_session_never_reads_as_a_pass(suite, where):
    """Ctrl-C before the comparisons (an old "pass" report at the path) or after some of them:
    the report says the session was interrupted, with what ran."""
    (suite.path / "r.json").write_text('{"verdict": "pass", "stale": true}')
    suite.makepyfile(**{where[:-3]: "def test_stop():\n    raise KeyboardInterrupt\n"})
    args = ("--r34-iters=0", ONE_IMAGE, "--r34-target=cpu", "-k", "(test_verdict and batch1) or test_stop")
    result = suite.runpytest_inprocess(*args, "--r34-report=r.json", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    report = json.loads((suite.path / "r.json").read_text())
    assert "stale" not in report and report["verdict"] == "interrupted" and report["interrupted"] is True
    ran = [t["test"] for t in report["tests"]]
    assert any("test_verdict" in t for t in ran) == (where == "test_zz_stop.py")


@pytest.mark.slow
def test_a_target_that_calls_sys_exit_fails_and_the_report_is_written(suite):
    suite.makepyfile(
        exiting_engine="""
        import sys, torch
        class Engine:
            calls = 0
            def __call__(self, batch):
                Engine.calls += 1
                if Engine.calls > 1:
                    sys.exit(0)
                return torch.zeros(batch.shape[0], 1000)
        def build(model):
            return Engine()
    """
    )
    result = run(suite, "--r34-target=exiting_engine:build", "-k", "test_verdict and batch1", "--r34-report=r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*target 'exiting_engine:build' raised SystemExit: 0*"])
    assert json.loads((suite.path / "r.json").read_text())["verdict"] == "fail"


@pytest.mark.skipif(probe("npu").available, reason="an NPU is available here")
@pytest.mark.parametrize("how", ["option", pytest.param("environment", marks=pytest.mark.slow)])
def test_a_required_device_that_is_missing_fails_the_run(suite, monkeypatch, how):
    """On the host being signed off, a run that tested no NPU is not an acceptance."""
    # in this process: the requirement's rule is the subject here; isolation's path is test_hung_cards'
    required = ["--r34-require=npu", "--r34-isolate=off"] if how == "option" else []
    if how == "environment":
        monkeypatch.setenv("R34_REQUIRE", "npu")
        monkeypatch.setenv("R34_ISOLATE", "off")
    result = run(suite, "--r34-target=cpu", *required, "-k", "test_verdict and batch1", "--r34-report=r.json")
    outcomes = result.parseoutcomes()
    assert result.ret == pytest.ExitCode.TESTS_FAILED and outcomes["passed"] == 1 and outcomes["errors"] == 1
    result.stdout.fnmatch_lines([f"*required device missing (--r34-require=npu): NPU: {probe('npu').reason}*"])
    report = json.loads((suite.path / "r.json").read_text())
    npu = next(t for t in report["targets"] if t["name"].startswith("npu"))
    assert report["verdict"] == "fail" and npu["verdict"] == "fail" and npu["required_missing"]
    monkeypatch.delenv("R34_REQUIRE", raising=False)
    plain = run(suite, "--r34-target=npu:0", "-k", "test_verdict and batch1", "--r34-allow-missing")  # a skip
    assert (
        plain.ret == pytest.ExitCode.OK
        and plain.parseoutcomes()["skipped"] == 1
        and "errors" not in plain.parseoutcomes()
    )


def test_an_unknown_required_kind_is_a_usage_error(suite):
    result = suite.runpytest_inprocess("--r34-require=tpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "Unknown device kind 'tpu'" in result.stderr.str()


@pytest.mark.slow
def test_a_full_disk_for_the_acceptance_report_is_one_line(suite, full_disk):
    report = full_disk / "acceptance.json"
    result = run(suite, "--r34-target=cpu", "-k", "test_verdict and batch1", f"--r34-report={report}")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines([f"resnet34-npu: error: report '{report}': cannot write it (No space left on device)*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str() and not report.exists()
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "old.json"]


@pytest.mark.slow
def test_sigterm_ends_the_session_as_interrupted(suite):
    (suite.path / "r.json").write_text('{"verdict": "pass", "stale": true}')
    suite.makepyfile(test_zz_term="import os, signal\n\ndef test_term():\n    os.kill(os.getpid(), signal.SIGTERM)\n")
    args = ("--r34-iters=0", ONE_IMAGE, "--r34-target=cpu", "-k", "(test_verdict and batch1) or test_term")
    result = suite.runpytest_inprocess(*args, "--r34-report=r.json", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert json.loads((suite.path / "r.json").read_text())["verdict"] == "interrupted"


@pytest.mark.slow
def test_a_teardown_failure_fails_the_report(suite):
    suite.makeconftest(
        'pytest_plugins = ["resnet34_npu.pytest_plugin"]\n'
        "import pytest\n\n@pytest.fixture(autouse=True)\ndef broken_teardown():\n    yield\n"
        "    raise RuntimeError('teardown broke')\n"
    )
    result = run(suite, "--r34-target=cpu", "-k", "test_verdict and batch1", "--r34-report=r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert json.loads((suite.path / "r.json").read_text())["verdict"] == "fail"


@pytest.mark.slow
def test_a_required_kind_that_was_not_tested_fails(suite):
    engine = "examples.custom_target:torchscript_frozen"
    result = run(
        suite,
        "--r34-target=cpu",
        f"--r34-target={engine}",
        "--r34-require=cpu",
        "-k",
        "test_verdict and batch1 and torchscript",
        "--r34-report=r.json",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, "all selected tests passed, but no CPU target was tested"
    report = json.loads((suite.path / "r.json").read_text())
    cpu = next(t for t in report["targets"] if t["name"] == "cpu/fp32")
    assert report["verdict"] == "fail" and cpu["verdict"] == "fail" and "not tested" in cpu["required_missing"]
    one_card = run(
        suite,
        "--r34-target=cpu",
        "--r34-target=cpu/channels_last",
        "--r34-require=cpu",
        "-k",
        "test_verdict and batch1 and channels_last",
    )
    assert one_card.ret == pytest.ExitCode.OK, "one target of the kind tested is enough"


THREADED_ENGINE = """
import threading, time, torch
STOP = threading.Event()
class Engine:
    def __init__(self, model):
        self.model = model
    def __call__(self, batch):
        if not any(t.name == "engine-poller" for t in threading.enumerate()):
            threading.Thread(target=STOP.wait, name="engine-poller").start()
        with torch.no_grad():
            return self.model(batch)
def build(model):
    return Engine(model)
"""


def test_a_target_that_leaves_a_thread_running_fails_the_session(suite):
    """Every test of the target passed, but its thread would keep the process alive: the target
    fails in the report, the run exits 1, and the summary says why."""
    suite.makepyfile(threaded_engine=THREADED_ENGINE)
    suite.syspathinsert()
    import threaded_engine

    try:
        result = run(suite, "--r34-target=threaded_engine:build", "--r34-target=cpu", "-k", "test_verdict and batch1")
    finally:
        threaded_engine.STOP.set()
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*target 'threaded_engine:build' left 1 non-daemon thread(s) running after its runs: engine-poller: it fails"]
    )
    report = json.loads((suite.path / "acceptance_report.json").read_text())
    verdicts = {t["name"]: (t["verdict"], t.get("left_threads")) for t in report["targets"]}
    assert report["verdict"] == "fail" and verdicts == {
        "threaded_engine:build": ("fail", "left 1 non-daemon thread(s) running after its runs: engine-poller"),
        "cpu/fp32": ("pass", None),
    }


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_thread_that_never_stops_cannot_hang_pytest(suite, workers):
    """The same target in a real pytest process (or a pytest-xdist worker), its thread never
    stopped: the process still ends, with exit code 1 and the report written."""
    suite.makepyfile(threaded_engine=THREADED_ENGINE)
    args = ("--r34-iters=0", ONE_IMAGE, "--r34-target=threaded_engine:build", "-k", "test_verdict and batch1")
    result = suite.runpytest_subprocess(*args, *workers, timeout=240)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-2000:]
    report = json.loads((suite.path / "acceptance_report.json").read_text())
    assert report["verdict"] == "fail" and report["targets"][0]["left_threads"].endswith("engine-poller")


@pytest.mark.parametrize(
    ("markexpr", "slow"),
    [
        ("", False),
        ("slow", True),
        ("not slow", False),
        ("browser", True),  # only slow tests carry it: the slow filter must not drop them all
        ("slow and browser", True),
        ("not browser", False),
        ("npu", False),
        ("npu or subprocess", True),
    ],
)
def test_which_marker_expressions_select_the_slow_tests(markexpr, slow):
    from resnet34_npu.suite.options import selects_slow

    assert selects_slow(markexpr) is slow


def test_the_junit_xsd_refuses_a_property_without_a_value_and_a_bad_count(tmp_path):
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(Path(__file__).with_name("junit.xsd")))
    case = '<testcase name="t"><properties><property name="r34_metric" value="rel_l2_error"/></properties></testcase>'
    good = f'<testsuites><testsuite name="s" tests="1" failures="0" errors="0">{case}</testsuite></testsuites>'
    assert schema.is_valid(good)
    assert not schema.is_valid(good.replace(' value="rel_l2_error"', ""))
    assert not schema.is_valid(good.replace('tests="1"', 'tests="one"'))
