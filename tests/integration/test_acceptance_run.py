"""The acceptance command as an Ascend engineer types it (``pytest --r34-require=npu`` in the
repository), on the emulated 8-card host through the real torch_npu Python layer, with two faulty
cards: a precision fault on npu:3 and a card 1 ulp off on npu:5 (it passes against the CPU; only
card-to-card sees it). It must exit 1 and fail exactly those cards' cases in JUnit, name them in the
console's last lines and in the acceptance report, and give every other card its healthy verdict,
plain and with ``-n 2``. The healthy run (exit 0) is ``.ci/run``'s. Marked ``slow``: it runs the whole
conformance suite."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from resnet34_npu.targets.emulation import wheel

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def failing_cases(junit: Path) -> list[str]:
    """The names (``file::test[params]``) of the failing or erroring test cases of a JUnit file."""
    cases = ET.parse(junit).getroot().iter("testcase")
    return [
        f"{c.get('classname')}::{c.get('name')}"
        for c in cases
        if c.find("failure") is not None or c.find("error") is not None
    ]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_the_acceptance_command_fails_exactly_the_faulty_cards(tmp_path, workers):
    if wheel.version_at(wheel.site()) != wheel.MODELLED:
        pytest.skip(f"the real torch_npu is not fetched here: {wheel.FETCH}")
    junit, report = tmp_path / "junit.xml", tmp_path / "acceptance.json"
    env = {
        **os.environ,
        "R34_EMULATE_ASCEND": "Ascend910B3:8",
        "R34_EMULATED_FAULTS": "3,5:ulp",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--r34-require=npu",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={junit}",
            f"--r34-report={report}",
            *workers,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=1800,
    )
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    failing = failing_cases(junit)
    cards = {m for name in failing for m in re.findall(r"npu:\d", name)}
    assert cards == {"npu:3", "npu:5"}, failing
    assert all(re.search(r"\[npu:[35]/", name) for name in failing), failing
    assert any("test_card_to_card[npu:5" in name for name in failing)  # the silent fault, as a failing case
    tail = "\n".join(done.stdout.splitlines()[-60:])
    assert "npu:3" in tail and "npu:5" in tail
    doc = json.loads(report.read_text())
    assert doc["machine"]["emulated"]["cards"] == 8 and doc["verdict"] == "fail"
    failed = {t["name"] for t in doc["targets"] if t["verdict"] == "fail"}
    assert {n.split("/")[0] for n in failed} == {"npu:3", "npu:5"}, failed
    # each card is timed on its own clock: identical healthy cards read the same median, whatever
    # ran before them (npu:3's localisation included), the host's load or the worker they ran in
    medians: dict[str, set[float]] = {}
    for t in doc["targets"]:
        if t["verdict"] == "pass" and t["name"].startswith("npu:") and t.get("latency_ms"):
            medians.setdefault(t["name"].partition("/")[2], set()).add(t["latency_ms"]["median"])
    assert medians and all(len(m) == 1 for m in medians.values()), medians


def test_an_acceptance_run_leaves_the_self_tests_out_and_says_so():
    """--r34-require (an acceptance run) collects the conformance suite, not the suite's own tests."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--r34-require=cpu"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=600,
    )
    ids = [line for line in done.stdout.splitlines() if "::" in line]  # (nothing ran: not a pass, whatever its code)
    assert ids and all(i.startswith(("tests/conformance/", "tests/controls/", "tests/ops/")) for i in ids)
    assert re.search(r"acceptance run \(--r34-require\): the suite's \d+ self-tests were left out", done.stdout)
    selected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--r34-require=cpu"]
        + ["-m", "selftest", "tests/unit/model"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=600,
    )
    assert any(line.startswith("tests/unit/model/") for line in selected.stdout.splitlines())
