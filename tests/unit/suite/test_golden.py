from __future__ import annotations

import pytest
import torch

from resnet34_npu.core.constants import IMAGES_DIR
from resnet34_npu.judge.criteria import judge
from resnet34_npu.judge.metrics import compare_logits
from resnet34_npu.model.weights import WeightsInfo
from resnet34_npu.suite.golden import GOLDEN_DIR, MAX_BYTES, REGENERATE, golden_path, read_golden, write_golden

SEEDED = WeightsInfo("seeded", "x", "0" * 64, "1" * 64)


def test_paths():
    assert golden_path(IMAGES_DIR / "cat.jpg", SEEDED) == GOLDEN_DIR / "cat.seeded-42.json"
    assert golden_path(IMAGES_DIR / "cat.jpg", WeightsInfo("seeded:7", "x", "", "")).name == "cat.seeded-7.json"


def test_round_trip_is_exact_and_small(tmp_path):
    logits = torch.randn(1, 1000) * 50
    path = tmp_path / "g.json"
    write_golden(path, IMAGES_DIR / "cat.jpg", SEEDED, logits)
    back, top5, doc = read_golden(path)
    assert torch.equal(back, logits) and top5 == torch.topk(logits[0], 5).indices.tolist()
    assert path.stat().st_size < MAX_BYTES and doc["weights"]["tensor_sha256"] == "1" * 64


def test_a_drifted_reference_fails_and_a_reordered_one_passes(tmp_path):
    logits = torch.randn(1, 1000) * 50
    path = tmp_path / "g.json"
    write_golden(path, IMAGES_DIR / "cat.jpg", SEEDED, logits)
    golden, _, _ = read_golden(path)
    assert judge(compare_logits(golden, logits * (1 + 1e-7)), "default").passed
    verdict = judge(compare_logits(golden, logits * (1 + 1e-4)), "default")
    assert not verdict.passed and verdict.failures[0].metric == "rel_l2_error"


def test_missing_file_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        read_golden(tmp_path / "nope.json")
    assert REGENERATE in str(err.value) and "--r34-update-golden" in REGENERATE


def test_committed_golden_files_match_the_seeded_weights(seeded):
    for name in ("cat", "coffee"):
        _, top5, doc = read_golden(GOLDEN_DIR / f"{name}.seeded-42.json")
        assert doc["weights"]["tensor_sha256"] == seeded[1].tensor_sha256
        assert top5[0] == 134
