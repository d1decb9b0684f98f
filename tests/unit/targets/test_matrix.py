"""The target matrix: one definition for pytest and compare, derived from the device registry;
reduced precision on the CPU follows the CPU's native kernels."""

from __future__ import annotations

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


def test_native_kernels_put_the_target_in_the_matrix():
    native = devices.cpu_native_kernels()
    matrix = {c.name: c for c in default_matrix()}
    for dtype, name in (("bf16", "cpu/bf16-autocast"), ("fp16", "cpu/fp16-autocast")):
        assert matrix[name].runnable == (native[dtype] == "")


def test_every_shown_kind_appears_and_absent_ones_say_why():
    matrix = default_matrix()
    shown = [k.name for k in devices.KINDS.values() if k.shown]
    assert shown == ["npu", "cuda", "mps"]  # written out: xpu is listed by `devices` but not in the matrix
    for name in ("npu", "cuda", "mps"):
        if not devices.probe(name).available:
            entry = next(c for c in matrix if c.kind == name)
            assert entry.reason == f"{name.upper()}: {devices.probe(name).reason}" and entry.reason.split(": ", 1)[1]


def test_named_targets_run_whatever_the_kernels(avx2_only):
    chosen = choose_targets(["cpu/bf16-autocast", "auto"])
    assert [c.name for c in chosen][0] == "cpu/bf16-autocast" and chosen[0].runnable
    assert chosen[1].name.endswith("/fp32") and not chosen[1].name.startswith("auto")
