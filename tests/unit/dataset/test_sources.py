"""Datasets, stored reference files and the dataset summary, without a forward pass: the
reference is a cheap stand-in function of the input, so every check here costs milliseconds.
The real runs (the model, the CLI, torchrun) are in tests/integration/test_dataset_runs.py."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from resnet34_npu.core.errors import InputError
from resnet34_npu.dataset import agreement, distributed, reference_file
from resnet34_npu.dataset import sources as dataset

WEIGHTS = {"spec": "seeded", "path": "-", "sha256": "a" * 64, "tensor_sha256": "b" * 64}


def _stand_in(batch: torch.Tensor) -> torch.Tensor:
    """Logits that depend on each image (its first 1000 input values): no model needed."""
    return batch.flatten(1)[:, :1000].contiguous()


def _photo(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def flat(tmp_path):
    root = tmp_path / "flat"
    for i in range(5):
        _photo(root / ("sub" if i % 2 else "") / f"img{i}.png", i)
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "notes.txt").write_text("not an image: ignored")
    return root


def _build(ds, out, **kw):
    options = {
        "reference": _stand_in,
        "truth": None,
        "weights": WEIGHTS,
        "machine": {"cpu": "test"},
        "reference_name": "cpu/fp32",
        "batch_size": 2,
        "workers": 0,
        "strict_images": False,
    }
    options.update(kw)
    return reference_file.build(ds, out, **options)


def test_layouts(tmp_path, flat):
    found = dataset.scan(flat)
    assert found.layout == "folder" and not found.labelled
    assert [e.path for e in found.entries] == [
        "broken.jpg",
        "img0.png",
        "img2.png",
        "img4.png",
        "sub/img1.png",
        "sub/img3.png",
    ]

    classes = tmp_path / "classes"
    for label in (3, 17):
        _photo(classes / str(label) / "a.png", label)
        _photo(classes / str(label) / "deep" / "b.png", label + 1)
    found = dataset.scan(classes)
    assert found.layout == "imagefolder" and found.labelled
    assert {e.path: e.label for e in found.entries}["17/deep/b.png"] == 17

    named = tmp_path / "named"
    _photo(named / "cat" / "a.png", 1)
    _photo(named / "dog" / "a.png", 2)
    found = dataset.scan(named)
    assert not found.labelled and "no labels" in found.note

    (flat / "val_map.txt").write_text("img0.png 5\nsub/img1.png 999\nbroken.jpg 0\n")
    found = dataset.scan(flat)
    assert found.layout == "val_map" and [e.label for e in found.entries] == [5, 999, 0]
    assert "3 image files in the folder are not in val_map.txt and are not compared" in found.note
    (flat / "val_map.txt").write_text("img0.png 5\nmissing.png 0\n")  # an incomplete copy: never a pass
    with pytest.raises(InputError, match="1 of the 2 images it lists are not in"):
        dataset.scan(flat)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("img0.png\n", "line 1"),
        ("img0.png 1000\n", "0..999"),
        ("img0.png cat\n", "line 1"),
        ("../secret.png 1\n", "outside"),
        ("img0.png 1\nimg0.png 2\n", "a second time"),
        ("\n\n", "lists no images"),
    ],
)
def test_bad_labels_file(flat, text, reason):
    (flat / "val_map.txt").write_text(text)
    with pytest.raises(InputError, match="labels file .*val_map.txt") as caught:
        dataset.scan(flat)
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_bad_dataset_folder(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        dataset.scan(tmp_path / "absent")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(InputError, match="is not a folder"):
        dataset.scan(tmp_path / "file.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no image files"):
        dataset.scan(tmp_path / "empty")


def test_loader_lists_unreadable_images_with_the_reason(flat):
    found = dataset.scan(flat)
    (flat / "img2.png").unlink()
    batches = list(dataset.loader(found, range(len(found.entries)), 4, 0))
    reasons = dict(zip((i for b in batches for i in b.indices), (r for b in batches for r in b.reasons)))
    assert "Pillow can identify" in reasons[0] and reasons[2] == "no such file"
    assert sum(b.batch.shape[0] for b in batches) == 4  # the four readable images, preprocessed
    assert all(len(h) == 64 for b in batches for h, r in zip(b.sha256, b.reasons) if not r)


def test_reference_file_round_trip(tmp_path, flat):
    found = dataset.scan(flat)
    out, computed, resumed, unreadable = _build(found, tmp_path / "ref.r34", truth=lambda b: _stand_in(b).double())
    assert (computed, resumed) == (6, 0) and [p for p, _ in unreadable] == ["broken.jpg"]
    stored = reference_file.load(out)
    stored.check(WEIGHTS, found)
    row = {image["path"]: image["row"] for image in stored.images}
    expected = _stand_in(dataset.ImageData(found)[1][3][None])[0]
    assert np.array_equal(stored.logits[row["img0.png"]], expected.numpy())
    assert stored.truth is not None and stored.truth.dtype == np.float64
    header_len = struct.unpack("<Q", out.read_bytes()[-16:-8])[0]
    assert out.stat().st_size == 8 + 5 * 1000 * (4 + 8) + header_len + 48  # 4 KB + 8 KB an image, no padding
    assert not (tmp_path / "ref.r34.partial").exists()


def test_reference_file_is_refused_when_damaged(tmp_path, flat):
    out, *_ = _build(dataset.scan(flat), tmp_path / "ref.r34")
    data = bytearray(out.read_bytes())

    def refused(blob: bytes, match: str) -> None:
        bad = tmp_path / "bad.r34"
        bad.write_bytes(blob)
        with pytest.raises(InputError, match=match) as caught:
            reference_file.load(bad)
        assert str(bad) in str(caught.value) and "\n" not in str(caught.value)

    flipped = bytearray(data)
    flipped[100] ^= 0x01  # one bit of one logit
    refused(bytes(flipped), "logits' SHA-256 differs")
    refused(bytes(data[:-1]), "no end marker|truncated|damaged")
    refused(bytes(data[: len(data) // 2]), "no end marker|truncated|damaged")
    at = data.find(b'"spec":"seeded"')
    edited = bytearray(data)
    edited[at : at + 15] = b'"spec":"seedex"'
    refused(bytes(edited), "header's SHA-256 differs")
    refused(b"PK\x03\x04" + bytes(100), "not a resnet34-npu reference file")
    refused(b"", "not a resnet34-npu reference file")
    # a newer format, with a consistent header: refused by version, not as damage
    header_len = struct.unpack("<Q", bytes(data[-16:-8]))[0]
    header = json.loads(bytes(data[-48 - header_len : -48]))
    header["format_version"] = 2
    raw = json.dumps(header).encode()
    newer = (
        bytes(data[: -48 - header_len])
        + raw
        + struct.pack("<32sQ8s", hashlib.sha256(raw).digest(), len(raw), b"R34REFND")
    )
    refused(newer, "format version 2")
    # a consistent header that breaks its schema: refused with the JSON path named
    for change, words in (({"rows": "5"}, r"\$\.rows is '5', expected integer"), ({"images": None}, r"\$\.images")):
        raw = json.dumps({**header, "format_version": 1, **change}).encode()
        resigned = (
            bytes(data[: -48 - header_len])
            + raw
            + struct.pack("<32sQ8s", hashlib.sha256(raw).digest(), len(raw), b"R34REFND")
        )
        refused(resigned, "reference-header schema: " + words)
    reference_file.load(out)  # the original still loads


def test_reference_is_refused_for_other_weights_images_or_preprocessing(tmp_path, flat):
    found = dataset.scan(flat)
    stored = reference_file.load(_build(found, tmp_path / "ref.r34")[0])
    with pytest.raises(InputError, match="other weights"):
        stored.check({**WEIGHTS, "tensor_sha256": "c" * 64}, found)
    _photo(flat / "new.png", 9)
    with pytest.raises(InputError, match="'new.png' of the dataset .* is not in the reference"):
        stored.check(WEIGHTS, dataset.scan(flat))
    (flat / "new.png").unlink()
    (flat / "img4.png").unlink()
    with pytest.raises(InputError, match="'img4.png' of the reference is not in the dataset"):
        stored.check(WEIGHTS, dataset.scan(flat))
    stored.header["preprocessing"] = "Resize(232)"
    with pytest.raises(InputError, match="another preprocessing"):
        stored.check(WEIGHTS, found)


def test_interrupted_build_resumes_and_never_looks_complete(tmp_path, flat):
    found = dataset.scan(flat)
    calls = []

    def dies_on_second_batch(batch):
        calls.append(batch.shape[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return _stand_in(batch)

    out = tmp_path / "ref.r34"
    with pytest.raises(KeyboardInterrupt):
        _build(found, out, reference=dies_on_second_batch)
    assert not out.exists() and (tmp_path / "ref.r34.partial").exists()
    with open(tmp_path / "ref.r34.partial", "ab") as handle:
        handle.write(b'{"i": 5, "sha256": "to')  # a line torn by the kill
    _, computed, resumed, _ = _build(found, out)
    assert (resumed, computed) == (2, 4)  # the first batch of two kept, nothing computed twice
    whole, *_ = _build(found, tmp_path / "whole.r34")
    a, b = reference_file.load(out), reference_file.load(whole)
    assert np.array_equal(a.logits, b.logits) and a.images == b.images
    # an interrupted build of other weights is not resumed silently
    (tmp_path / "other.r34.partial").write_text(json.dumps({"weights": "x"}) + "\n")
    with pytest.raises(InputError, match="interrupted build of other"):
        _build(found, tmp_path / "other.r34")


def test_strict_images_stops_at_an_unreadable_image(tmp_path, flat):
    with pytest.raises(InputError, match="broken.jpg.*--strict-images"):
        _build(dataset.scan(flat), tmp_path / "ref.r34", strict_images=True)


def _records(statuses, labels=None, top1=None):
    out = []
    for i, status in enumerate(statuses):
        ref_top = [i % 1000, 1, 2, 3, 4]
        record = {
            "kind": "image",
            "i": i,
            "path": f"img{i}.png",
            "card": "cpu",
            "status": status,
            "label": None if labels is None else labels[i],
        }
        if status == agreement.UNREADABLE:
            record["reason"] = "cannot be decoded"
        else:
            target_top = list(ref_top) if top1 is None else [top1[i], 1, 2, 3, 4]
            record.update(
                rel_l2=1e-6 * (i + 1),
                cosine=1.0 - 1e-9 * i,
                top1_match=target_top[0] == ref_top[0],
                reference_top5=ref_top,
                target_top5=target_top,
            )
        out.append(record)
    return out


def _summary(tmp_path, records, n=None, statuses=None):
    ds = dataset.Dataset(tmp_path, "folder", tuple(dataset.Entry(r["path"], r["label"]) for r in records))
    if n is not None:
        ds = dataset.Dataset(tmp_path, "folder", ds.entries + tuple(dataset.Entry(f"x{i}") for i in range(n)))
    job = agreement.Job(ds, "cpu/fp32", "seeded", "default", 4, 0, tmp_path / "res")
    results = agreement.Results(job.results, job.identity("w", "cpu/fp32"), 0)
    with results.open() as handle:
        for r in records:
            handle.write((json.dumps(r) + "\n").encode())
    statuses = statuses or [distributed.RankStatus(0, "cpu", True, len(records), 1.0)]
    return agreement.summarize(job, results, statuses)


def test_summary_counts_distribution_and_worst_images(tmp_path):
    s = _summary(tmp_path, _records(["pass"] * 18 + ["warn", "unreadable"]))
    assert s["verdict"] == "warn" and s["statuses"] == {"pass": 18, "unreadable": 1, "warn": 1}
    assert s["compared"] == 19 and s["unreadable"] == [{"path": "img19.png", "reason": "cannot be decoded"}]
    assert s["rel_l2"]["max"] == pytest.approx(19e-6) and s["rel_l2"]["median"] == pytest.approx(10e-6)
    assert [w["path"] for w in s["worst"]] == [f"img{i}.png" for i in range(18, 8, -1)]
    assert "localize --target cpu/fp32 --image" in s["worst"][0]["localize"]
    assert s["top1_agreement"] == 1.0 and s["accuracy"] is None


def test_summary_fails_on_a_failing_image_a_failed_rank_or_missing_results(tmp_path):
    assert _summary(tmp_path / "a", _records(["pass", "fail"]))["verdict"] == "fail"
    failed = [distributed.RankStatus(0, "npu:0", True, 1, 1.0), distributed.RankStatus(1, "npu:1", False, 0, 0, "boom")]
    s = _summary(tmp_path / "b", _records(["pass"]), statuses=failed)
    assert s["verdict"] == "fail" and "rank 1 (npu:1) failed: boom" in s["failures"]
    assert _summary(tmp_path / "c", _records(["pass"]), n=3)["verdict"] == "interrupted"


def test_mlperf_accuracy_rule(tmp_path):
    labels = list(range(100))  # the reference's top-1 is image i's class i: 100 % accurate
    wrong = lambda k: [i if i >= k else (i + 1) % 1000 for i in range(100)]  # noqa: E731 - k images now wrong
    kept = _summary(tmp_path / "a", _records(["pass"] * 100, labels, wrong(1)))["accuracy"]
    assert kept["reference_top1"] == 1.0 and kept["target_top1"] == 0.99 and kept["mlperf_pass"]
    s = _summary(tmp_path / "b", _records(["pass"] * 100, labels, wrong(2)))
    assert not s["accuracy"]["mlperf_pass"] and s["verdict"] == "fail"
    assert any("MLPerf" in line and "0.98" in line for line in s["failures"])


def test_results_resume_skips_done_images_and_cuts_a_torn_line(tmp_path):
    results = agreement.Results(tmp_path, {"run": 1}, 0)
    line = '{{"kind": "image", "i": {}, "status": "pass"}}\n'
    with results.open() as handle:
        handle.write((line.format(0) + line.format(3) + '{"kind": "ima').encode())
    assert set(results.saved()) == {0, 3}
    with results.open() as handle:
        handle.write(line.format(4).encode())
    assert set(results.saved()) == {0, 3, 4}
    other = agreement.Results(tmp_path, {"run": 2}, 0)
    with pytest.raises(InputError, match="results of another run"):
        other.saved()
    with results.open() as handle:  # a complete line that this suite did not write: one line, not a crash
        handle.write(b'{"kind": "image", "i": "five"}\n')
    with pytest.raises(InputError, match="rank0.jsonl line 5 is not a result this suite wrote"):
        set(results.saved())


def test_rank_status_travels_as_a_tensor():
    status = distributed.RankStatus(3, "npu:3", False, 17, 2.5, "RuntimeError: ACL error 507011 — 设备")
    row = status.encode()
    assert row.dtype == torch.int64
    assert distributed.RankStatus.decode(3, row) == status
    long = distributed.RankStatus(0, "cpu", True, 0, 0.0, "x" * 5000)
    assert len(distributed.RankStatus.decode(0, long.encode()).reason) == 1024


def test_world_from_env(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(InputError, match="MASTER_ADDR and MASTER_PORT not set: start the ranks with torchrun"):
        distributed.World.from_env()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert distributed.World.from_env() == distributed.World(1, 2, 1)
    monkeypatch.setenv("WORLD_SIZE", "0")
    with pytest.raises(InputError, match="WORLD_SIZE=0 must be >= 1"):
        distributed.World.from_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(InputError, match="RANK=2 is not below WORLD_SIZE=2"):
        distributed.World.from_env()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(InputError, match="RANK='one'"):
        distributed.World.from_env()


def test_backend_per_device_kind(monkeypatch):
    monkeypatch.delenv("R34_EMULATE_ASCEND", raising=False)
    assert [distributed.backend_for(k) for k in ("npu", "cuda", "cpu")] == ["hccl", "nccl", "gloo"]
    monkeypatch.setenv("R34_EMULATE_ASCEND", "Ascend910B3:8")
    assert distributed.backend_for("npu") == "gloo"


def test_absent_ranks_from_gloo_message():
    assert distributed._absent("[Rank 0]: Ranks 1, 3 failed to pass monitoredBarrier in 5000 ms") == [1, 3]
    assert distributed._absent("Rank 1 failed to pass monitoredBarrier in 5000 ms") == [1]


def test_nan_images_are_the_worst_and_stay_out_of_the_quantiles(tmp_path):
    records = _records(["pass"] * 4 + ["fail"])
    records[4].update(rel_l2="nan", cosine="nan")
    s = _summary(tmp_path, records)
    assert s["nonfinite"] == 1 and s["rel_l2"]["max"] == float("inf") and s["rel_l2"]["median"] == pytest.approx(2.5e-6)
    assert s["worst"][0]["path"] == "img4.png" and s["verdict"] == "fail"


def test_a_card_that_compared_nothing_or_lost_its_results_is_not_a_pass(tmp_path):
    unreadable_only = _summary(tmp_path / "a", _records(["unreadable", "unreadable"]))
    assert unreadable_only["verdict"] == "not run" and unreadable_only["cards"][0]["verdict"] == "not run"
    lost = [distributed.RankStatus(0, "cpu", True, 2, 1.0), distributed.RankStatus(1, "npu:1", True, 5, 1.0)]
    s = _summary(tmp_path / "b", _records(["pass", "pass"]), statuses=lost)
    assert s["verdict"] == "fail" and s["cards"][1]["verdict"] == "fail"
    assert any("rank 1 (npu:1) computed 5 images but 0 of its results" in line for line in s["failures"])


def test_mlperf_rule_does_not_apply_when_the_reference_is_never_right(tmp_path):
    labels = [999] * 10  # never the reference's top-1 in _records
    s = _summary(tmp_path, _records(["pass"] * 10, labels, [5] * 10))
    assert s["accuracy"]["reference_top1"] == 0 and s["accuracy"]["mlperf_pass"] is None
    assert "not applicable" in s["accuracy"]["mlperf_note"] and s["verdict"] == "pass"
    assert any("MLPerf rule not applicable" in line for line in agreement.summary_lines("t", s))


def test_labels_file_with_a_byte_order_mark_and_crlf(flat):
    (flat / "val_map.txt").write_bytes("\ufeffimg0.png\t5\r\nsub/img1.png 7\r\n".encode())
    found = dataset.scan(flat)
    assert [(e.path, e.label) for e in found.entries] == [("img0.png", 5), ("sub/img1.png", 7)]


def test_a_journal_killed_before_its_first_line_starts_afresh(tmp_path, flat):
    (tmp_path / "ref.r34.partial").write_bytes(b"")
    _, computed, resumed, _ = _build(dataset.scan(flat), tmp_path / "ref.r34")
    assert (computed, resumed) == (6, 0)
    (tmp_path / "dir.r34.partial").mkdir()
    with pytest.raises(InputError, match="is not a regular file"):
        _build(dataset.scan(flat), tmp_path / "dir.r34")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--dataset", "D", "--rank-timeout", "nan"], "'nan' must be a positive, finite number"),
        (["compare", "--dataset", "D", "--rank-timeout", "0"], "'0' must be a positive, finite number"),
        (["compare", "--dataset", "D", "--image", "x.jpg"], "--image and --dataset"),
        (["compare", "--reference-file", "R"], "--reference-file needs --dataset DIR"),
        (["reference", "build", "--dataset", "D", "-o", "-"], "reference file '-': a reference file is binary"),
        (["reference", "build", "--dataset", "D", "-o", "FIFO"], "reference file '.*fifo': is not a regular file"),
        (["reference", "build", "--dataset", "D", "-o", "DIR"], "reference file '.*': is a directory"),
    ],
)
def test_dataset_options_refused_in_one_line(tmp_path, flat, capsys, argv, message):
    import os
    import re

    from resnet34_npu.cli import main as cli

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    where = {"D": str(flat), "R": str(tmp_path / "r.r34"), "FIFO": str(fifo), "DIR": str(tmp_path)}
    args = [where.get(a, a) for a in argv] + ["-o", str(tmp_path / "out.json")] * ("compare" in argv)
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse's own refusal of a bad value
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert fifo.exists() and not fifo.is_file()  # never replaced by a regular file
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    "name", ["a b.jpg", "x'y.jpg", b"bad\xff\xfe.jpg", "new\nline.jpg", "\x1b[31mred.jpg", "猫.jpg"]
)
def test_localize_commands_run_as_printed_whatever_the_file_name(name):
    import os
    import subprocess

    text = os.fsdecode(name) if isinstance(name, bytes) else name
    word = agreement._quote(text)
    assert word.isprintable() and "\n" not in word  # one line, nothing for a terminal to interpret
    printed = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, check=True).stdout
    assert printed == os.fsencode(text)


def test_a_fifo_among_the_images_is_unreadable_not_a_hang(flat, tmp_path):
    import os

    os.mkfifo(flat / "pipe.jpg")
    found = dataset.scan(flat)
    index = [e.path for e in found.entries].index("pipe.jpg")
    assert dataset.ImageData(found)[index][2] == "not a regular file (a FIFO, a device or a folder)"
    os.mkfifo(tmp_path / "labels")
    with pytest.raises(InputError, match="labels file .*not a regular file"):
        dataset.scan(flat, tmp_path / "labels")


def test_another_runs_files_are_not_counted_unless_resuming(tmp_path):
    mine = agreement.Results(tmp_path, {"run": 1}, 0, "run-a", own_only=True)
    theirs = agreement.Results(tmp_path, {"run": 1}, 1, "run-b")
    for results, i in ((mine, 0), (theirs, 1)):
        with results.open() as handle:
            handle.write(f'{{"kind": "image", "i": {i}, "status": "pass"}}\n'.encode())
    assert set(mine.saved()) == {0}  # a run that started afresh reads its own files only
    resuming = agreement.Results(tmp_path, {"run": 1}, 0, "run-c")
    assert set(resuming.saved()) == {0, 1}
    mine.lock()
    try:
        with pytest.raises(InputError, match="in use by another run right now"):
            agreement.Results(tmp_path, {"run": 1}, 0, "run-d").lock()
    finally:
        mine.release()
    agreement.Results(tmp_path, {"run": 1}, 0, "run-d").lock()  # free again


@pytest.mark.slow
def test_an_image_unreadable_when_the_reference_was_built_is_listed_not_compared(tmp_path, flat, monkeypatch):
    """A reference built where one image could not be decoded (another Pillow, without a
    codec) and read where it can: that image has no stored logits, so it is listed, and the
    batch it was in is compared without it."""
    from resnet34_npu.judge.compare import Session

    found = dataset.scan(flat)
    real = dataset.decode_image

    def without_a_codec(data, path):
        if str(path).endswith("img2.png"):
            raise InputError(f"image {path}: cannot be decoded (no codec here)")
        return real(data, path)

    monkeypatch.setattr(dataset, "decode_image", without_a_codec)
    out, *_ = _build(found, tmp_path / "ref.r34", batch_size=6)
    monkeypatch.setattr(dataset, "decode_image", real)
    stored = reference_file.load(out)
    job = agreement.Job(found, "cpu/fp32", "seeded", "default", 6, 0, tmp_path / "res", stored)
    summary, _ = agreement.run(job, Session("seeded"), distributed.World(), None)
    listed = {u["path"]: u["reason"] for u in summary["unreadable"]}
    assert "not in the reference: unreadable when the reference was built" in listed["img2.png"]
    assert summary["compared"] == 4 and set(listed) == {"img2.png", "broken.jpg"}
