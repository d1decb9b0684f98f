"""Atomic writes (resnet34_npu/core/files.py) with a failure injected at each step: the fsync,
the rename, and the writer itself part-way through. Each time the previous file is unchanged, no
temporary file is left and the error is one InputError naming the file (or the writer's own
exception, re-raised). No forward pass."""

from __future__ import annotations

import errno
import json
import os

import pytest

from resnet34_npu import InputError
from resnet34_npu.core import files
from resnet34_npu.core.files import write_atomic, write_json_atomic


def _fail(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_a_failing_fsync_or_rename_leaves_the_old_file_whole_and_no_temporary_file(tmp_path, monkeypatch, step):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"old": 1})
    monkeypatch.setattr(files.os, step, _fail)
    with pytest.raises(InputError) as caught:
        write_json_atomic(path, {"new": 2, "padding": "x" * 100_000})
    message = str(caught.value)
    assert message.startswith("report ") and "r.json" in message and "No space left on device" in message
    assert "the previous file, if any, is unchanged" in message and "\n" not in message
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_writer_that_dies_half_way_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old contents")

    def half(handle):
        handle.write(b"new contents, the first half")
        handle.flush()
        raise KeyboardInterrupt  # what stops it need not be an OSError

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half, what="results file", prefix=".data.bin.")
    assert path.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_a_rename_failure_on_a_new_file_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "new.json"
    monkeypatch.setattr(os, "replace", _fail)
    with pytest.raises(InputError, match="cannot write it"):
        write_json_atomic(path, {"a": 1})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
