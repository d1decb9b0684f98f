"""A hung card and a crashed card on the emulated Ascend host, through both doors, as a fleet
engineer meets them: ``pytest --r34-require=npu`` (crash isolation on by default there: the tests
run in a pytest-xdist worker replaced when it dies) and ``compare`` (each card in a process of its
own). The run ends, exits 1, names the hung card and the crashed one (JUnit, the report, the last
lines), and the healthy card keeps its verdict. Marked ``slow``: each run imports torch and builds
targets in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from resnet34_npu.targets.emulation import wheel

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.subprocess]
FAULTS = "1:hang,2:crash"


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    if wheel.version_at(wheel.site()) != wheel.MODELLED:
        pytest.skip(f"the real torch_npu is not fetched here: {wheel.FETCH}")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("R34_", "PYTEST_XDIST"))},
        "R34_EMULATE_ASCEND": "Ascend910B3:3",
        "R34_EMULATED_FAULTS": FAULTS,
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)


def _card_failures(report: Path) -> dict[str, str]:
    """card -> the kind of its failure, over the report's targets; healthy cards' verdicts."""
    doc = json.loads(report.read_text())
    cards = [t for t in doc["targets"] if t["name"].startswith("npu")]
    kinds = {t["name"].partition("/")[0]: (t.get("card_failure") or {}).get("kind") for t in cards}
    verdicts = {t["name"].partition("/")[0]: t["verdict"] for t in cards}
    return {"kinds": kinds, "verdicts": verdicts, "verdict": doc["verdict"]}


def test_pytest_names_the_hung_and_the_crashed_card_and_goes_on(tmp_path):
    junit, report = tmp_path / "junit.xml", tmp_path / "acceptance.json"
    done = _run(
        ["-m", "pytest", "tests/conformance/test_conformance.py", "-k", "test_verdict and (fp32-cat and batch1)"]
        + ["--r34-require=npu", "--r34-deadline=3", "-p", "no:cacheprovider", "-q", "-rfs"]
        + [f"--junitxml={junit}", f"--r34-report={report}", "--r34-target=npu:0", "--r34-target=npu:1"]
        + ["--r34-target=npu:2"]
    )
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    assert "node down" in done.stdout  # the worker that crashed was replaced (isolation is on by default here)
    failing = {
        c.get("name"): (c.find("failure").get("message") or "")
        for c in ET.parse(junit).getroot().iter("testcase")
        if c.find("failure") is not None
    }
    hung, crashed = (f"test_verdict[npu:{k}/fp32-cat.jpg-batch1]" for k in (1, 2))
    assert set(failing) == {hung, crashed}, failing
    assert "npu:1 (npu:1/fp32) hung: no answer to" in failing[hung]
    assert "npu:2 (npu:2/fp32) crashed: its process was killed by SIGSEGV" in failing[crashed]
    found = _card_failures(report)
    assert found["kinds"] == {"npu:0": None, "npu:1": "hung", "npu:2": "crashed"}, found
    assert found["verdicts"]["npu:0"] == "pass" and found["verdict"] == "fail"
    tail = "\n".join(done.stdout.splitlines()[-30:])
    assert "npu:1 (npu:1/fp32) hung" in tail and "npu:2 (npu:2/fp32) crashed" in tail


def test_compare_names_the_hung_and_the_crashed_card_and_goes_on(tmp_path):
    report = tmp_path / "r.json"
    done = _run(
        ["-m", "resnet34_npu", "compare", "--target", "npu:0", "npu:1", "npu:2", "--deadline", "3", "--iters", "2"]
        + ["--image", str(REPO / "fixtures" / "images" / "cat.jpg"), "--output", str(report)]
    )
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    found = _card_failures(report)
    assert found["kinds"] == {"npu:0": None, "npu:1": "hung", "npu:2": "crashed"}, found
    assert found["verdicts"]["npu:0"] == "pass"
    assert "npu:1 (npu:1/fp32) hung" in done.stdout and "npu:2 (npu:2/fp32) crashed" in done.stdout
