"""Every history record a test writes is checked against the ``history-record`` JSON Schema:
an autouse fixture (used by ``tests/unit/history`` and ``tests/unit/cli/test_history.py``)
looks, after each test, in the session's temporary folders for the files ``write_record``
added during it (read-only ``*.json`` of the history format; hand-made hostile files are
writable and left alone) and fails the test naming the first that does not match."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from resnet34_npu.core.schemas import problem
from resnet34_npu.history.record import FORMAT


def written_records(folder: Path) -> set[Path]:
    """The files under ``folder`` that look written by ``write_record``: regular, read-only (0444) ``*.json``."""
    found = set()
    for path in folder.rglob("*.json"):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and not info.st_mode & 0o222:
            found.add(path)
    return found


def invalid_records(paths: set[Path]) -> tuple[int, list[str]]:
    """(records of the history format checked, ``path: $.where what`` of each that breaks the schema)."""
    checked, bad = 0, []
    for path in sorted(paths):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            continue
        checked += 1
        found = problem(doc, "history-record")
        if found is not None:
            bad.append(f"{path}: {found}")
    return checked, bad


@pytest.fixture(autouse=True)
def every_written_record_matches_the_schema(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    before = written_records(base)
    yield
    _, bad = invalid_records(written_records(base) - before)
    assert not bad, f"a written history record does not match history-record.schema.json: {bad[0]}"
