"""Ctrl-C (SIGINT) and SIGTERM pressed during a pytest ``--r34-burn-in=60`` on the CPU target, in a
real pytest process: it ends promptly, and its acceptance report, valid per its schema, marks the
burn-in ``interrupted`` with the iterations it had."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from resnet34_npu.core import schemas
from tests.unit.suite import test_plugin

REPO = Path(__file__).resolve().parents[3]
CAT = str(REPO / "fixtures" / "images" / "cat.jpg")
BURN_IN_S = 60
#: the line the burn-in prints on stderr (no terminal) as its cards start
STARTED = "burn-in: started"

suite = test_plugin.suite  # the plugin tests' pytester fixture (the repository's plugin, real weights)


def interrupted_run(pytester: pytest.Pytester, signum: int) -> tuple[int, float, str, dict]:
    """Start pytest with a 60 s burn-in, wait for the burn-in's start line, let it run a few
    iterations, send ``signum``; the exit code, the seconds from the signal to the exit, the
    output and the report."""
    args = [sys.executable, "-m", "pytest", "--r34-target=cpu", f"--r34-images={CAT}", "--r34-iters=0"]
    args += ["-k", "test_verdict and batch1", f"--r34-burn-in={BURN_IN_S}", "--r34-report=r.json", "-p", "no:randomly"]
    proc = subprocess.Popen(
        args, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if STARTED in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not started.wait(timeout=300):  # the model's start and the verdict test come first
            pytest.fail("the burn-in never started:\n" + "".join(lines))
        time.sleep(5.0)  # some ~0.1 s forward passes into the burn-in, on a loaded 2-core host too
        sent = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(timeout=BURN_IN_S)  # raises (and fails) if it only ends with the burn-in
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    report = pytester.path / "r.json"
    assert report.is_file(), "".join(lines)
    return code, took, "".join(lines), json.loads(report.read_text())


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_the_pytest_burn_in_ends_it_promptly_with_an_interrupted_report(suite, signum):
    code, took, output, doc = interrupted_run(suite, signum)
    assert code == pytest.ExitCode.INTERRUPTED, output
    assert took < 30, f"{took:.1f} s from the signal to the exit, of a 60 s burn-in"
    schemas.validate(doc, "acceptance-report", source="r.json")
    burned = doc["burn_in"]
    assert burned["status"] == "interrupted" and doc["interrupted"] is True and doc["verdict"] == "interrupted"
    assert burned["seconds"] == BURN_IN_S and 0 < burned["elapsed_s"] < BURN_IN_S - 10, burned
    assert [c["card"] for c in burned["cards"]] == ["cpu/fp32"]
    assert burned["cards"][0]["iterations"] >= 1, burned  # what it had when the signal came
    assert "burn-in: interrupted after" in output, output
