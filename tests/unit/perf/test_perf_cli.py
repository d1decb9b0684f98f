"""``perf`` in process: its report (schema-valid, a ``loadgen`` object per target), bad input
(one line, exit 2), LoadGen missing, and Ctrl-C (exit 130, the report says interrupted)."""

from __future__ import annotations

import json
import sys

import pytest

from resnet34_npu.cli import main as cli
from resnet34_npu.core import schemas
from resnet34_npu.perf import INSTALL_HINT

FAST = "tests.unit.perf.fast_targets:fast"


def run(capsys, *argv):
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors: one line, exit 2 (cli.args.Parser)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--scenario", "Batch"], "Unknown scenario 'Batch'. Choose one of: SingleStream"),
        (["--scenario", "Offline", "--duration", "0"], "'0' must be a positive, finite number of seconds"),
        (["--scenario", "Offline", "--duration", "-1"], "'-1' must be a positive, finite number of seconds"),
        (["--scenario", "Server", "--target-qps", "0"], "'0' must be a positive, finite number of queries a second"),
        (["--scenario", "Server", "--latency-bound", "-5"], "'-5' must be a positive, finite number of milliseconds"),
        (["--scenario", "Offline", "--target-qps", "5"], "--target-qps is a Server setting"),
        (["--scenario", "SingleStream", "--every-card"], "--every-card: SingleStream runs one query at a time"),
        (["--scenario", "Offline", "--target", "npx/fp32"], "Unknown device 'npx'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, says):
    code, out, err = run(capsys, "perf", *argv, "--output", str(tmp_path / "p.json"))
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.json").exists()  # nothing half-written


def test_a_dataset_without_images_is_one_line(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "perf", "--scenario", "Offline", "--dataset", str(tmp_path / "empty"))
    assert code == 2 and "holds no image files" in err and len(err.strip().splitlines()) == 1


def test_loadgen_missing_says_how_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)
    code, _, err = run(capsys, "perf", "--scenario", "Offline", "--output", str(tmp_path / "p.json"))
    assert code == 2 and INSTALL_HINT in err and len(err.strip().splitlines()) == 1


def test_report_is_schema_valid_with_a_loadgen_object_and_logs_beside_it(capsys, tmp_path):
    pytest.importorskip("mlperf_loadgen")
    out_path = tmp_path / "perf.json"
    argv = ["--scenario", "SingleStream", "--target", FAST, "--duration", "0.3", "--no-accuracy"]
    code, out, _ = run(capsys, "perf", *argv, "--output", str(out_path))
    doc = json.loads(out_path.read_text())
    schemas.validate(doc, "compare-report", source=out_path)
    lg = doc["targets"][0]["loadgen"]
    assert code == 0 and doc["verdict"] == "pass" and lg["valid"] and lg["early_stopping"]["estimate_ms"] > 0
    assert lg["compliance"]["TEST01"]["passed"] and "p90" in lg["percentiles_ms"]
    assert (tmp_path / "perf.loadgen" / "fast" / "SingleStream" / "performance" / "mlperf_log_summary.txt").exists()
    assert "SingleStream fast: VALID; early-stopping p90 latency" in out
    broken = json.loads(json.dumps(doc))
    del broken["targets"][0]["loadgen"]["valid"]  # the schema notices a loadgen object without its validity
    assert "lacks the key 'valid'" in schemas.problem(broken, "compare-report")


#: The interrupted perf run, in a process of its own: LoadGen's native threads, stopped mid-run,
#: must not take the test session down at its exit (the entry point ends such a run with os._exit).
CTRL_C = """
import _thread, os, sys, threading
from resnet34_npu.cli import launch
from resnet34_npu.perf import run as perf_run
real = perf_run.start_test
def start_test(lg, sut, qsl, settings, folder, *, abort):
    if folder.name == "performance":  # Ctrl-C half a second into the performance run
        threading.Timer(0.5, _thread.interrupt_main).start()
    return real(lg, sut, qsl, settings, folder, abort=abort)
perf_run.start_test = start_test
sys.exit(launch.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_ctrl_c_is_exit_130_and_the_report_says_interrupted(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    pytest.importorskip("mlperf_loadgen")
    out_path = tmp_path / "perf.json"
    argv = ["perf", "--scenario", "SingleStream", "--target", FAST, "--duration", "30", "--no-accuracy"]
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C, *argv, "--output", str(out_path)],
        capture_output=True,
        text=True,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        timeout=300,
    )
    doc = json.loads(out_path.read_text())
    schemas.validate(doc, "compare-report", source=out_path)
    assert done.returncode == 130, done.stdout[-2000:] + done.stderr[-2000:]
    assert doc["verdict"] == "interrupted" and doc["interrupted"] is True
    assert doc["targets"][0]["loadgen"]["interrupted"] is True and "verdict: INTERRUPTED" in done.stdout
