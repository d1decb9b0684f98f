"""Run-to-run and card-to-card consistency: the logic on deliberately differing digests (no forward pass)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resnet34_npu.judge.consistency import (
    BITWISE,
    TOLERANCE,
    Policy,
    card_groups,
    card_to_card,
    max_ulp,
    policy_for,
    raw_ulp,
    run_to_run,
)
from resnet34_npu.targets.timing import OutputLog, Timing, digest


def timing_of(*arrays: np.ndarray) -> Timing:
    log = OutputLog()
    for a in arrays:
        log.add(torch.from_numpy(a))
    return Timing.from_samples([1.0] * len(arrays), 0, 1, "perf_counter", log)


def bumped(a: np.ndarray, at: int = 0, ulps: int = 1) -> np.ndarray:
    b = a.copy()
    b.view(np.int32)[at] += ulps
    return b


BASE = np.linspace(-3, 3, 1000, dtype=np.float32)
EXACT = Policy(BITWISE, "test")


def test_identical_outputs_pass_and_a_one_ulp_difference_fails_bitwise():
    same = run_to_run(timing_of(BASE, BASE.copy(), BASE.copy()), EXACT)
    assert same is not None and same.passed and same.distinct == 1 and same.outputs == 3
    off = run_to_run(timing_of(BASE, BASE, bumped(BASE, 7), BASE), EXACT)
    assert off is not None and not off.passed
    assert (off.distinct, off.max_ulp, off.max_ulp_raw, off.first_mismatch) == (2, 1.0, 1, 2)
    assert off.max_abs == pytest.approx(abs(float(np.spacing(BASE[7]))), rel=1e-6)
    assert "2 distinct outputs in 4 runs" in off.line("npu:5") and "FAIL" in off.line("npu:5")


def test_tolerance_policy_reports_the_difference_without_failing():
    off = run_to_run(timing_of(BASE, bumped(BASE)), Policy(TOLERANCE, "no promise"))
    assert off is not None and off.passed and off.distinct == 2 and "no promise" in off.line("x")


def test_raw_ulps_count_across_zero_and_refuse_mismatched_arrays():
    a = np.array([np.float32(-0.0), 1.0], dtype=np.float32)
    b = np.array([np.nextafter(np.float32(0), np.float32(1)), 1.0], dtype=np.float32)
    assert raw_ulp(a, b) == 1
    c = np.array([-np.nextafter(np.float32(0), np.float32(1)), 1.0], dtype=np.float32)
    assert raw_ulp(c, b) == 2
    assert raw_ulp(BASE, bumped(BASE, 3, 5)) == 5
    for count in (raw_ulp, max_ulp):
        with pytest.raises(ValueError, match="cannot count ulps"):
            count(BASE, BASE.astype(np.float16))


def test_a_logit_near_zero_one_ulp_off_at_the_outputs_scale_is_about_one_scaled_and_huge_raw():
    logits = np.array([2.5, -1.25, 3.0e-7, 0.75], dtype=np.float32)
    unit = np.spacing(np.float32(2.5))  # the ulp of the largest logit
    off = logits.copy()
    off[2] = np.float32(3.0e-7) + unit  # the near-zero logit moved by one ulp of the output's scale
    assert max_ulp(logits, off) == pytest.approx(1.0, rel=1e-3)
    assert raw_ulp(logits, off) > 10**6  # the raw count: all the floats between 3e-7 and 3e-7 + 2**-22
    assert max_ulp(off, logits) == max_ulp(logits, off)  # symmetric
    assert max_ulp(logits, logits.copy()) == 0.0 and raw_ulp(logits, logits.copy()) == 0


def test_a_real_change_of_many_ulps_still_counts_many_and_rows_have_their_own_scale():
    assert max_ulp(BASE, bumped(BASE, 3, 5)) == 5.0
    far = BASE.copy()
    far[500] += np.float32(1e-3)  # ~4200 ulps of 3.0
    assert 4000 < max_ulp(BASE, far) < 4400
    batch = np.stack([BASE, BASE / np.float32(1024)])  # row 2: logits 1024 times smaller
    small = batch.copy()
    small[1, 10] = np.nextafter(small[1, 10], np.float32(np.inf))  # 1 ulp of row 2's own scale
    assert max_ulp(batch, small) == pytest.approx(1.0, abs=0.01)  # not 1/1024: each image its own scale
    assert max_ulp(BASE, np.where(np.arange(1000) == 4, np.float32(np.nan), BASE)) == float("inf")


def test_policies_name_their_reason():
    assert policy_for("cpu", {}).name == BITWISE
    assert policy_for("cuda", {"cudnn_benchmark": True}).name == TOLERANCE
    npu = policy_for("npu", {"deterministic_algorithms": False})
    assert npu.name == TOLERANCE and "use_deterministic_algorithms" in npu.reason
    assert policy_for("npu", {"deterministic_algorithms": True}).name == BITWISE
    broken = policy_for("cpu", {}, ("CUBLAS_WORKSPACE_CONFIG=:4096:8 cannot be set: ...",))
    assert broken.name == TOLERANCE and "CUBLAS_WORKSPACE_CONFIG" in broken.reason
    assert policy_for("custom", {}, custom=True).name == TOLERANCE


def digests_of(*arrays: np.ndarray) -> tuple[list[str], dict[str, np.ndarray]]:
    log = OutputLog()
    for a in arrays:
        log.add(torch.from_numpy(a))
    return log.digests, log.distinct


def test_the_card_off_the_majority_is_named_with_images_and_ulps():
    good, outputs = digests_of(BASE, BASE)
    bad, more = digests_of(BASE, bumped(BASE, 1, 3))
    wrong, most = digests_of(bumped(BASE, 2, 1))
    outputs = {**outputs, **more, **most}
    cards = {f"npu:{k}": {"a.jpg": good, "b.jpg": good} for k in range(8)}
    cards["npu:5"] = {"a.jpg": bad, "b.jpg": good}
    cards["npu:6"] = {"a.jpg": wrong, "b.jpg": wrong}
    result = card_to_card("Ascend910B3 fp32", cards, outputs)
    assert not result.passed
    named = {o.card: (o.images, o.max_ulp, o.max_ulp_raw) for o in result.outliers}
    assert named == {"npu:5": (("a.jpg",), 3.0, 3), "npu:6": (("a.jpg", "b.jpg"), 1.0, 1)}
    assert any("npu:5 differs" in line and "(max 3 ulp at scale (3 raw)" in line for line in result.lines())
    assert any("npu:6 differs from the majority of 8 cards on a.jpg, b.jpg" in line for line in result.lines())
    healthy = card_to_card("g", {f"npu:{k}": {"a.jpg": good} for k in range(3)}, outputs)
    assert healthy.passed and healthy.lines() == ["card-to-card g: 3 cards bit-identical"]


def test_two_cards_that_disagree_have_no_majority():
    one, outputs = digests_of(BASE)
    two, more = digests_of(bumped(BASE))
    result = card_to_card("g", {"npu:0": {"a.jpg": one}, "npu:1": {"a.jpg": two}}, {**outputs, **more})
    assert not result.passed and result.no_majority == ("a.jpg",) and not result.outliers


def test_digest_sees_dtype_shape_and_every_bit():
    x = torch.from_numpy(BASE.copy())
    assert digest(x) == digest(x.clone()) and digest(x) != digest(torch.from_numpy(bumped(BASE, 999)))
    assert digest(x) != digest(x.reshape(10, 100)) and digest(x) != digest(x.double())
    assert digest("not a tensor") is None


class _Result:
    def __init__(self, name, device, timing, output=None):
        self.name, self.device, self.device_name, self.dtype, self.latency = name, device, "Ascend910B3", "fp32", timing
        found = {"image": "cat.jpg", "paths": ("cat.jpg",), "output_digest": "", "output": None}
        if output is not None:
            found.update(output_digest=digest(torch.as_tensor(output)), output=np.asarray(output))
        self.cases = [type("Case", (), found)()]


def test_card_groups_compare_the_compared_outputs_without_any_timing():
    """compare --iters 0 times nothing: the cards are still compared on the logits they were judged on."""
    results = [_Result(f"npu:{k}/fp32", f"npu:{k}", None, output=BASE) for k in range(3)]
    results.append(_Result("npu:3/fp32", "npu:3", None, output=bumped(BASE)))
    (group,) = card_groups(results)
    assert [o.card for o in group.outliers] == ["npu:3"] and group.outliers[0].images == ("cat.jpg",)
    assert group.outliers[0].max_ulp_raw == 1


def test_card_groups_group_by_target_and_leave_single_cards_out():
    results = [_Result(f"npu:{k}/fp32", f"npu:{k}", timing_of(BASE)) for k in range(3)]
    results.append(_Result("npu:3/fp32", "npu:3", timing_of(bumped(BASE))))
    results.append(_Result("npu:0/fp16", "npu:0", timing_of(BASE)))
    (group,) = card_groups(results)
    assert group.group == "Ascend910B3 fp32" and [o.card for o in group.outliers] == ["npu:3"]
