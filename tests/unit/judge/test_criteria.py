"""Verdicts: each profile's rules pass what they should and fail a deliberately wrong input."""

from __future__ import annotations

import math

import pytest
import torch

from resnet34_npu import InputError
from resnet34_npu.judge.criteria import PROFILES, Rule, get_profile, judge
from resnet34_npu.judge.metrics import compare_logits
from resnet34_npu.model.labels import class_name


def logits(seed=0, n=2):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1000, generator=gen) * 20
    x[:, 134] = 90.0  # a saturated top-1, as seeded weights give
    return x


def noisy(ref, rel, seed=1):
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    noise = noise / noise.norm(dim=1, keepdim=True) * ref.double().norm(dim=1, keepdim=True) * rel
    return (ref.double() + noise).float()


@pytest.mark.parametrize("profile", list(PROFILES))
def test_identical_logits_pass_every_profile(profile):
    ref = logits()
    assert judge(compare_logits(ref, ref.clone()), profile).status == "pass"


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_fails_every_profile(profile, bad):
    ref = logits()
    out = ref.clone()
    out[0, 7] = bad
    verdict = judge(compare_logits(ref, out), profile)
    assert verdict.status == "fail"
    assert verdict.failures[0].startswith("non-finite values: target has 1")
    assert f"class 7 {class_name(7)!r}" in verdict.failures[0]


@pytest.mark.parametrize(
    "precision, healthy, broken",
    [("fp32", 4e-7, 1e-4), ("fp16", 5.4e-4, 1e-2), ("tf32", 5.4e-4, 1e-2), ("bf16", 4.3e-3, 5e-2)],
)
def test_default_profile_bounds_per_precision(precision, healthy, broken):
    ref = logits()
    assert judge(compare_logits(ref, noisy(ref, healthy), precision=precision)).passed
    verdict = judge(compare_logits(ref, noisy(ref, broken), precision=precision))
    assert verdict.status == "fail"
    assert verdict.failures[0].startswith("rel_l2_error: ")
    assert f"for {precision})" in verdict.failures[0] and "worst element: sample" in verdict.failures[0]


def test_failure_line_reads_like_assert_close():
    ref = logits()
    out = ref.clone()
    out[1, 500] += 3.0
    line = judge(compare_logits(ref, out)).failures[0]
    c = compare_logits(ref, out)
    assert line == (
        f"rel_l2_error: {c.rel_l2_error:.3e} > 1.000e-05 (allowed: <= 1.000e-05 for fp32); worst element: "
        f"sample 1, class 500 {class_name(500)!r}: reference {ref[1, 500].item():.6g}, "
        f"target {out[1, 500].item():.6g}, "
        f"diff {out[1, 500].item() - ref[1, 500].item():.3e}"
    )


def test_top1_mismatch_names_both_classes():
    ref = logits()
    out = ref.clone()
    out[0, 134], out[0, 3] = ref[0, 3], ref[0, 134]  # two logits swapped
    failures = judge(compare_logits(ref, out), "seed").failures
    top1 = next(f for f in failures if f.startswith("top1_match"))
    assert f"reference top-1 [134] {class_name(134)}, target top-1 [3] {class_name(3)}" in top1


def test_seed_profile_passes_a_fault_the_default_catches():
    """Seeded weights saturate the softmax: a 1e-4-sized error keeps top-1 and probabilities; only the
    default profile's relative L2 catches it."""
    ref = logits()
    out = noisy(ref, 1e-4)
    c = compare_logits(ref, out)
    assert judge(c, "seed").status == "pass"
    assert judge(c, "default").status == "fail"


def test_msprobe_dual_thousandth_fails_and_warns():
    ref = logits()
    # fp32 row: share of elements over 1e-3 relative error must be below 1e-3.
    out = ref.clone()
    out[0, :10] *= 1.01
    verdict = judge(compare_logits(ref, out), "msprobe")
    assert verdict.status == "fail" and any(f.startswith("rel_err_ratio_1e-3") for f in verdict.failures)
    # one element 5e-4 off: fails nothing at 1e-3, warns at 1e-4
    out = ref.clone()
    out[0, 0] *= 1 + 5e-4
    verdict = judge(compare_logits(ref, out), "msprobe")
    assert verdict.status == "warn" and verdict.warnings[0].startswith("rel_err_ratio_1e-4")


def test_a_conditional_rule_applies_only_when_its_condition_holds():
    rule = Rule("cosine_similarity", ">=", 0.99, when=("max_abs_error", ">", 0.001))
    assert not rule.applies({"cosine_similarity": 0.5, "max_abs_error": 0.0005})
    assert rule.applies({"cosine_similarity": 0.5, "max_abs_error": 0.01})
    assert rule.applies({"cosine_similarity": 0.5, "max_abs_error": math.nan})


def test_msprobe_passes_below_a_max_abs_error_of_0001_whatever_the_ratios():
    """msprobe's order: max abs error < 0.001 passes and skips the dual-ratio test, so a
    healthy reordering whose small logits carry large relative errors passes."""
    ref = logits() * 1e-3  # logits of order 0.02: every element's error stays below 0.001
    out = ref * (1 + 1e-2)  # 1 % relative error on every element
    c = compare_logits(ref, out)
    assert c.max_abs_error < 1e-3 and c.metrics()["rel_err_ratio_1e-3"] == 1.0
    assert judge(c, "msprobe").status == "pass"
    bigger = compare_logits(ref * 1e3, out * 1e3)  # the same relative errors, now above 0.001 absolute
    assert judge(bigger, "msprobe").status == "fail"


def test_msprobe_fails_a_cosine_of_099_or_less_whatever_the_max_abs_error():
    ref = torch.zeros(1, 1000)
    ref[0, :2] = torch.tensor([1e-4, 0.0])
    out = torch.zeros(1, 1000)
    out[0, :2] = torch.tensor([0.0, 1e-4])  # orthogonal, max abs error 1e-4
    verdict = judge(compare_logits(ref, out), "msprobe")
    assert verdict.status == "fail" and verdict.failures[0].startswith("cosine_similarity: 0 <= 0.99")


def test_strict_is_assert_close():
    ref = logits()
    close = ref * (1 + 1e-6)
    assert judge(compare_logits(ref, close), "strict").status == "pass"
    verdict = judge(compare_logits(ref, ref * (1 + 1e-5)), "strict")
    assert verdict.status == "fail" and verdict.failures[0].startswith("assert_close_ratio")


def test_nan_measured_value_never_passes_a_rule():
    rule = Rule("rel_l2_error", "<=", 1.0)
    assert not rule.holds(math.nan)
    assert not Rule("cosine_similarity", ">=", 0.0).holds(math.nan)


def test_ratio_rule_only_with_truth():
    ref = logits()
    c = compare_logits(ref, ref.clone())
    assert judge(c, "msprobe").status == "pass"
    verdict = judge(c, "msprobe", {"error_ratio_vs_cpu": 3.0})
    assert verdict.status == "fail" and verdict.failures[0].startswith("error_ratio_vs_cpu: 3 > 2")
    assert judge(c, "msprobe", {"error_ratio_vs_cpu": 1.5}).status == "warn"
    assert judge(c, "default", {"error_ratio_vs_cpu": 2.5}).status == "warn"


def test_unknown_profile():
    with pytest.raises(InputError, match="Unknown profile 'lenient'. Choose one of: default, seed, msprobe, strict"):
        get_profile("lenient")
