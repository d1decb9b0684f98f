"""Every metric against a value computed by hand with numpy, and the edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from resnet34_npu.judge.metrics import PROB_FLOOR, compare_logits, top_k

REF = np.array([[4.0, -2.0, 0.5, 1.0, 3.0, -1.0, 0.0, 2.0], [1.0, 1.5, -0.5, 2.5, 0.25, -3.0, 0.75, 2.0]])
OUT = np.array([[4.1, -2.0, 0.4, 1.0, 2.9, -1.2, 1e-7, 2.0], [1.0, 1.6, -0.5, 2.0, 0.25, -3.0, 0.75, 2.6]])


@pytest.fixture(scope="module")
def c():
    return compare_logits(torch.tensor(REF), torch.tensor(OUT))


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_absolute_and_l2(c):
    d = OUT - REF
    assert c.max_abs_error == pytest.approx(np.abs(d).max())
    assert c.mean_abs_error == pytest.approx(np.abs(d).mean())
    assert c.l2_error == pytest.approx(np.sqrt((d**2).sum()))
    assert c.rmse == pytest.approx(np.sqrt((d**2).mean()))
    per_sample = np.linalg.norm(d, axis=1) / np.linalg.norm(REF, axis=1)
    assert c.rel_l2_error == pytest.approx(per_sample.max())
    assert [s.rel_l2_error for s in c.samples] == pytest.approx(per_sample.tolist())


def test_cosine_is_the_minimum_over_samples(c):
    cos = (REF * OUT).sum(1) / (np.linalg.norm(REF, axis=1) * np.linalg.norm(OUT, axis=1))
    assert c.cosine_similarity == pytest.approx(cos.min())


def test_relative_errors_use_the_small_value_rule(c):
    rel = np.abs(OUT - REF) / np.maximum(np.abs(REF), 1e-6)
    # The reference 0.0 at [0, 6] is small: 1e-7 off counts as 1e-7 / 1e-6 = 0.1.
    assert rel[0, 6] == pytest.approx(0.1)
    assert c.max_rel_error == pytest.approx(rel.max())
    assert c.mean_rel_error == pytest.approx(rel.mean())
    for name, t in (("rel_err_ratio_1e-2", 1e-2), ("rel_err_ratio_1e-3", 1e-3), ("rel_err_ratio_1e-4", 1e-4)):
        assert c.metrics()[name] == pytest.approx((rel > t).mean())
    fp16 = compare_logits(torch.tensor(REF), torch.tensor(OUT), precision="fp16")
    assert fp16.max_rel_error == pytest.approx((np.abs(OUT - REF) / np.maximum(np.abs(REF), 1e-3)).max())


def test_error_balance(c):
    d = OUT - REF
    assert c.error_balance == pytest.approx(abs((d > 0).sum() - (d < 0).sum()) / d.size)


def test_assert_close_ratio_matches_torch_testing(c):
    rtol, atol = 1.3e-6, 1e-5
    ratio = np.abs(OUT - REF) / (atol + rtol * np.abs(REF))
    assert c.assert_close_ratio == pytest.approx(ratio.max())
    assert c.assert_close_mismatches == int((ratio > 1).sum())
    close = torch.tensor(REF) * (1 + 1e-7)
    assert compare_logits(torch.tensor(REF), close).assert_close_ratio <= 1
    torch.testing.assert_close(close, torch.tensor(REF))


def test_probability_metrics(c):
    p, q = softmax(REF), softmax(OUT)
    assert c.prob_max_abs_error == pytest.approx(np.abs(q - p).max())
    assert c.prob_mean_abs_error == pytest.approx(np.abs(q - p).mean())
    assert c.prob_max_rel_error == pytest.approx((np.abs(q - p) / np.maximum(p, PROB_FLOOR)).max())
    kl = (p * (np.log(p) - np.log(q))).sum(1)
    assert c.kl_divergence == pytest.approx(kl.max())


def test_near_zero_probabilities_cannot_blow_up_the_relative_error():
    ref = torch.tensor([[50.0, 0.0, -40.0, 1.0, 2.0, 3.0]])
    out = ref.clone()
    out[0, 2] = -30.0  # p goes from ~1e-39 to ~1e-35: a 20000x relative change of nothing
    c = compare_logits(ref, out)
    assert c.prob_max_rel_error < 1e-20


def test_rankings(c):
    for i, s in enumerate(c.samples):
        ref_top = list(np.argsort(-REF[i], kind="stable")[:5])
        out_top = list(np.argsort(-OUT[i], kind="stable")[:5])
        assert s.top1_match == (ref_top[0] == out_top[0])
        assert s.top5_overlap == len(set(ref_top) & set(out_top))
        assert s.top5_order_match == (ref_top == out_top)
    assert c.top1_match == pytest.approx(np.mean([s.top1_match for s in c.samples]))
    assert c.top5_overlap == pytest.approx(np.mean([s.top5_overlap for s in c.samples]))
    assert c.samples[1].top1_match is False and c.top1_match == 0.5  # 2.6 overtakes 2.5


def test_worst_elements(c):
    assert (c.worst_abs.sample, c.worst_abs.index) == (1, 7)
    assert c.worst_abs.reference == 2.0 and c.worst_abs.target == pytest.approx(2.6)


def test_identical_inputs_are_exactly_zero():
    x = torch.randn(3, 1000)
    c = compare_logits(x, x.clone())
    assert c.max_abs_error == c.l2_error == c.rel_l2_error == c.max_rel_error == 0.0
    assert c.cosine_similarity == pytest.approx(1.0) and c.kl_divergence == pytest.approx(0.0, abs=1e-15)
    assert c.top1_match == 1.0 and c.top5_overlap == 5.0 and c.top5_order_match == 1.0
    assert c.nonfinite_mismatch == 0 and c.assert_close_mismatches == 0


@pytest.mark.parametrize("where", ["target", "reference", "both"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_are_never_clean(where, bad):
    ref = torch.randn(2, 1000)
    out = ref.clone()
    if where in ("target", "both"):
        out[1, 17] = bad
    if where in ("reference", "both"):
        ref[1, 17] = bad
    c = compare_logits(ref, out)
    assert c.first_nonfinite is not None and (c.first_nonfinite.sample, c.first_nonfinite.index) == (1, 17)
    assert c.target_nonfinite + c.reference_nonfinite >= 1
    assert c.nonfinite_mismatch == (0 if where == "both" else 1)
    assert not math.isfinite(c.max_abs_error) and not math.isfinite(c.l2_error)


def test_all_zero_reference():
    zero = torch.zeros(1, 1000)
    assert compare_logits(zero, zero).rel_l2_error == 0.0
    c = compare_logits(zero, zero + 1e-3)
    assert c.rel_l2_error == math.inf and c.cosine_similarity == 0.0
    assert c.max_rel_error == pytest.approx(1e-3 / 1e-6)


@pytest.mark.parametrize("n", [1, 64])
def test_batches_of_1_and_64(n):
    gen = torch.Generator().manual_seed(n)
    ref = torch.randn(n, 1000, generator=gen) * 20
    out = ref + torch.randn(n, 1000, generator=gen) * 1e-3
    c = compare_logits(ref, out)
    assert c.batch_size == n and len(c.samples) == n
    d = (out.double() - ref.double()).numpy()
    r = ref.double().numpy()
    assert c.rel_l2_error == pytest.approx((np.linalg.norm(d, axis=1) / np.linalg.norm(r, axis=1)).max())
    assert c.max_abs_error == pytest.approx(np.abs(d).max())


def test_one_dimensional_logits_are_one_sample():
    x = torch.randn(1000)
    assert compare_logits(x, x).batch_size == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="differ in shape"):
        compare_logits(torch.zeros(1, 1000), torch.zeros(2, 1000))
    with pytest.raises(ValueError, match="precision 'fp8'"):
        compare_logits(torch.zeros(1, 10), torch.zeros(1, 10), precision="fp8")


def test_report_names_are_exact(c):
    expected = {
        "max_abs_error",
        "mean_abs_error",
        "l2_error",
        "rel_l2_error",
        "cosine_similarity",
        "rmse",
        "max_rel_error",
        "mean_rel_error",
        "error_balance",
        "rel_err_ratio_1e-2",
        "rel_err_ratio_1e-3",
        "rel_err_ratio_1e-4",
        "nonfinite_mismatch",
        "prob_max_abs_error",
        "prob_mean_abs_error",
        "prob_max_rel_error",
        "kl_divergence",
        "top1_match",
        "top5_overlap",
        "top5_order_match",
    }
    assert expected <= set(c.metrics())
    assert set(c.to_dict()["samples"][0]) >= {"top1_match", "top5_overlap", "top5_order_match"}


def test_top_k():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    top = top_k(logits, 2)[0]
    assert [i for i, _ in top] == [1, 3]
    assert top[0][1] == pytest.approx(softmax(logits.numpy().astype(np.float64))[0, 1])
