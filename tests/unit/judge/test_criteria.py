"""Verdicts: each profile's rules pass what they should and fail a deliberately wrong input."""

from __future__ import annotations

import math

import pytest
import torch

from resnet34_npu import InputError
from resnet34_npu.judge.compare import truth_metrics
from resnet34_npu.judge.criteria import OPS_PROFILE, PROFILES, Finding, Rule, get_profile, judge
from resnet34_npu.judge.metrics import COMPARISON_METRICS, TRUTH_METRICS, compare_logits
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
    finding = verdict.failures[0]
    assert (finding.kind, finding.metric, finding.value, finding.bound) == ("nonfinite", "target_nonfinite", 1.0, 0.0)
    assert str(finding).startswith("non-finite values: target has 1")
    assert f"class 7 {class_name(7)!r}" in str(finding)


@pytest.mark.parametrize(
    "precision, healthy, broken",
    [("fp32", 4e-7, 1e-4), ("fp16", 5.4e-4, 1e-2), ("tf32", 5.4e-4, 1e-2), ("bf16", 4.3e-3, 5e-2)],
)
def test_default_profile_bounds_per_precision(precision, healthy, broken):
    ref = logits()
    assert judge(compare_logits(ref, noisy(ref, healthy), precision=precision)).passed
    c = compare_logits(ref, noisy(ref, broken), precision=precision)
    verdict = judge(c)
    assert verdict.status == "fail"
    bound = {"fp32": 1e-5, "fp16": 3e-3, "tf32": 3e-3, "bf16": 2.5e-2}[precision]
    finding = verdict.failures[0]
    assert (finding.kind, finding.metric, finding.op, finding.bound, finding.value, finding.precision) == (
        "rule",
        "rel_l2_error",
        "<=",
        bound,
        c.rel_l2_error,
        precision,
    )
    assert finding.level == "fail" and finding.stage is None and finding.detail.startswith("worst element: sample")
    assert verdict.failure_lines[0].startswith("rel_l2_error: ") and f"for {precision})" in verdict.failure_lines[0]


def test_failure_line_reads_like_assert_close():
    ref = logits()
    out = ref.clone()
    out[1, 500] += 3.0
    verdict = judge(compare_logits(ref, out))
    line = verdict.failure_lines[0]
    c = compare_logits(ref, out)
    assert (
        line
        == str(verdict.failures[0])
        == verdict.to_dict()["failures"][0]
        == (
            f"rel_l2_error: {c.rel_l2_error:.3e} > 1.000e-05 (allowed: <= 1.000e-05 for fp32); worst element: "
            f"sample 1, class 500 {class_name(500)!r}: reference {ref[1, 500].item():.6g}, "
            f"target {out[1, 500].item():.6g}, "
            f"diff {out[1, 500].item() - ref[1, 500].item():.3e}"
        )
    )


def test_top1_mismatch_names_both_classes():
    ref = logits()
    out = ref.clone()
    out[0, 134], out[0, 3] = ref[0, 3], ref[0, 134]  # two logits swapped
    failures = judge(compare_logits(ref, out), "seed").failures
    top1 = next(f for f in failures if f.metric == "top1_match")
    assert (top1.value, top1.op, top1.bound) == (0.5, ">=", 1.0)
    assert f"reference top-1 [134] {class_name(134)}, target top-1 [3] {class_name(3)}" in top1.detail


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
    assert verdict.status == "fail" and any(f.metric == "rel_err_ratio_1e-3" for f in verdict.failures)
    # one element 5e-4 off: fails nothing at 1e-3, warns at 1e-4
    out = ref.clone()
    out[0, 0] *= 1 + 5e-4
    verdict = judge(compare_logits(ref, out), "msprobe")
    assert verdict.status == "warn" and not verdict.failures
    warning = verdict.warnings[0]
    assert (warning.metric, warning.level, warning.when) == (
        "rel_err_ratio_1e-4",
        "warn",
        ("max_abs_error", ">=", 0.001),
    )
    assert str(warning).startswith("rel_err_ratio_1e-4: ") and "(applies since max_abs_error >= 1.000e-03)" in str(
        warning
    )


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
    assert verdict.status == "fail" and verdict.failure_lines[0].startswith("cosine_similarity: 0 <= 0.99")
    assert (verdict.failures[0].metric, verdict.failures[0].value, verdict.failures[0].bound) == (
        "cosine_similarity",
        0.0,
        0.99,
    )


def test_strict_is_assert_close():
    ref = logits()
    close = ref * (1 + 1e-6)
    assert judge(compare_logits(ref, close), "strict").status == "pass"
    verdict = judge(compare_logits(ref, ref * (1 + 1e-5)), "strict")
    assert verdict.status == "fail" and verdict.failures[0].metric == "assert_close_ratio"
    assert verdict.failures[0].value > 1.0 and verdict.failure_lines[0].startswith("assert_close_ratio: ")


def test_nan_measured_value_never_passes_a_rule():
    rule = Rule("rel_l2_error", "<=", 1.0)
    assert not rule.holds(math.nan)
    assert not Rule("cosine_similarity", ">=", 0.0).holds(math.nan)


