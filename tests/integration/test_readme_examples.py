"""The README's custom-target example runs as written, from the CLI and from pytest, in
process (the entry point itself is tested once, as a subprocess, in test_cli.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from resnet34_npu.cli import main as cli

REPO = Path(__file__).resolve().parents[2]
CLI = "python -m resnet34_npu compare --target examples.custom_target:torchscript_frozen"
PYTEST = "pytest tests/conformance --r34-target=examples.custom_target:torchscript_frozen"


def test_readme_shows_these_commands():
    readme = (REPO / "README.md").read_text()
    assert CLI in readme and PYTEST in readme


@pytest.mark.slow
def test_cli_example(tmp_path, capsys):
    argv = shlex.split(CLI)
    assert argv[:3] == ["python", "-m", "resnet34_npu"]
    code = cli.main([*argv[3:], "--iters", "2", "--output", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [t["name"] for t in doc["targets"]] == ["example:torchscript-frozen"]


@pytest.mark.slow
def test_pytest_example(pytester, monkeypatch, tmp_path):
    argv = shlex.split(PYTEST)
    assert argv[0] == "pytest"
    for name in [k for k in __import__("os").environ if k.startswith("R34_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(REPO)  # the README runs it from the checkout
    report = tmp_path / "a.json"
    result = pytester.runpytest_inprocess(
        *argv[1:],
        "-p",
        "no:cacheprovider",
        f"--rootdir={REPO}",
        "-c",
        str(REPO / "pytest.ini"),
        f"--r34-report={report}",
        "--r34-iters=0",
        "-k",
        "not golden",
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert (
        "example:torchscript-frozen" in result.stdout.str()
        or "examples.custom_target:torchscript_frozen" in result.stdout.str()
    )
    doc = json.loads(report.read_text())
    assert doc["verdict"] == "pass" and doc["targets"][0]["images"]


@pytest.mark.slow
def test_python_api_example(monkeypatch, capsys):
    """The README's Python API block runs as written, from the checkout."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(REPO)
    exec(compile(block, "README.md (Python API)", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("pass ") and float(out.split()[1]) < 1e-5
