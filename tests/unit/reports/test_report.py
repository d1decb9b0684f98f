from __future__ import annotations

import json
import math

import pytest

from resnet34_npu import InputError
from resnet34_npu.core.files import check_writable, write_json_atomic
from resnet34_npu.reports.report import SCHEMA_VERSION, build_report, machine_info


def test_atomic_write_and_non_finite_values(tmp_path):
    path = tmp_path / "sub" / "r.json"
    write_json_atomic(path, {"a": math.nan, "b": [math.inf, -math.inf, 1.5]})
    assert json.loads(path.read_text()) == {"a": "nan", "b": ["inf", "-inf", 1.5]}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_a_failed_write_leaves_the_old_report_whole(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"old": 1})

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(path, {"new": Unserialisable()})
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_unwritable_destinations_are_usage_errors(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        check_writable(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write in '.*file'"):
        check_writable(tmp_path / "file" / "r.json")
    created = check_writable(tmp_path / "new" / "folder" / "r.json")
    assert created.parent.is_dir() and list(created.parent.iterdir()) == [], "the folder is made, the probe removed"


def test_a_folder_without_write_permission_is_a_usage_error(unprivileged):
    """Run as a user the permissions bind (nobody, when the tests run as root as in CI)."""
    locked = unprivileged.folder / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    message = unprivileged.refusal(check_writable, locked / "r.json")
    assert message == f"report {str(locked / 'r.json')!r}: cannot write in {str(locked)!r} (Permission denied)"
    assert unprivileged.refusal(check_writable, unprivileged.folder / "r.json") is None


def test_report_verdict_and_machine():
    target = {"verdict": "warn", "device_name": "X"}
    doc = build_report(profile="default", weights={}, reference={"device_name": "cpu0"}, targets=[target])
    assert doc["schema_version"] == SCHEMA_VERSION and doc["verdict"] == "pass"
    assert doc["created"].endswith("+00:00")
    assert (
        build_report(profile="p", weights={}, reference={}, targets=[target, {"verdict": "fail"}])["verdict"] == "fail"
    )
    machine = machine_info(["a", "a", "b"])
    assert machine["devices"] == ["a", "b"]
    assert {"host", "cpu", "python", "torch", "torchvision", "torch_npu", "cann"} <= set(machine)
