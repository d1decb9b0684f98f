"""The README's table of outcomes ("What a run that cannot test something does"), row by row,
through both front doors: ``compare`` (in process, ``cli.main.main``) and pytest (pytester, in
process). Each row names the case, its ``compare`` arguments, its pytest arguments and the one
outcome both must give: a usage error (exit 2 / pytest's UsageError, exit 4), a failure (exit 1,
the reason in the output), or a skip (exit 0, the reason in the output). The rows where nothing
runs run no forward pass; the default-matrix row runs the CPU targets and is slow.

Also here: the plugin's other strict paths of issue 20 (a selection where every conformance case
skipped fails the run; a ``BackendUnavailable`` raised outside an engine build is an error).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet34_npu.cli.main import main
from resnet34_npu.model.weights import cache_dir
from resnet34_npu.targets.devices import probe
from tests.unit.suite import test_plugin

REPO = Path(__file__).resolve().parents[3]
CONFORMANCE = REPO / "tests" / "conformance" / "test_conformance.py"
CACHE = cache_dir()
ONE_IMAGE = str(REPO / "fixtures/images/cat.jpg")
#: An accelerator kind absent on this host (every host this suite runs on lacks one of them).
ABSENT = next((k for k in ("npu", "cuda", "xpu") if not probe(k).available), None)
NO_COMPILER = "/nonexistent/c++"  # CXX naming a compiler that is not there: inductor's real check fails
USAGE, FAILURE, SKIP = "usage error", "failure", "skip"

#: (case, compare arguments, pytest arguments, environment, outcome, words both outputs hold)
ROWS = [
    ("unknown device kind", ["--target", "tpu:0"], ["--r34-target=tpu:0"], {}, USAGE, "Unknown device 'tpu:0'"),
    ("bad target spec", ["--target", "cpu/fp8"], ["--r34-target=cpu/fp8"], {}, USAGE, "'fp8'"),
    ("absent device, named", ["--target", "{absent}:0"], ["--r34-target={absent}:0"], {}, FAILURE, "{reason}"),
    (
        "absent device, named, --allow-missing",
        ["--target", "{absent}:0", "--allow-missing"],
        ["--r34-target={absent}:0", "--r34-allow-missing"],
        {},
        SKIP,
        "{reason}",
    ),
    (
        "backend missing for a named mode (no C++ compiler for cpu/fp32/compile)",
        ["--target", "cpu/fp32/compile"],
        ["--r34-target=cpu/fp32/compile"],
        {"CXX": NO_COMPILER},
        FAILURE,
        f"inductor needs a C++ compiler ({NO_COMPILER}",
    ),
    (
        "backend missing for a named mode, --allow-missing",
        ["--target", "cpu/fp32/compile", "--allow-missing"],
        ["--r34-target=cpu/fp32/compile", "--r34-allow-missing"],
        {"CXX": NO_COMPILER},
        SKIP,
        f"inductor needs a C++ compiler ({NO_COMPILER}",
    ),
    pytest.param(
        "absent device in the default matrix (nothing named)",
        [],
        [],
        {},
        SKIP,
        "{reason}",
        marks=pytest.mark.slow,  # both front doors run the CPU targets here
    ),
]


suite = test_plugin.suite  # the plugin tests' pytester fixture (the repository's plugin, real weights)


def _fill(text: str) -> str:
    return text.format(absent=ABSENT, reason=f"{(ABSENT or '').upper()}: {probe(ABSENT).reason}" if ABSENT else "")


def _compare(capsys, argv: list[str], report: Path) -> tuple[str, str]:
    """``compare``'s outcome on ``argv`` and its output (stdout and stderr)."""
    try:
        code = main(["compare", *argv, "--image", ONE_IMAGE, "--iters", "0", "--output", str(report)])
    except SystemExit as exc:  # argparse refuses a bad value itself
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code == 2:
        return USAGE, err
    if code == 1:
        return FAILURE, out
    assert code == 0, (code, out, err)
    skipped = [t for t in json.loads(report.read_text())["targets"] if t["verdict"] == "skipped"]
    return (SKIP if skipped else "pass"), out


