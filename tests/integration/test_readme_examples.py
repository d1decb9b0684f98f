"""The README's custom-target example runs as written, from the CLI and from pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = "python -m resnet34_npu compare --target examples.custom_target:torchscript_frozen"
PYTEST = "pytest tests/conformance --r34-target=examples.custom_target:torchscript_frozen"


def _run(command: str, *extra: str, tmp: Path) -> subprocess.CompletedProcess:
    argv = command.split()
    argv[0] = sys.executable if argv[0] == "python" else argv[0]
    if argv[0] == "pytest":
        argv = [sys.executable, "-m", "pytest", *argv[1:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("R34_")}
    return subprocess.run([*argv, *extra], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def test_readme_shows_these_commands():
    readme = (REPO / "README.md").read_text()
    assert CLI in readme and PYTEST in readme


def test_cli_example(tmp_path):
    result = _run(CLI, "--iters", "2", "--output", str(tmp_path / "r.json"), tmp=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [t["name"] for t in doc["targets"]] == ["example:torchscript-frozen"]


def test_pytest_example(tmp_path):
    result = _run(PYTEST, "-q", "-p", "no:cacheprovider", f"--r34-report={tmp_path / 'a.json'}", "-k", "not golden", tmp=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "example:torchscript-frozen" in result.stdout or "examples.custom_target:torchscript_frozen" in result.stdout
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["verdict"] == "pass" and doc["targets"][0]["images"]
