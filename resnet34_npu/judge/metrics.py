"""Metrics that compare a target's output with a reference's, computed in float64 on the CPU:
:func:`compare_tensors` for any tensor, :func:`compare_logits` a thin layer on it for logits.

Key names are part of the report schema (docs/report-schema.md) and never change meaning.

Logits
    ``max_abs_error``, ``mean_abs_error``, ``rmse``; ``l2_error`` = ||out - ref|| over the whole
    batch; ``rel_l2_error`` = max over samples of ||out_i - ref_i|| / ||ref_i|| (the worst sample);
    ``cosine_similarity`` = min over samples; ``max_rel_error`` / ``mean_rel_error`` and
    ``rel_err_ratio_1e-2`` / ``_1e-3`` / ``_1e-4`` (share of elements whose relative error
    exceeds the threshold) use msprobe's small-value rule: the relative error of an element is
    |out - ref| / max(|ref|, s), with s = 1e-6 for fp32 and 1e-3 for reduced precisions.
    Below s that is an absolute error scaled by 1/s, so an element under s fails the
    thousandth test (fp32) exactly when |out - ref| > 1e-9, msprobe's fp32 atol, and the
    hundredth test (fp16/bf16) exactly when it exceeds 1e-5, msprobe's fp16/bf16 atol.
    ``error_balance`` = |#(out > ref) - #(out < ref)| / N; ``nonfinite_mismatch`` counts the
    elements where the two sides are not the same non-finite value (NaN, +Inf, -Inf) or one is
    non-finite and the other is not. ``assert_close_ratio`` = max |out - ref| / (atol + rtol
    |ref|) with ``torch.testing.assert_close``'s default tolerances for the precision (<= 1 means
    assert_close passes), ``assert_close_mismatches`` the count of elements over it.
Probabilities (softmax in float64)
    ``prob_max_abs_error``, ``prob_mean_abs_error``; ``prob_max_rel_error`` = max |p_out - p_ref|
    / max(p_ref, 1e-4): probabilities below 1e-4 (those that print as 0.0000) count as 1e-4, so
    near-zero classes cannot blow the model card's pass metric up; ``kl_divergence`` =
    max over samples of KL(p_ref || p_out).
Rankings, per sample and in total
    ``top1_match`` (share of samples whose top-1 agrees), ``top5_overlap`` (mean of 0..5),
    ``top5_order_match`` (share of samples with the same top-5 in the same order).

Any NaN or Inf makes the arithmetic metrics NaN or Inf; verdicts treat that as a failure
whatever a comparison with NaN would say.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from resnet34_npu.core.constants import PRECISIONS

if TYPE_CHECKING:
    import torch

#: |ref| below this is judged by absolute error (msprobe's small-value rule), per precision.
SMALL_VALUE = {"fp32": 1e-6, "fp64": 1e-6, "tf32": 1e-3, "hf32": 1e-3, "fp16": 1e-3, "bf16": 1e-3}
#: torch.testing.assert_close's default (rtol, atol); tf32 and hf32 (10- and 11-bit mantissas) share fp16's.
ASSERT_CLOSE_TOLERANCES = {
    "fp64": (1e-7, 1e-7),
    "fp32": (1.3e-6, 1e-5),
    "tf32": (1e-3, 1e-5),
    "hf32": (1e-3, 1e-5),
    "fp16": (1e-3, 1e-5),
    "bf16": (1.6e-2, 1e-5),
}
assert tuple(ASSERT_CLOSE_TOLERANCES) == PRECISIONS and set(SMALL_VALUE) == set(PRECISIONS)
PROB_FLOOR = 1e-4
REL_THRESHOLDS = (("rel_err_ratio_1e-2", 1e-2), ("rel_err_ratio_1e-3", 1e-3), ("rel_err_ratio_1e-4", 1e-4))


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes, computed in float64 on the CPU."""
    import torch

    return torch.softmax(logits.detach().cpu().to(torch.float64), dim=-1)


def top_k(logits: torch.Tensor, k: int = 5) -> list[list[tuple[int, float]]]:
    """Per sample, the ``k`` most likely (class index, probability) pairs, best first."""
    probs = probabilities(logits.reshape(-1, logits.shape[-1]))
    values, indices = probs.topk(k, dim=-1)
    return [[(int(i), float(v)) for i, v in zip(row_i, row_v)] for row_i, row_v in zip(indices, values)]


@dataclass(frozen=True)
class Element:
    """One element of the logits: where it is and both sides' values."""

    sample: int
    index: int
    reference: float
    target: float

    def to_dict(self) -> dict[str, Any]:
        return {"sample": self.sample, "class": self.index, "reference": self.reference, "target": self.target}


@dataclass(frozen=True)
class SampleRanking:
    top1_match: bool
    top5_overlap: int
    top5_order_match: bool
    reference_top5: tuple[int, ...]
    target_top5: tuple[int, ...]
    rel_l2_error: float
    cosine_similarity: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


