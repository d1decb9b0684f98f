"""The msprobe dump writer and its reader on small fake stages (no forward pass: milliseconds).
tests/integration/test_msprobe.py runs the real msprobe on real dumps."""

from __future__ import annotations

import json

import pytest
import torch

from resnet34_npu.cli.main import main
from resnet34_npu.core.errors import InputError
from resnet34_npu.reports.msprobe_dump import (
    DATA_DIR,
    STEP_RANK,
    TENSOR_FIELDS,
    StageTensors,
    capture_stages,
    check_dump_dir,
    read_dump,
    summary_lines,
    write_dumps,
)


def _stages(offset: float = 0.0) -> dict[str, StageTensors]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 4, 4, generator=gen)
    conv = torch.randn(1, 2, 4, 4, generator=gen) + offset
    return {
        "conv1": StageTensors("Conv2d", (x,), conv),
        "relu": StageTensors("ReLU", (conv,), conv.clamp_min(0)),
        "fc": StageTensors("Linear", (torch.randn(1, 8, generator=gen),), torch.randn(1, 5, generator=gen)),
    }


@pytest.fixture
def trees(tmp_path):
    return write_dumps(tmp_path / "dump", {"target": _stages(1e-3), "reference": _stages()})


def test_layout_header_and_entries_are_msprobes(trees, tmp_path):
    assert trees == {"target": tmp_path / "dump" / "target", "reference": tmp_path / "dump" / "reference"}
    assert sorted(p.name for p in (tmp_path / "dump").iterdir()) == ["reference", "target"]  # no temporary left
    rank = trees["target"] / STEP_RANK
    document = json.loads((rank / "dump.json").read_text())
    assert {k: document[k] for k in ("task", "level", "framework")} == {
        "task": "tensor",
        "level": "L0",
        "framework": "pytorch",
    }
    assert document["dump_data_dir"] == str(rank / DATA_DIR)
    names = list(document["data"])
    assert names == ["Module.conv1.Conv2d.forward.0", "Module.relu.ReLU.forward.0", "Module.fc.Linear.forward.0"]
    entry = document["data"]["Module.relu.ReLU.forward.0"]
    assert set(entry) == {"input_args", "input_kwargs", "output"} and entry["input_kwargs"] == {}
    out = entry["output"][0]
    assert tuple(out) == TENSOR_FIELDS
    assert out["data_name"] == "Module.relu.ReLU.forward.0.output.0.pt"
    assert entry["input_args"][0]["data_name"] == "Module.relu.ReLU.forward.0.input.0.pt"
    expected = _stages(1e-3)["relu"].output
    assert out["dtype"] == "torch.float32" and out["shape"] == [1, 2, 4, 4] and out["requires_grad"] is False
    assert out["Max"] == float(expected.max()) and out["Norm"] == pytest.approx(float(expected.norm()))
    saved = torch.load(rank / DATA_DIR / out["data_name"], weights_only=True)  # how msprobe loads it
    assert torch.equal(saved, expected)
    assert list(read_dump(trees["target"])) == names


def test_reader_names_a_missing_data_file(trees):
    rank = trees["target"] / STEP_RANK
    (rank / DATA_DIR / "Module.fc.Linear.forward.0.output.0.pt").unlink()
    with pytest.raises(InputError, match=r"entry 'Module.fc.Linear.forward.0' output\[0\]: data file .*output.0.pt"):
        read_dump(trees["target"])


def test_reader_rejects_a_wrong_header_a_missing_field_and_a_wrong_shape(trees):
    path = trees["target"] / STEP_RANK / "dump.json"
    good = json.loads(path.read_text())
    for edit, message in (
        (lambda d: d.update(task="statistics"), "task is 'statistics', not 'tensor'"),
        (lambda d: d["data"]["Module.relu.ReLU.forward.0"]["output"][0].pop("Norm"), "lacks Norm"),
        (lambda d: d["data"]["Module.fc.Linear.forward.0"]["output"][0].update(shape=[1, 6]), "shape \\[1, 6\\]"),
        (lambda d: d["data"].update({"relu": d["data"].pop("Module.relu.ReLU.forward.0")}), "not named Module"),
    ):
        document = json.loads(json.dumps(good))
        edit(document)
        path.write_text(json.dumps(document))
        with pytest.raises(InputError, match=message):
            read_dump(trees["target"])


def test_a_failed_write_leaves_the_previous_trees_and_no_temporary(trees, monkeypatch):
    before = (trees["target"] / STEP_RANK / "dump.json").read_text()
    calls = []
    real_save = torch.save

    def failing_save(tensor, path):
        calls.append(path)
        if "reference" in str(path):
            raise OSError(28, "No space left on device")
        real_save(tensor, path)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(InputError, match="cannot write the msprobe dump .No space left on device"):
        write_dumps(trees["target"].parent, {"target": _stages(5.0), "reference": _stages()})
    assert calls  # the target side was being written when the reference side failed
    assert sorted(p.name for p in trees["target"].parent.iterdir()) == ["reference", "target"]
    assert (trees["target"] / STEP_RANK / "dump.json").read_text() == before


def test_a_file_or_a_path_under_a_file_is_refused_in_one_line(tmp_path):
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(InputError, match=r"dump folder '.*file': .*\(it is not a folder\)$"):
        check_dump_dir(file)
    with pytest.raises(InputError, match=r"dump folder '.*file/sub': cannot write"):
        check_dump_dir(file / "sub")


def test_a_read_only_folder_is_refused(unprivileged):
    """Run as a user the permissions bind (nobody, when the tests run as root as in CI)."""
    folder = unprivileged.folder / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    message = unprivileged.refusal(check_dump_dir, folder)
    assert message == f"dump folder {str(folder)!r}: cannot write the msprobe dump there (Permission denied)"
    assert unprivileged.refusal(check_dump_dir, unprivileged.folder) is None


def test_cli_refuses_a_bad_dump_folder_before_any_forward_pass(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    assert main(["localize", "--target", "cpu", "--dump", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dump folder" in err and "Traceback" not in err


def test_capture_takes_inputs_before_an_in_place_relu():
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 2, 1)
            self.relu = torch.nn.ReLU(inplace=True)
            self.fc = torch.nn.Linear(2, 3)

        def forward(self, x):
            return self.fc(self.relu(self.conv1(x)).mean((2, 3)))

    model = Tiny()
    with torch.no_grad():  # one channel keeps the input's signs, the other flips them: negatives either way
        model.conv1.weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
        model.conv1.bias.zero_()
    x = torch.linspace(-1, 1, 9).reshape(1, 1, 3, 3)
    stages = capture_stages(model, lambda: model(x))
    assert list(stages) == ["conv1", "relu", "fc"]
    conv = model.conv1(x)
    assert [s.module_class for s in stages.values()] == ["Conv2d", "ReLU", "Linear"]
    assert torch.equal(stages["relu"].inputs[0], conv) and (conv < 0).any()  # not the ReLU'd tensor
    assert torch.equal(stages["relu"].output, conv.clamp_min(0)) and torch.equal(stages["conv1"].inputs[0], x)


def test_summary_names_the_twin_and_prints_the_step_folders(trees):
    lines = summary_lines(trees, "cpu/fp32", "cpu/fp32/ort", "cpu/fp32")
    assert "the eager twin of cpu/fp32/ort, which has no module hooks" in lines[0]
    target, reference = trees["target"], trees["reference"]
    assert lines[1] == (
        f"compare them with: msprobe compare -tp {target}/step0 -gp {reference}/step0 "
        f"-o {target.parent}/msprobe_compare"
    )
