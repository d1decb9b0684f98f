"""The README's custom-target example runs as written, from the CLI and from pytest, in
process (the entry point itself is tested once, as a subprocess, in test_cli.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from resnet34_npu.cli import main as cli
from resnet34_npu.suite import options
from resnet34_npu.targets.spec import parse_target

REPO = Path(__file__).resolve().parents[2]


def readme_commands() -> tuple[list[str], list[str]]:
    """The README's custom-target commands, the bash block it says "a test runs": the
    ``python -m resnet34_npu ...`` line and the ``pytest ...`` line, split as a shell does."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("### Custom targets", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    cli_line, pytest_line = [shlex.split(line) for line in block.splitlines() if line.strip()]
    assert cli_line[:3] == ["python", "-m", "resnet34_npu"] and pytest_line[0] == "pytest", block
    return cli_line[3:], pytest_line[1:]


def test_readme_commands_are_accepted_by_the_real_parsers():
    """Every option the README's commands use exists, with a value its parser accepts."""
    cli_argv, pytest_argv = readme_commands()
    args = cli.build_parser().parse_args(cli_argv)  # argparse exits 2 on an unknown option
    assert args.command == "compare" and args.target
    for spec in args.target:
        parse_target(spec)
    flags = {option.flag: option for option in options.OPTIONS}
    for arg in (a for a in pytest_argv if a.startswith("-")):
        flag, _, value = arg.partition("=")
        assert flag in flags, f"the README's pytest command uses {flag}, which the plugin does not declare"
        flags[flag].parse(value)
    assert [a for a in pytest_argv if not a.startswith("-")] == ["tests/conformance"]
    assert (REPO / "tests" / "conformance").is_dir()


@pytest.mark.slow
def test_cli_example(tmp_path, capsys):
    code = cli.main([*readme_commands()[0], "--iters", "2", "--output", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [t["name"] for t in doc["targets"]] == ["example:torchscript-frozen"]


@pytest.mark.slow
def test_pytest_example(pytester, monkeypatch, tmp_path):
    argv = readme_commands()[1]
    for name in [k for k in __import__("os").environ if k.startswith("R34_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(REPO)  # the README runs it from the checkout
    report = tmp_path / "a.json"
    result = pytester.runpytest_inprocess(
        *argv,
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