@dataclass(frozen=True)
class Comparison:
    """Every metric of one reference/target pair of logits [N, C]; see the module docstring."""

    precision: str
    batch_size: int
    max_abs_error: float
    mean_abs_error: float
    l2_error: float
    rel_l2_error: float
    cosine_similarity: float
    rmse: float
    max_rel_error: float
    mean_rel_error: float
    error_balance: float
    rel_err_ratio_1e_2: float
    rel_err_ratio_1e_3: float
    rel_err_ratio_1e_4: float
    nonfinite_mismatch: int
    target_nonfinite: int
    reference_nonfinite: int
    assert_close_ratio: float
    assert_close_mismatches: int
    prob_max_abs_error: float
    prob_mean_abs_error: float
    prob_max_rel_error: float
    kl_divergence: float
    top1_match: float
    top5_overlap: float
    top5_order_match: float
    worst_abs: Element
    worst_rel: Element
    worst_tolerance: Element
    first_nonfinite: Element | None
    samples: tuple[SampleRanking, ...] = field(default=())

    def metrics(self) -> dict[str, float]:
        """The scalar metrics under their report names (``rel_err_ratio_1e-3``, ...)."""
        out: dict[str, float] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and f.name != "batch_size":
                out[f.name.replace("_1e_", "_1e-")] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.metrics(),
            "precision": self.precision,
            "batch_size": self.batch_size,
            "worst_abs": self.worst_abs.to_dict(),
            "worst_rel": self.worst_rel.to_dict(),
            "worst_tolerance": self.worst_tolerance.to_dict(),
            "first_nonfinite": None if self.first_nonfinite is None else self.first_nonfinite.to_dict(),
            "samples": [s.to_dict() for s in self.samples],
        }


#: The scalar metrics every :class:`Comparison` has, under their report names (what
#: :meth:`Comparison.metrics` returns): the names a profile's rules may use.
COMPARISON_METRICS: tuple[str, ...] = tuple(
    f.name.replace("_1e_", "_1e-")
    for f in fields(Comparison)
    if f.type in ("float", "int", float, int) and f.name != "batch_size"
)
#: The float64-truth metrics (``--fp64-truth``; ``compare.truth_metrics``): absent without it,
#: so a rule on one of them does not apply then.
TRUTH_METRICS: tuple[str, ...] = ("truth_rel_l2_error", "reference_truth_rel_l2_error", "error_ratio_vs_cpu")


def worst_of(values: list[float], largest: bool = True) -> float:
    """max (or min) that returns NaN when any value is NaN (Python's max skips it by position)."""
    if any(math.isnan(v) for v in values):
        return math.nan
    return max(values) if largest else min(values)


def _as_2d(x: torch.Tensor) -> torch.Tensor:
    import torch

    x = x.detach().cpu().to(torch.float64)
    return x.reshape(1, -1) if x.dim() == 1 else x.reshape(x.shape[0], -1)


def _element(ref: torch.Tensor, out: torch.Tensor, flat_index: int) -> Element:
    sample, index = divmod(int(flat_index), ref.shape[1])
    return Element(sample, index, float(ref[sample, index]), float(out[sample, index]))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    import torch

    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(torch.dot(a, b) / (na * nb))


def rel_l2(diff: torch.Tensor, ref: torch.Tensor) -> float:
    num, den = float(diff.norm()), float(ref.norm())
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def _nonfinite_class(x: torch.Tensor) -> torch.Tensor:
    """0 finite, 1 NaN, 2 +Inf, 3 -Inf."""
    import torch

    cls = torch.zeros_like(x, dtype=torch.int8)
    cls[torch.isnan(x)] = 1
    cls[x == math.inf] = 2
    cls[x == -math.inf] = 3
    return cls


