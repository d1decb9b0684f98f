"""Operator-level conformance, per target: every operator ResNet34 uses, in ResNet34's
configurations with random channel counts and sizes (Hypothesis, bounded by the `ci` profile),
against a float64 CPU run on the same inputs, judged by Ascend's per-API standard."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from resnet34_npu.judge.ops import CONV_CONFIGS, check_op
from resnet34_npu.targets.spec import CustomSpec, parse_target

pytestmark = pytest.mark.ops


def _spec(r34_target):
    spec = parse_target(r34_target)
    if isinstance(spec, CustomSpec):
        pytest.skip("custom targets are tested as whole models; operator tests need a device target")
    if spec.execution:
        pytest.skip(f"{spec.execution} targets are tested as whole models; operator tests run eager operators")
    return spec


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _check(r34, r34_target, op, tensors, **params):
    """``check_op`` on the target under the suite's watchdog (a card that hangs is named, and a card
    that failed before is not called again), asserting its verdict."""
    spec = _spec(r34_target)
    result = r34.watched(r34_target, lambda: check_op(op, spec, tensors, **params))
    assert result.verdict.passed, f"{result.op} on {result.precision}:\n" + "\n".join(result.verdict.failure_lines)


seeds = st.integers(0, 2**31 - 1)


@pytest.mark.parametrize("config", list(CONV_CONFIGS))
@given(seed=seeds, cin=st.integers(1, 64), cout=st.integers(1, 64), size=st.integers(7, 32), batch=st.integers(1, 2))
def test_conv2d(r34, r34_target, config, seed, cin, cout, size, batch):
    kernel, stride, padding = CONV_CONFIGS[config]
    g = _gen(seed)
    x = torch.randn(batch, cin, size, size, generator=g)
    weight = torch.randn(cout, cin, kernel, kernel, generator=g) * (2 / (cin * kernel * kernel)) ** 0.5
    _check(r34, r34_target, "conv2d", {"x": x, "weight": weight}, stride=stride, padding=padding)


@given(seed=seeds, channels=st.integers(1, 512), size=st.integers(1, 16))
def test_batch_norm_eval(r34, r34_target, seed, channels, size):
    g = _gen(seed)
    tensors = {
        "x": torch.randn(2, channels, size, size, generator=g),
        "mean": torch.randn(channels, generator=g) * 0.1,
        "var": torch.rand(channels, generator=g) + 0.5,
        "weight": torch.rand(channels, generator=g) + 0.5,
        "bias": torch.randn(channels, generator=g) * 0.1,
    }
    _check(r34, r34_target, "batch_norm", tensors)


@given(seed=seeds, channels=st.integers(1, 128), size=st.integers(1, 32))
def test_relu(r34, r34_target, seed, channels, size):
    _check(r34, r34_target, "relu", {"x": torch.randn(2, channels, size, size, generator=_gen(seed))})


@given(seed=seeds, channels=st.integers(1, 64), size=st.integers(2, 56))
def test_max_pool2d_3_2_1(r34, r34_target, seed, channels, size):
    _check(r34, r34_target, "max_pool2d", {"x": torch.randn(2, channels, size, size, generator=_gen(seed))})


@given(seed=seeds, channels=st.integers(1, 512), size=st.integers(1, 14))
def test_adaptive_avg_pool2d(r34, r34_target, seed, channels, size):
    _check(r34, r34_target, "adaptive_avg_pool2d", {"x": torch.randn(2, channels, size, size, generator=_gen(seed))})


@given(seed=seeds, features=st.integers(1, 512), classes=st.integers(1, 1000), batch=st.integers(1, 8))
def test_linear(r34, r34_target, seed, features, classes, batch):
    g = _gen(seed)
    tensors = {
        "x": torch.randn(batch, features, generator=g),
        "weight": torch.randn(classes, features, generator=g) / features**0.5,
        "bias": torch.randn(classes, generator=g) * 0.1,
    }
    _check(r34, r34_target, "linear", tensors)


@given(seed=seeds, channels=st.integers(1, 128), size=st.integers(1, 28))
def test_add(r34, r34_target, seed, channels, size):
    g = _gen(seed)
    x, y = torch.randn(2, channels, size, size, generator=g), torch.randn(2, channels, size, size, generator=g)
    _check(r34, r34_target, "add", {"x": x, "y": y})
