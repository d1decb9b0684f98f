"""Operator-level conformance: each operator ResNet34 uses, run on a target and judged against
a float64 CPU run on the same inputs by Ascend's per-API standard (``criteria.OPS_PROFILE``).

Inputs are drawn on the CPU from a seed, rounded to what the target computes with (its dtype,
or TF32/HF32/fp16 when its effective precision says the device lowers fp32), so both sides see
exactly the same values and only the operator's own error is measured, then moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from resnet34_npu.judge.criteria import OPS_PROFILE, Verdict, judge
from resnet34_npu.judge.metrics import SMALL_VALUE, Comparison, compare_tensors
from resnet34_npu.targets import devices
from resnet34_npu.targets.runners import Placement
from resnet34_npu.targets.spec import TargetSpec

#: ResNet34's convolution configurations: kernel, stride, padding.
CONV_CONFIGS = {
    "7x7-s2-p3": (7, 2, 3),
    "3x3-s1-p1": (3, 1, 1),
    "3x3-s2-p1": (3, 2, 1),
    "1x1-s2-p0": (1, 2, 0),
}

OPS: dict[str, Callable[..., torch.Tensor]] = {
    "conv2d": lambda x, weight, stride, padding: F.conv2d(x, weight, None, stride, padding),
    "batch_norm": lambda x, mean, var, weight, bias: F.batch_norm(x, mean, var, weight, bias, False, 0.0, 1e-5),
    "relu": lambda x: F.relu(x),
    "max_pool2d": lambda x: F.max_pool2d(x, 3, 2, 1),
    "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, (1, 1)),
    "linear": lambda x, weight, bias: F.linear(x, weight, bias),
    "add": lambda x, y: x + y,
}


@dataclass(frozen=True)
class OpResult:
    op: str
    verdict: Verdict
    comparison: Comparison
    precision: str


#: Outputs below 1 % of the tensor's RMS count as small values (judged by absolute
#: error): they come from cancellation in a sum, and their relative error measures the
#: cancellation, not the device. msprobe's fixed thresholds (1e-6 fp32, 1e-3 fp16/bf16) assume
#: activations of order 1 and still apply as the minimum.
CANCELLATION = 1e-2


def round_to(x: torch.Tensor, precision: str) -> torch.Tensor:
    """Round float32 values to what a device computing in ``precision`` reads: fp16 and bf16
    by casting; TF32 (10-bit mantissa) and HF32 (11-bit) to nearest, ties to even. Values already
    representable pass through any rounding mode unchanged, so the device's own input
    conversion becomes exact and only the operator's error is measured."""
    if precision in ("fp16", "bf16"):
        return x.to(torch.float16 if precision == "fp16" else torch.bfloat16).to(torch.float32)
    if precision not in ("tf32", "hf32"):
        return x
    shift = 23 - (10 if precision == "tf32" else 11)
    bits = x.contiguous().view(torch.int32)
    lsb = (bits >> shift) & 1
    rounded = (bits + (1 << (shift - 1)) - 1 + lsb) & ~((1 << shift) - 1)
    finite = torch.isfinite(x)
    return torch.where(finite, rounded.view(torch.float32), x)


def small_value(reference: torch.Tensor, precision: str) -> float:
    rms = float(reference.double().pow(2).mean().sqrt()) if reference.numel() else 0.0
    return max(SMALL_VALUE[precision], CANCELLATION * rms)


def check_op(
    op: str,
    spec: TargetSpec,
    tensors: dict[str, torch.Tensor],
    *,
    implementation: Callable[..., torch.Tensor] | None = None,
    **params: Any,
) -> OpResult:
    """Run ``op`` on the target ``spec`` and on the CPU in float64, on the same inputs, and judge
    the difference. ``tensors`` are float32 CPU tensors; ``params`` are plain arguments.
    ``implementation`` replaces the target side's kernel (how the tests feed it a wrong one)."""
    placement = Placement(spec, devices.resolve_device(spec.device))
    _, precision, _ = placement.settings()
    rounded = {k: round_to(v.to(placement.dtype).to(torch.float32), precision) for k, v in tensors.items()}
    reference = OPS[op](**{k: v.double() for k, v in rounded.items()}, **params)
    moved = {k: placement.input(v) for k, v in rounded.items()}
    with placement.context():
        out = (implementation or OPS[op])(**moved, **params)
    placement.synchronize()
    n = reference.shape[0]
    comparison = compare_tensors(
        reference.reshape(n, -1),
        out.double().cpu().reshape(n, -1),
        precision=precision,
        small_value=small_value(reference, precision),
    )
    return OpResult(op, judge(comparison, OPS_PROFILE, tensor_only=True), comparison, precision)