def compare_tensors(
    reference: torch.Tensor, target: torch.Tensor, *, precision: str = "fp32", small_value: float | None = None
) -> Comparison:
    """Compare two tensors ([N, ...] or [C]; a feature map, an operator's output, logits) in
    float64 on the CPU, sample by sample along the first dimension. ``precision`` (the target's
    effective precision) picks the small-value threshold (``small_value`` overrides it) and the
    assert_close tolerances. The probability and ranking metrics are NaN here: see
    :func:`compare_logits`."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    ref, out = _as_2d(reference), _as_2d(target)
    if ref.shape != out.shape:
        raise ValueError(f"reference {tuple(ref.shape)} and target {tuple(out.shape)} differ in shape")
    n = ref.shape[0]
    diff = out - ref
    absdiff = diff.abs()
    numel = ref.numel()

    small = SMALL_VALUE[precision] if small_value is None else small_value
    ref_abs = ref.abs()
    rel = absdiff / ref_abs.clamp_min(small)
    rtol, atol = ASSERT_CLOSE_TOLERANCES[precision]
    tolerance_ratio = absdiff / (atol + rtol * ref_abs)

    if bool(torch.isfinite(ref).all()) and bool(torch.isfinite(out).all()):  # the usual case, at a third of the cost
        ref_cls = out_cls = torch.zeros((), dtype=torch.int8)
    else:
        ref_cls, out_cls = _nonfinite_class(ref), _nonfinite_class(out)
    nonfinite = (ref_cls != 0) | (out_cls != 0)
    any_nonfinite = bool(nonfinite.any())
    flat_nonfinite = torch.nonzero(nonfinite.reshape(-1))

    def worst(values: torch.Tensor) -> Element:
        # NaN sorts as the worst, so a NaN element is the one a failure line shows (finite
        # inputs give none while the divisors are at least a positive threshold or atol).
        flat = values.reshape(-1)
        if any_nonfinite or small <= 0:
            flat = torch.where(torch.isnan(flat), torch.full_like(flat, math.inf), flat)
        return _element(ref, out, int(torch.argmax(flat)))

    samples = tuple(
        SampleRanking(False, 0, False, (), (), rel_l2(diff[i], ref[i]), _cosine(ref[i], out[i])) for i in range(n)
    )
    ratios = {name: int(torch.count_nonzero(rel > t)) / numel for name, t in REL_THRESHOLDS}
    return Comparison(
        precision=precision,
        batch_size=n,
        max_abs_error=float(absdiff.max()),
        mean_abs_error=float(absdiff.mean()),
        l2_error=float(diff.norm()),
        rel_l2_error=math.nan if any_nonfinite else worst_of([s.rel_l2_error for s in samples]),
        cosine_similarity=math.nan
        if any_nonfinite
        else worst_of([s.cosine_similarity for s in samples], largest=False),
        rmse=float(diff.pow(2).mean().sqrt()),
        max_rel_error=float(rel.max()),
        mean_rel_error=float(rel.mean()),
        error_balance=float(((diff > 0).sum() - (diff < 0).sum()).abs()) / numel,
        rel_err_ratio_1e_2=math.nan if any_nonfinite else ratios["rel_err_ratio_1e-2"],
        rel_err_ratio_1e_3=math.nan if any_nonfinite else ratios["rel_err_ratio_1e-3"],
        rel_err_ratio_1e_4=math.nan if any_nonfinite else ratios["rel_err_ratio_1e-4"],
        nonfinite_mismatch=int((ref_cls != out_cls).sum()),
        target_nonfinite=int((out_cls != 0).sum()),
        reference_nonfinite=int((ref_cls != 0).sum()),
        assert_close_ratio=float(tolerance_ratio.max()),
        assert_close_mismatches=int((~(tolerance_ratio <= 1)).sum()),
        prob_max_abs_error=math.nan,
        prob_mean_abs_error=math.nan,
        prob_max_rel_error=math.nan,
        kl_divergence=math.nan,
        top1_match=math.nan,
        top5_overlap=math.nan,
        top5_order_match=math.nan,
        worst_abs=worst(absdiff),
        worst_rel=worst(rel),
        worst_tolerance=worst(tolerance_ratio),
        first_nonfinite=_element(ref, out, int(flat_nonfinite[0])) if len(flat_nonfinite) else None,
        samples=samples,
    )


def compare_logits(reference: torch.Tensor, target: torch.Tensor, *, precision: str = "fp32") -> Comparison:
    """:func:`compare_tensors` on logits [N, C] (or [C]), plus what only logits have: the
    probability metrics (softmax in float64) and the rankings, per sample and in total."""
    import torch

    tensors = compare_tensors(reference, target, precision=precision)
    ref, out = _as_2d(reference), _as_2d(target)
    p_ref, p_out = probabilities(ref), probabilities(out)
    p_diff = (p_out - p_ref).abs()
    kl = (p_ref * (torch.log_softmax(ref, dim=-1) - torch.log_softmax(out, dim=-1))).sum(dim=-1)
    k = min(5, ref.shape[1])
    samples = []
    for i, errors in enumerate(tensors.samples):
        ref_top = tuple(int(c) for c in torch.topk(ref[i], k).indices)
        out_top = tuple(int(c) for c in torch.topk(out[i], k).indices)
        samples.append(
            dataclasses.replace(
                errors,
                top1_match=ref_top[0] == out_top[0] and bool(torch.isfinite(out[i]).all()),
                top5_overlap=len(set(ref_top) & set(out_top)),
                top5_order_match=ref_top == out_top,
                reference_top5=ref_top,
                target_top5=out_top,
            )
        )
    n = len(samples)
    return dataclasses.replace(
        tensors,
        prob_max_abs_error=float(p_diff.max()),
        prob_mean_abs_error=float(p_diff.mean()),
        prob_max_rel_error=float((p_diff / p_ref.clamp_min(PROB_FLOOR)).max()),
        kl_divergence=float(kl.max()),
        top1_match=sum(s.top1_match for s in samples) / n,
        top5_overlap=sum(s.top5_overlap for s in samples) / n,
        top5_order_match=sum(s.top5_order_match for s in samples) / n,
        samples=tuple(samples),
    )
