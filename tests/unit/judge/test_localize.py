from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from resnet34_npu.cli.main import main
from resnet34_npu.core.constants import DEFAULT_IMAGE
from resnet34_npu.judge.compare import Session
from resnet34_npu.judge.localize import NO_MODULE, STAGES, find_stages
from resnet34_npu.model.network import resnet34

REPO = Path(__file__).resolve().parents[3]


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


@pytest.mark.slow
def test_healthy_target_has_no_failing_stage(session):
    localization = session.localize(session.runner("cpu/channels_last"), [DEFAULT_IMAGE])
    assert localization.available and localization.first_failing is None
    assert [s.name for s in localization.stages] == list(STAGES)
    assert max(s.rel_l2_error for s in localization.stages) < 1e-5


@pytest.mark.slow
def test_a_callable_without_a_module_says_so(session):
    runner = session.runner("examples.custom_target:torchscript_frozen")
    localization = session.localize(runner, [DEFAULT_IMAGE])
    assert not localization.available and localization.note == NO_MODULE
    assert localization.line() == f"localization: {NO_MODULE}"


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_localize_command_table_and_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "stages.png"
    code, out, err = _cli(capsys, "localize", "--target", "resnet34_npu.faults:residual_dropped", "--png", str(png))
    assert code == 1, err
    assert "first diverging stage: layer2.1:" in out
    assert [line.split()[0] for line in out.splitlines()[2 : 2 + len(STAGES)]] == list(STAGES)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_localize_without_matplotlib_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` meets where it is not installed
    code, _, err = _cli(capsys, "localize", "--target", "cpu", "--png", str(tmp_path / "x.png"))
    assert code == 2 and not (tmp_path / "x.png").exists()
    assert err.strip().splitlines() == [
        f"resnet34-npu localize: error: chart '{tmp_path / 'x.png'}': "
        "matplotlib is not installed (pip install matplotlib)"
    ]


@pytest.mark.slow
def test_localize_a_module_less_target_is_exit_2(capsys):
    code, _, err = _cli(capsys, "localize", "--target", "examples.custom_target:torchscript_frozen")
    assert code == 2 and "localization needs a module" in err
