"""The cross-check of a dataset run, in process and without the model: each "rank" (a
``World`` of one torchrun job, no process group) computes the shared images with a cheap
stand-in function of the input, one card's outputs 1 ulp off, and the summary, read back from
the results files as rank 0 reads them, names that card with its images and ulps; a healthy run
names nobody. The real run on the emulated 8-card host is in
tests/integration/test_dataset_runs.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from resnet34_npu.core.errors import InputError
from resnet34_npu.dataset import agreement, crosscheck, distributed
from resnet34_npu.dataset import sources as dataset
from resnet34_npu.targets.timing import digest

RANKS = 4


def _stand_in(batch: torch.Tensor) -> torch.Tensor:
    return batch.flatten(1)[:, :1000].contiguous()


def _one_ulp_up(batch: torch.Tensor) -> torch.Tensor:
    out = _stand_in(batch).numpy()
    return torch.from_numpy(np.nextafter(out, np.float32(np.inf), dtype=np.float32))


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    return dataset.scan(root)


def _run(tmp_path, found, cards, faulty=(), count=2):
    """Every rank's image records and cross-check, then rank 0's summary."""
    job = agreement.Job(found, "npu/fp32", "seeded", "default", 4, 0, tmp_path / "res", cross_check=count)
    identity = job.identity("w", "cpu/fp32")
    for rank, card in enumerate(cards):
        world = distributed.World(rank, len(cards), rank)
        results = agreement.Results(job.results, identity, rank)
        with results.open() as handle:
            for i in range(rank, len(found.entries), len(cards)):
                record = {"kind": "image", "i": i, "path": found.entries[i].path, "label": None, "card": card}
                record.update(status="pass", rel_l2=1e-7, cosine=1.0, top1_match=True)
                record.update(reference_top5=[1, 2, 3, 4, 5], target_top5=[1, 2, 3, 4, 5])
                handle.write((json.dumps(record) + "\n").encode())
        forward = _one_ulp_up if rank in faulty else _stand_in
        assert crosscheck.compute(job, forward, card, world, results) == (count if crosscheck.comparable(card) else 0)
    statuses = [distributed.RankStatus(r, c, True, 0, 1.0) for r, c in enumerate(cards)]
    return agreement.summarize(job, agreement.Results(job.results, identity, 0), statuses)


def test_a_card_one_ulp_off_on_the_shared_images_is_named_and_fails(tmp_path, images):
    s = _run(tmp_path, images, [f"npu:{r}" for r in range(RANKS)], faulty={2})
    cross = s["cross_check"]
    assert cross["passed"] is False and cross["images"] == ["img0.png", "img1.png"]
    assert [o["card"] for o in cross["outliers"]] == ["npu:2"]
    assert cross["outliers"][0]["images"] == ["img0.png", "img1.png"]
    assert cross["outliers"][0].get("max_ulp_raw", cross["outliers"][0]["max_ulp"]) == 1
    assert s["verdict"] == "fail" and any("npu:2 differs from the majority" in f for f in s["failures"])
    rows = {c["card"]: c for c in s["cards"]}
    assert rows["npu:2"]["verdict"] == "fail" and rows["npu:2"]["card_outlier"]["card"] == "npu:2"
    assert all(rows[f"npu:{r}"]["verdict"] == "pass" and rows[f"npu:{r}"]["card_outlier"] is None for r in (0, 1, 3))
    lines = agreement.summary_lines("npu/fp32", s)
    assert any(line.startswith("FAIL npu/fp32:") and "npu:2" in line and "ulp" in line for line in lines)


def test_a_healthy_run_names_nobody(tmp_path, images):
    s = _run(tmp_path, images, [f"npu:{r}" for r in range(RANKS)])
    assert s["verdict"] == "pass" and s["cross_check"]["passed"] and s["cross_check"]["outliers"] == []
    assert s["cross_check"]["cards"] == [f"npu:{r}" for r in range(RANKS)]
    assert "  cross-check: 2 shared images on 4 cards, bit-identical" in agreement.summary_lines("t", s)


def test_the_cpu_and_one_rank_are_not_cross_checked(tmp_path, images):
    cpu = _run(tmp_path / "cpu", images, ["cpu (rank 0)", "cpu (rank 1)"], faulty={1})
    assert cpu["verdict"] == "pass" and "not accelerator cards" in cpu["cross_check"]["skipped"]
    assert not list((tmp_path / "cpu" / "res").glob("*.jsonl")) or all(
        '"kind": "cross"' not in p.read_text() for p in (tmp_path / "cpu" / "res").glob("*.jsonl")
    )
    assert crosscheck.default_count(1) == 0 and crosscheck.default_count(8) == crosscheck.DEFAULT
    none = _run(tmp_path / "none", images, ["npu:0", "npu:1"], faulty={1}, count=0)
    assert none["verdict"] == "pass" and none["cross_check"] is None


def test_a_damaged_cross_record_is_one_line(tmp_path):
    results = agreement.Results(tmp_path, {"run": 1}, 0)
    with results.open() as handle:
        handle.write(b'{"kind": "cross", "i": 0, "card": "npu:0", "path": "a.png", "rank": 0, "digest": 7}\n')
    with pytest.raises(InputError, match="line 2 is not a result this suite wrote"):
        list(results.records(results.mine, agreement.CROSS))


def test_pack_keeps_the_bits_and_the_digest_is_timings():
    out = torch.tensor([[1.0, -0.0, 3.5e-38, float("nan")]])
    assert crosscheck.unpack(crosscheck.pack(out)).tobytes() == out.numpy().tobytes()
    assert digest(out) == digest(out.clone()) and digest(out) != digest(_one_ulp_up(out))


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_bad_cross_check_count_is_one_line_and_exit_2(value, capsys):
    from resnet34_npu.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(["compare", "--dataset", "somewhere", "--cross-check", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "--cross-check" in err[0], err


def test_cross_check_without_a_dataset_is_refused(tmp_path, capsys):
    from resnet34_npu.cli.main import main

    assert main(["compare", "--cross-check", "2", "-o", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["resnet34-npu compare: error: --cross-check needs --dataset DIR"], err
    assert not (tmp_path / "r.json").exists()
