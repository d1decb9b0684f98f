"""Broken Ascend installs met with the real wheels (each installed ``--no-deps`` into a folder of
its own under the cache, never into this environment, and put on ``PYTHONPATH``):

- a torch_npu built for another torch (torch-npu 2.13.0 beside torch 2.14): the release pair and
  its fix, besides CANN's;
- ``onnxruntime-cann`` 1.24.4 (built against NumPy 1) under NumPy 2: it does not import, said in
  one line with the fix, no NumPy page and traceback on stderr;
- the same wheel under NumPy 1 on the emulated host: the CANN provider's library does not load
  (``libascendcl.so``), and that cause is in the target's verdict, with no metrics and no top-1.

CANN's own "torch_npu missing CANN" cases are in ``test_broken_torch_npu.py``. Marked ``slow``
(subprocesses that import torch); skipped with the reason where the package index cannot be reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnet34_npu.core.errors import InputError
from resnet34_npu.targets.emulation import wheel

REPO = Path(__file__).resolve().parents[2]
CAT = REPO / "fixtures" / "images" / "cat.jpg"
pytestmark = [pytest.mark.npu_install, pytest.mark.subprocess, pytest.mark.slow]


def _apart(*requirements: str) -> Path:
    name = "+".join(r.replace("==", "-") for r in requirements)
    folder = wheel.cache_root() / "broken-installs" / name
    if (folder / ".complete").exists():
        return folder
    try:
        wheel.install_apart(list(requirements), folder)
    except InputError as exc:
        pytest.skip(f"{' '.join(requirements)} is not available here: {exc}")
    (folder / ".complete").write_text("")
    return folder


def _run(*argv: str, path: list[Path], emulate: str | None = None) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TORCH_DEVICE_BACKEND_AUTOLOAD", "R34_EMULATE_ASCEND", "R34_EMULATED_FAULTS")
    }
    env["PYTHONPATH"] = os.pathsep.join(map(str, [*path, REPO]))
    if emulate:
        env["R34_EMULATE_ASCEND"] = emulate
        env["R34_TORCH_NPU_SITE"] = str(wheel.fetch())
    return subprocess.run(
        [sys.executable, "-m", "resnet34_npu", *argv], capture_output=True, text=True, cwd=REPO, env=env, timeout=600
    )


def test_a_torch_npu_built_for_another_torch_names_the_pair_to_install(tmp_path):
    site = _apart("torch-npu==2.13.0")
    devices = _run("devices", path=[site])
    assert devices.returncode == 0, devices.stderr
    npu = next(line for line in devices.stdout.splitlines() if line.startswith("npu"))
    assert "not available" in npu and "torch_npu 2.13.0 installed; built for torch 2.13.*" in npu, npu
    assert "install the matching pair, pip install 'torch==2.13.*' or the torch-npu release for torch" in npu
    assert "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in npu  # no CANN here either: both fixes
    # a named target fails with that line (exit 1); the report names the release that did not import
    report = tmp_path / "r.json"
    named = _run(
        "compare", "--target", "npu/fp32", "--image", str(CAT), "--iters", "0", "--output", str(report), path=[site]
    )
    assert named.returncode == 1 and "Traceback" not in named.stderr, named.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["machine"]["torch_npu"] == "2.13.0"
    (target,) = data["targets"]
    assert target["verdict"] == "fail" and "built for torch 2.13.*" in target["skipped"]


def test_onnxruntime_cann_under_numpy_2_is_one_line_with_the_fix(tmp_path):
    site = _apart("onnxruntime-cann==1.24.4")
    report = tmp_path / "r.json"
    argv = ("compare", "--target", "npu/fp32/ort", "--image", str(CAT), "--iters", "0", "--output", str(report))
    result = _run(*argv, path=[site], emulate="Ascend910B3:1")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "_ARRAY_API" not in result.stderr, result.stderr[-3000:]
    (target,) = json.loads(report.read_text())["targets"]
    reason = target["skipped"]
    assert "onnxruntime-cann 1.24.4 is installed but does not import" in reason, reason
    assert "built against NumPy 1" in reason and "pip install 'numpy<2'" in reason
    assert f"FAIL npu/fp32/ort: not run: {reason}" in result.stdout


def test_a_cann_provider_that_does_not_load_gives_its_cause_in_the_verdict(tmp_path):
    site = _apart("onnxruntime-cann==1.24.4", "numpy==1.26.4")
    report = tmp_path / "r.json"
    argv = ("compare", "--target", "npu/fp32/ort", "--image", str(CAT), "--iters", "0", "--output", str(report))
    result = _run(*argv, path=[site], emulate="Ascend910B3:1")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    (target,) = json.loads(report.read_text())["targets"]
    (case,) = target["images"]
    (failure,) = case["failures"]
    assert "a fallback to the CPU, which would certify the wrong device" in failure, failure
    assert "the provider did not load: libascendcl.so" in failure
    # it did not run: no metrics, no target top-1, and the table shows none
    assert case["metrics"] == {} and case["error"] and "target_top5" not in case["samples"][0]
    row = next(line for line in result.stdout.splitlines() if line.startswith("npu/fp32/ort "))
    assert row.split()[3:5] == ["[134]", "crane"] and row.split()[6:] == ["-"] * 8, row