def _pytest(suite, argv: list[str]) -> tuple[str, str]:
    """pytest's outcome on ``argv`` (the batch-1 verdict tests only) and its output."""
    result = suite.runpytest_inprocess(
        "--r34-iters=0", f"--r34-images={ONE_IMAGE}", "-k", "test_verdict and batch1", "-rs", *argv
    )
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stderr.str()
    if result.ret == pytest.ExitCode.USAGE_ERROR:
        return USAGE, text
    outcomes = result.parseoutcomes()
    if result.ret == pytest.ExitCode.TESTS_FAILED and (outcomes.get("errors") or outcomes.get("failed")):
        return FAILURE, text
    assert result.ret == pytest.ExitCode.OK, text
    return (SKIP if outcomes.get("skipped") else "pass"), text


@pytest.mark.slow  # real runs or a pytest run in-process: CI runs -m slow
@pytest.mark.slow  # real runs or a pytest run in-process: CI runs -m slow
@pytest.mark.skipif(ABSENT is None, reason="every accelerator kind is available here")
@pytest.mark.parametrize(
    "case, compare_args, pytest_args, env, outcome, words", ROWS, ids=[getattr(r, "values", r)[0] for r in ROWS]
)
def test_compare_and_pytest_agree_on_every_row_of_the_table(
    suite, capsys, monkeypatch, tmp_path, case, compare_args, pytest_args, env, outcome, words
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    words = _fill(words)
    got_compare, compare_text = _compare(capsys, [_fill(a) for a in compare_args], tmp_path / "r.json")
    got_pytest, pytest_text = _pytest(suite, [_fill(a) for a in pytest_args])
    assert (got_compare, got_pytest) == (outcome, outcome), (compare_text, pytest_text)
    assert words in compare_text and words in pytest_text


@pytest.mark.skipif(ABSENT is None, reason="every accelerator kind is available here")
def test_a_named_target_selected_by_node_id_or_k_fails_and_the_default_skips(suite):
    """Named by ``-k`` (its kind) fails; selected only by a marker it skips, and the run fails
    anyway because no conformance case ran, unless --r34-allow-missing."""
    base = ("--r34-iters=0", f"--r34-images={ONE_IMAGE}", "--r34-report=none")
    by_k = suite.runpytest_inprocess(*base, "-k", f"test_verdict and batch1 and {ABSENT}")
    assert by_k.ret == pytest.ExitCode.TESTS_FAILED and by_k.parseoutcomes()["errors"] == 1
    by_k.stdout.fnmatch_lines([f"*{ABSENT.upper()}: *named target '{ABSENT}:0/fp32'*"])
    by_id = suite.runpytest_inprocess(*base, f"test_conformance.py::test_verdict[{ABSENT}:0/fp32-cat.jpg-batch1]")
    assert by_id.ret == pytest.ExitCode.TESTS_FAILED and by_id.parseoutcomes()["errors"] == 1
    by_marker = suite.runpytest_inprocess(*base, "-m", ABSENT, "-k", "test_verdict and batch1", "-ra")
    outcomes = by_marker.parseoutcomes()
    assert by_marker.ret == pytest.ExitCode.TESTS_FAILED and outcomes["skipped"] >= 1 and "errors" not in outcomes
    last = by_marker.stdout.lines[-1]  # the reason is the last line, below the skips and the counts
    assert last.startswith("resnet34-npu: conformance tests were selected but no conformance case ran"), last
    above = "\n".join(by_marker.stdout.lines[:-1])
    assert "SKIPPED" in above and "no conformance case ran" not in above
    allowed = suite.runpytest_inprocess(*base, "-m", ABSENT, "-k", "test_verdict and batch1", "--r34-allow-missing")
    assert allowed.ret == pytest.ExitCode.OK and "no conformance case ran" not in allowed.stdout.str()
    listed = suite.runpytest_inprocess(*base, "-m", ABSENT, "--collect-only")  # nothing is meant to run
    assert listed.ret == pytest.ExitCode.OK and "no conformance case ran" not in listed.stdout.str()


def test_backend_unavailable_outside_an_engine_build_is_an_error(suite):
    """Only the suite's engine build turns BackendUnavailable into a skip; raised in a test's own
    code it is a failure with its traceback (a bug, not a host without a backend)."""
    suite.makepyfile(
        test_stray="""
        from resnet34_npu.targets.engines import BackendUnavailable

        def test_stray(r34):
            raise BackendUnavailable("no such backend in this test")
        """
    )
    result = suite.runpytest_inprocess("test_stray.py", "--r34-report=none")
    assert result.ret == pytest.ExitCode.TESTS_FAILED and result.parseoutcomes()["failed"] == 1
    result.stdout.fnmatch_lines(["*raise BackendUnavailable*", "E * no such backend in this test"])