def test_ratio_rule_only_with_truth():
    ref = logits()
    c = compare_logits(ref, ref.clone())
    assert judge(c, "msprobe").status == "pass"
    verdict = judge(c, "msprobe", {"error_ratio_vs_cpu": 3.0})
    assert verdict.status == "fail" and verdict.failure_lines[0].startswith("error_ratio_vs_cpu: 3 > 2")
    assert (verdict.failures[0].metric, verdict.failures[0].value) == ("error_ratio_vs_cpu", 3.0)
    assert judge(c, "msprobe", {"error_ratio_vs_cpu": 1.5}).status == "warn"
    assert judge(c, "default", {"error_ratio_vs_cpu": 2.5}).status == "warn"


def test_a_finding_is_data_and_its_dict_carries_the_line():
    ref = logits()
    out = ref.clone()
    out[1, 500] += 3.0
    verdict = judge(compare_logits(ref, out))
    doc = verdict.to_dict()
    assert doc["failures"] == list(verdict.failure_lines)
    first = doc["findings"]["failures"][0]
    assert first == {
        "kind": "rule",
        "level": "fail",
        "rule": "rel_l2_error <= 1.000e-05",
        "metric": "rel_l2_error",
        "value": verdict.failures[0].value,
        "bound": 1e-5,
        "precision": "fp32",
        "stage": None,
        "line": doc["failures"][0],
    }
    assert doc["findings"]["warnings"] == []
    with pytest.raises(ValueError, match="finding kind 'oops'"):
        Finding("oops")


def test_every_profile_names_only_metrics_a_comparison_or_the_truth_has():
    """A rule on a metric no comparison has would never apply: every rule of every profile (and
    of the operator profile) names one the comparison or the float64 truth really produces."""
    ref = logits()
    produced = set(compare_logits(ref, ref.clone()).metrics())
    truth = set(truth_metrics(ref.double(), ref, ref.clone()))
    assert produced == set(COMPARISON_METRICS) and truth == set(TRUTH_METRICS)
    for profile in [*PROFILES.values(), OPS_PROFILE]:
        for row, rules in profile.rows.items():
            for rule in rules:
                names = {rule.metric} | ({rule.when[0]} if rule.when else set())
                assert names <= produced | truth, (profile.name, row, rule)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metric": "rel_l2_eror", "op": "<=", "bound": 1e-5}, "rule on unknown metric 'rel_l2_eror'"),
        (
            {"metric": "cosine_similarity", "op": ">", "bound": 0.99, "when": ("max_abs_eror", ">=", 1e-3)},
            "rule on unknown metric 'max_abs_eror'",
        ),
        ({"metric": "rel_l2_error", "op": "=<", "bound": 1e-5}, "unknown operator '=<'"),
        ({"metric": "rel_l2_error", "op": "<=", "bound": 1e-5, "level": "error"}, "level 'error'"),
    ],
)
def test_a_typo_in_a_rule_is_refused_when_it_is_defined(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Rule(**kwargs)


def test_a_comparison_metric_missing_at_judge_time_is_an_error_not_a_skipped_rule(monkeypatch):
    ref = logits()
    c = compare_logits(ref, ref * 2)  # fails the default profile's rel_l2_error rule
    full = type(c).metrics
    monkeypatch.setattr(type(c), "metrics", lambda self: {k: v for k, v in full(self).items() if k != "rel_l2_error"})
    with pytest.raises(KeyError, match="needs metric 'rel_l2_error'"):
        judge(c)
    # a float64-truth metric is absent without --fp64-truth: that rule does not apply
    monkeypatch.setattr(type(c), "metrics", full)
    assert not Rule("error_ratio_vs_cpu", "<=", 2.0).applies(c.metrics())
    assert all(f.metric != "error_ratio_vs_cpu" for f in judge(c).failures + judge(c).warnings)


def test_unknown_profile():
    with pytest.raises(InputError, match="Unknown profile 'lenient'. Choose one of: default, seed, msprobe, strict"):
        get_profile("lenient")


def test_the_deciding_rule_is_the_broken_one_else_the_headline():
    from resnet34_npu.judge.criteria import PROFILES, deciding_rule

    profile = PROFILES["default"]
    healthy = {"rel_l2_error": 1e-7, "cosine_similarity": 1.0, "top1_match": 1.0, "top5_overlap": 5.0}
    rule, value = deciding_rule(profile, "fp32", healthy)
    assert (rule.metric, rule.op, rule.bound, value) == ("rel_l2_error", "<=", 1e-5, 1e-7)
    rule, value = deciding_rule(profile, "fp32", {**healthy, "top1_match": 0.0})
    assert (rule.metric, value) == ("top1_match", 0.0), "the broken fail rule, not the headline"
    rule, _ = deciding_rule(profile, "fp32", {**healthy, "top5_overlap": 4.0})
    assert rule.metric == "top5_overlap" and rule.level == "warn"
    rule, _ = deciding_rule(profile, "bf16", {**healthy, "rel_l2_error": 0.5, "top1_match": 0.0})
    assert rule.metric == "rel_l2_error", "a broken fail rule before a broken warn rule"
    assert deciding_rule(profile, "fp32", {}) is None
