"""The target matrix: one definition for pytest and compare, derived from the device registry;
reduced precision on the CPU follows the CPU's native kernels."""

from __future__ import annotations

import pytest
import torch

from resnet34_npu.targets import devices
from resnet34_npu.targets.matrix import choose_targets, compare_defaults, default_matrix


def test_without_native_kernels_reduced_cpu_targets_are_skipped_with_the_reason(avx2_only):
    matrix = {c.name: c for c in default_matrix()}
    assert matrix["cpu/fp32"].runnable and matrix["cpu/fp32/channels_last"].runnable
    for name, dtype in (("cpu/bf16-autocast", "bf16"), ("cpu/fp16-autocast", "fp16")):
        choice = matrix[name]
        assert not choice.runnable and not choice.reason, "it can run: -m slow runs it"
        assert choice.slow_reason.startswith(f"{name}: this CPU has no native {dtype} kernels")
        assert "ATen CPU capability is AVX2" in choice.slow_reason or "oneDNN" in choice.slow_reason
        assert choice.slow_reason.endswith("run it with -m slow or --r34-target")
    chosen = [c.name for c in compare_defaults()[0]]
    if not any(devices.probe(k).available for k in ("npu", "cuda", "mps", "xpu")):
        assert chosen == ["cpu/fp32", "cpu/fp32/channels_last", "cpu/fp32/ort"]
    else:  # an accelerator's targets, never the CPU's
        assert chosen and not any(name.startswith("cpu") for name in chosen), chosen


@pytest.mark.parametrize(
    "machine, capability, onednn, native",
    [
        ("x86_64", "AVX512", True, True),
        ("x86_64", "AMX", True, True),
        ("x86_64", "AVX2", True, False),  # oneDNN has the kernels, ATen is held to AVX2 (ATEN_CPU_CAPABILITY=avx2)
        ("x86_64", "AVX512", False, False),
        ("aarch64", "DEFAULT", True, True),  # the AVX-512 rule is x86's
        ("aarch64", "DEFAULT", False, False),
    ],
)
def test_native_kernels_put_the_target_in_the_matrix(monkeypatch, machine, capability, onednn, native):
    monkeypatch.setattr(devices.platform, "machine", lambda: machine)
    monkeypatch.setattr(devices, "cpu_capability", lambda: capability)
    for dtype in ("bf16", "fp16"):
        monkeypatch.setattr(torch.ops.mkldnn, f"_is_mkldnn_{dtype}_supported", lambda: onednn)
    devices.cpu_native_kernels.cache_clear()
    try:
        matrix = {c.name: c for c in default_matrix()}
    finally:
        devices.cpu_native_kernels.cache_clear()
    for dtype, name in (("bf16", "cpu/bf16-autocast"), ("fp16", "cpu/fp16-autocast")):
        assert matrix[name].runnable is native, matrix[name]
        if not native:
            why = (
                f"ATen CPU capability is {capability}" if onednn else f"oneDNN: _is_mkldnn_{dtype}_supported() is False"
            )
            assert matrix[name].slow_reason.startswith(f"{name}: this CPU has no native {dtype} kernels ({why}; ")


def test_every_shown_kind_appears_and_absent_ones_say_why(monkeypatch):
    shown = [k.name for k in devices.KINDS.values() if k.shown]
    assert shown == ["npu", "cuda", "mps"]  # written out: xpu is listed by `devices` but not in the matrix
    absent = {name: devices.KindStatus(name, False, 0, f"no {name} card in this test") for name in shown}
    probe = devices.probe
    monkeypatch.setattr(devices, "probe", lambda kind: absent.get(kind) or probe(kind))
    matrix = default_matrix()
    for name in shown:
        entries = [c for c in matrix if c.kind == name]
        assert [(c.reason, c.runnable) for c in entries] == [(f"{name.upper()}: no {name} card in this test", False)]


def test_named_targets_run_whatever_the_kernels(avx2_only):
    chosen = choose_targets(["cpu/bf16-autocast", "auto"])
    assert [c.name for c in chosen][0] == "cpu/bf16-autocast" and chosen[0].runnable
    assert chosen[1].name.endswith("/fp32") and not chosen[1].name.startswith("auto")
