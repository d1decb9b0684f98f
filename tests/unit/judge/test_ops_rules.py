"""The operator check fails on deliberately wrong kernels, run for real on the CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from resnet34_npu.judge.ops import check_op
from resnet34_npu.targets.spec import parse_target


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 32, 16, 16, generator=g)
    w = torch.randn(32, 32, 3, 3, generator=g) * (2 / 288) ** 0.5
    return {"x": x, "weight": w}


def test_healthy_conv_passes():
    assert check_op("conv2d", parse_target("cpu"), inputs(), stride=1, padding=1).verdict.passed


def test_conv_silently_in_fp16_fails_the_fp32_rule():
    def fp16_conv(x, weight, stride, padding):
        # inputs and output rounded to fp16, as a kernel that ignores the requested dtype does
        return F.conv2d(x.half().float(), weight.half().float(), None, stride, padding).half().float()

    result = check_op("conv2d", parse_target("cpu"), inputs(), implementation=fp16_conv, stride=1, padding=1)
    assert result.verdict.status == "fail"
    finding = result.verdict.failures[0]
    assert (finding.metric, finding.op, finding.bound, finding.precision) == ("rel_err_ratio_1e-3", "<=", 1e-3, "fp32")
    assert finding.value > 1e-3 and str(finding).startswith("rel_err_ratio_1e-3: ") and "element" in finding.detail


def test_wrong_padding_fails():
    def shifted(x, weight, stride, padding):
        out = F.conv2d(x, weight, None, stride, padding)
        return torch.roll(out, 1, dims=-1)

    assert (
        check_op("conv2d", parse_target("cpu"), inputs(), implementation=shifted, stride=1, padding=1).verdict.status
        == "fail"
    )


def test_nan_in_an_operator_fails():
    def poisoned(x):
        out = F.relu(x).clone()
        out[0, 0, 0, 0] = float("nan")
        return out

    result = check_op("relu", parse_target("cpu"), {"x": torch.randn(2, 4, 5, 5)}, implementation=poisoned)
    assert result.verdict.status == "fail" and result.verdict.failures[0].kind == "nonfinite"
    assert result.verdict.failure_lines[0].startswith("non-finite values")


def test_bf16_output_rounding_passes_bf16_rules_but_would_fail_fp32_ones():
    result = check_op("conv2d", parse_target("cpu/bf16"), inputs(), stride=1, padding=1)
    assert result.precision == "bf16" and result.verdict.passed

    def bf16_output(x, weight, stride, padding):
        # the same rounding of the output, claimed as an fp32 kernel
        return F.conv2d(x, weight, None, stride, padding).bfloat16().float()

    as_fp32 = check_op("conv2d", parse_target("cpu"), inputs(), implementation=bf16_output, stride=1, padding=1)
    assert as_fp32.precision == "fp32" and as_fp32.verdict.status == "fail"
    assert {(f.metric, f.precision) for f in as_fp32.verdict.failures} >= {("rel_err_ratio_1e-3", "fp32")}


def test_round_to_tf32_keeps_ten_mantissa_bits_to_nearest_even():
    from resnet34_npu.judge.ops import round_to

    one_ulp = 2.0**-10
    x = torch.tensor([1.0 + one_ulp / 2, 1.0 + 3 * one_ulp / 2, 1.0 + one_ulp * 0.49, -2.5, float("inf"), float("nan")])
    out = round_to(x, "tf32")
    assert out[0] == 1.0 and out[1] == 1.0 + 2 * one_ulp and out[2] == 1.0  # ties to even, then nearest
    assert out[3] == -2.5 and out[4] == float("inf") and torch.isnan(out[5])
    assert torch.equal(round_to(out[:5], "tf32"), out[:5]), "representable values pass unchanged"
    assert round_to(torch.tensor([-(1.0 + 3 * one_ulp / 2)]), "tf32") == -(1.0 + 2 * one_ulp)
    assert torch.equal(round_to(x[:4], "fp32"), x[:4])
    assert round_to(torch.tensor([1.0 + 2.0**-12]), "fp16") == 1.0
