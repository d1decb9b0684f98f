"""Records written and read back: atomic, never replacing one another under concurrent writers;
torn, foreign, newer, hostile records (deep nesting, thousand-digit numbers, NaN tokens, an
oversized file, a FIFO, a symbolic link) named and skipped with the reason, refused with
``strict``; a history folder that is a file, unwritable or on a full disk refused before work."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from resnet34_npu.core.errors import InputError
from resnet34_npu.history import from_report, record, store, synthetic


def write_all(folder: Path, records) -> list[Path]:
    return [record.write_record(folder, r) for r in records]


def test_round_trip(tmp_path):
    records = synthetic.history(runs=3, seed=1)
    write_all(tmp_path, records)
    loaded = store.load(tmp_path)
    assert not loaded.skipped
    assert [r.to_dict() for r in loaded.records] == [r.to_dict() for r in records]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_concurrent_writers_of_one_run_id_never_lose_a_record(tmp_path):
    (one,) = synthetic.history(runs=1, seed=1)  # the same run id and time: the same first file name
    threads = [threading.Thread(target=record.write_record, args=(tmp_path, one)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(tmp_path.glob("*.json"))) == 16 and len(store.load(tmp_path).records) == 16


def good_document() -> dict:
    return synthetic.history(runs=1, seed=1)[0].to_dict()


HOSTILE = {
    "torn.json": lambda: json.dumps(good_document())[:200],
    "foreign.json": lambda: json.dumps({"benchmarks": []}),
    "newer.json": lambda: json.dumps({**good_document(), "schema_version": 99}),
    "nested.json": lambda: "[" * 40_000 + "]" * 40_000,
    "digits.json": lambda: json.dumps(good_document()).replace('"batch": 1', '"batch": 1' + "0" * 1000),
    "nan.json": lambda: json.dumps(good_document()).replace('"median_ms": ', '"median_ms": NaN, "x": ', 1),
    "huge.json": lambda: json.dumps(good_document()).replace('"batch": 1', '"batch": 1e999'),
    "wrongtype.json": lambda: json.dumps({**good_document(), "targets": {"a": 1}}),
    "badsample.json": lambda: json.dumps(good_document()).replace('"samples_ms": [', '"samples_ms": ["x", '),
    "binary.json": lambda: b"\xff\xfe\x00garbage",
}
REASONS = {
    "torn.json": "torn or not JSON",
    "foreign.json": "not a resnet34-npu history record",
    "newer.json": "$.schema_version is 99: of a newer format",
    "nested.json": "nested too deeply",
    "digits.json": "digits",
    "nan.json": "NaN token",
    "huge.json": "out of range",
    "wrongtype.json": "$.targets is not a list (it is an object)",
    "badsample.json": "$.targets[0].samples_ms[0] is 'x', expected number",
    "binary.json": "not UTF-8",
    "fifo.json": "FIFO",
    "link.json": "symbolic link",
    "big.json": "larger than a record can be",
}


@pytest.fixture
def hostile_folder(tmp_path, monkeypatch):
    write_all(tmp_path, synthetic.history(runs=2, seed=1))
    for name, make in HOSTILE.items():
        data = make()
        (tmp_path / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    os.mkfifo(tmp_path / "fifo.json")  # a reader that opened it would block forever
    (tmp_path / "link.json").symlink_to(next(tmp_path.glob("2026*.json")))
    monkeypatch.setattr(store, "MAX_RECORD_BYTES", 100_000)
    (tmp_path / "big.json").write_bytes(b" " * 100_001)
    return tmp_path


def test_hostile_records_are_named_and_skipped(hostile_folder):
    loaded = store.load(hostile_folder)
    assert len(loaded.records) == 2
    reasons = {s.name: s.reason for s in loaded.skipped}
    assert set(reasons) == set(REASONS)
    for name, reason in REASONS.items():
        assert reason in reasons[name], (name, reasons[name])


def test_strict_refuses_the_first_bad_record(hostile_folder):
    words = r"\$\.targets\[0\]\.samples_ms\[0\] is 'x', expected number"
    with pytest.raises(InputError, match=rf"history record .*badsample.json': {words} \(--strict\)$"):
        store.load(hostile_folder, strict=True)


def test_good_records_pass_strict(tmp_path):
    write_all(tmp_path, synthetic.history(runs=2, seed=1))
    assert len(store.load(tmp_path, strict=True).records) == 2


def test_history_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        record.check_history_dir(tmp_path / "f")
    with pytest.raises(InputError, match="is not a folder"):
        store.load(tmp_path / "f")


def test_history_path_unwritable(tmp_path):
    (tmp_path / "f").write_text("x")  # a folder below a file cannot be made, even by root
    with pytest.raises(InputError, match="cannot write in it"):
        record.check_history_dir(tmp_path / "f" / "h")


def test_history_on_a_full_disk(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 10, 10))
    with pytest.raises(InputError, match="the disk is full"):
        record.check_history_dir(tmp_path)
    monkeypatch.undo()
    assert record.check_history_dir(tmp_path / "ok")  # the real free space passes


def test_record_write_failure_is_one_error(tmp_path):
    folder = tmp_path / "gone"
    with pytest.raises(InputError, match="cannot write a record"):
        record.write_record(folder, synthetic.history(runs=1)[0])


def test_written_records_match_the_schema(tmp_path):
    """The records of every producer (synthetic, a report's, pytest-benchmark's, calibration's)
    match history-record.schema.json as written; the autouse check (written.py) does the same
    after every test of this folder and of tests/unit/cli/test_history.py."""
    from resnet34_npu.core.schemas import problem
    from tests.unit.history.test_from_report import report
    from tests.unit.history.written import invalid_records, written_records

    write_all(tmp_path, [*synthetic.history(runs=3, seed=2), from_report.record_of_report(report(), source="x")])
    assert invalid_records(written_records(tmp_path)) == (4, [])
    doc = json.loads(next(tmp_path.glob("2026*.json")).read_text())
    assert problem(doc, "history-record") is None and set(doc) == set(record.Record.__dataclass_fields__) - {"name"} | {
        "format",
        "schema_version",
    }


def test_the_written_record_check_fails_on_a_bad_record(tmp_path):
    from tests.unit.history.written import invalid_records, written_records

    bad = good_document()
    bad["targets"][0]["batch"] = "one"
    path = tmp_path / "2026-bad.json"
    path.write_text(json.dumps(bad))
    assert written_records(tmp_path) == set()  # a writable file is a test's hand-made input, left alone
    path.chmod(0o444)
    assert invalid_records(written_records(tmp_path)) == (1, [f"{path}: $.targets[0].batch is 'one', expected integer"])
    path.chmod(0o644)  # else the autouse check fails this test, as it would any test writing it


def wrong(change) -> dict:
    doc = good_document()
    change(doc)
    return doc


NAN_WORDS = 'expected a number, or "nan", "inf", "-inf" (JSON has no NaN)'


def put(*path, value=None):
    """A change of a good record: ``value`` at ``path`` (the key dropped when ``value`` is None)."""

    def change(doc):
        *parents, last = path
        for key in parents:
            doc = doc[key]
        doc.pop(last) if value is None else doc.__setitem__(last, value)

    return change


SCHEMA_REFUSALS = {  # the reason each is skipped with: the JSON path and what was expected
    "$.targets[0].median_ms is 'fast', expected number or null": put("targets", 0, "median_ms", value="fast"),
    "$.targets[0] lacks the key 'samples_ms'": put("targets", 0, "samples_ms"),
    "$ lacks the key 'environment'": put("environment"),
    "$.schema_version is 0, expected one of 1": put("schema_version", value=0),
    "$.schema_version is 2: of a newer format (this suite reads up to 1)": put("schema_version", value=2),
    f"$.targets[0].accuracy.rel_l2 is 'small', {NAN_WORDS}": put("targets", 0, "accuracy", "rel_l2", value="small"),
    "$.environment.torch is 2.4, expected string": put("environment", "torch", value=2.4),
    "$.methodology.clock is an object, expected string or number or boolean or null": put(
        "methodology", "clock", value={"a": 1}
    ),
    "$.targets[0].batch is 0, expected minimum 1": put("targets", 0, "batch", value=0),
    "$.run_id is '', expected minLength 1": put("run_id", value=""),
}


@pytest.mark.parametrize("words", SCHEMA_REFUSALS)
def test_a_record_breaking_the_schema_is_refused_with_its_path(tmp_path, words):
    from resnet34_npu.core.schemas import validate

    doc = wrong(SCHEMA_REFUSALS[words])
    (tmp_path / "2026-a.json").write_text(json.dumps(doc))
    loaded = store.load(tmp_path)
    assert not loaded.records and [s.reason for s in loaded.skipped] == [words]
    with pytest.raises(InputError) as caught:
        store.load(tmp_path, strict=True)
    assert str(caught.value) == f"history record {str(tmp_path / '2026-a.json')!r}: {words} (--strict)"
    if "newer format" not in words:  # the schema itself refuses every one with the same words
        with pytest.raises(InputError, match=r"^'r\.json': does not match the history-record schema: \$"):
            validate(doc, "history-record", source="r.json")


def test_a_kept_figure_may_be_non_finite_and_an_unknown_key_is_kept_out(tmp_path):
    doc = good_document()
    doc["targets"][0]["accuracy"]["cosine"] = "nan"  # what dumps writes for a NaN figure
    doc["targets"][0]["added_by_a_later_issue"] = [1]  # records and targets are open objects
    (tmp_path / "2026-a.json").write_text(json.dumps(doc))
    (only,) = store.load(tmp_path, strict=True).records
    assert str(only.targets[0].accuracy["cosine"]) == "nan" and "added_by_a_later_issue" not in only.to_dict()
