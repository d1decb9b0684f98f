"""Start-up: help pages import none of the heavy libraries. torch alone takes 1.5-3 s to import on
a 2-core host; ``--help`` and ``pytest --help`` are answered without it (measured with
``python -X importtime``), and the library imports it on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import resnet34_npu

ROOT = Path(__file__).resolve().parents[2]
#: Libraries that only some commands and hooks need; none of them is imported to print help.
HEAVY = frozenset(
    {"torch", "torchvision", "onnx", "onnxruntime", "scipy", "ruptures", "jinja2", "jsonschema", "matplotlib", "PIL"}
)


def imported(*args: str, cwd: Path = ROOT) -> set[str]:
    """The top-level packages ``python -X importtime ARGS`` imports (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split("|")[-1] for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {line.strip().split(".")[0] for line in lines[1:]}  # the first line is the header


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("-m", "resnet34_npu", "--help"),
        ("-m", "resnet34_npu", "compare", "--help"),
        ("-m", "resnet34_npu", "--version"),
    ],
    ids=["help", "compare-help", "version"],
)
def test_help_imports_no_heavy_library(args):
    modules = imported(*args)
    assert "resnet34_npu" in modules  # the command really ran
    assert not modules & HEAVY, f"{' '.join(args)} imports {sorted(modules & HEAVY)}"


@pytest.mark.slow
def test_pytest_help_imports_no_heavy_library_beyond_other_plugins(tmp_path):
    """The suite's plugin and conftests add none of the heavy libraries to what the other
    installed plugins import anyway (pytest-html imports jinja2) for ``pytest --help``."""
    others = imported("-m", "pytest", "--help", "-p", "no:cacheprovider", cwd=tmp_path)
    modules = imported("-m", "pytest", "--help")
    assert "resnet34_npu" in modules and "resnet34_npu" not in others
    assert not (modules - others) & HEAVY, f"pytest --help imports {sorted((modules - others) & HEAVY)}"


def test_the_api_is_imported_on_first_use():
    """The names that need torch come on first use, as the same objects as their modules'."""
    from resnet34_npu.judge.criteria import judge
    from resnet34_npu.model.network import build_model
    from resnet34_npu.targets.spec import parse_target

    assert resnet34_npu.build_model is build_model
    assert resnet34_npu.parse_target is parse_target
    assert resnet34_npu.judge is judge  # the function, not the subpackage of the same name
    assert set(resnet34_npu.__all__) <= set(dir(resnet34_npu)) | set(resnet34_npu._LAZY)
    assert resnet34_npu.import_error() is None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        resnet34_npu.nope  # noqa: B018
