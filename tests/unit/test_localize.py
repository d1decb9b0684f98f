from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet34_npu.compare import Session
from resnet34_npu.constants import DEFAULT_IMAGE
from resnet34_npu.localize import NO_MODULE, STAGES, find_stages
from resnet34_npu.model import resnet34

REPO = Path(__file__).resolve().parents[2]


def test_stages_are_resnet34s_named_modules_in_order():
    with torch.device("meta"):
        names = dict(resnet34().named_modules())
    assert all(stage in names for stage in STAGES)
    assert STAGES[:4] == ("conv1", "bn1", "relu", "maxpool") and STAGES[-2:] == ("avgpool", "fc")
    assert len([s for s in STAGES if s.count(".") == 1]) == 16  # 3 + 4 + 6 + 3 BasicBlocks
    assert "layer2.0.downsample.0" in STAGES and "layer1.0.downsample.0" not in STAGES


def test_stage_names_match_by_suffix():
    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            with torch.device("meta"):
                self.model = resnet34()

    wrapper = Wrapper()
    found = find_stages(wrapper)
    assert set(found) == set(STAGES)
    assert found["layer2.1.bn1"] is wrapper.model.layer2[1].bn1
    assert found["relu"] is wrapper.model.relu and found["conv1"] is wrapper.model.conv1
    assert find_stages(torch.nn.Linear(2, 2)) == {}


@pytest.fixture(scope="module")
def session():
    return Session("seeded", "cpu")


def test_healthy_target_has_no_failing_stage(session):
    localization = session.localize(session.runner("cpu/channels_last"), [DEFAULT_IMAGE])
    assert localization.available and localization.first_failing is None
    assert [s.name for s in localization.stages] == list(STAGES)
    assert max(s.rel_l2_error for s in localization.stages) < 1e-5


def test_a_callable_without_a_module_says_so(session):
    runner = session.runner("examples.custom_target:torchscript_frozen")
    localization = session.localize(runner, [DEFAULT_IMAGE])
    assert not localization.available and localization.note == NO_MODULE
    assert localization.line() == f"localization: {NO_MODULE}"


def _cli(*argv, block_matplotlib=False):
    code = "import sys\n"
    if block_matplotlib:
        code += "sys.modules['matplotlib'] = None\n"
    code += "from resnet34_npu.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


def test_localize_command_table_and_png(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "stages.png"
    result = _cli("localize", "--target", "resnet34_npu.faults:residual_dropped", "--png", str(png))
    assert result.returncode == 1, result.stderr
    assert "first diverging stage: layer2.1:" in result.stdout
    assert [line.split()[0] for line in result.stdout.splitlines()[2:2 + len(STAGES)]] == list(STAGES)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_localize_without_matplotlib_is_one_clear_line(tmp_path):
    result = _cli("localize", "--target", "cpu", "--png", str(tmp_path / "x.png"), block_matplotlib=True)
    assert result.returncode == 2 and not (tmp_path / "x.png").exists()
    assert result.stderr.strip().splitlines()[-1] == (
        f"resnet34-npu localize: error: chart '{tmp_path / 'x.png'}': matplotlib is not installed (pip install matplotlib)"
    )


def test_localize_a_module_less_target_is_exit_2():
    result = _cli("localize", "--target", "examples.custom_target:torchscript_frozen")
    assert result.returncode == 2 and "localization needs a module" in result.stderr
