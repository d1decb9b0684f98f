"""Negative and positive controls: realistic ways a port goes wrong, and healthy variants.

Each control is a custom target factory (``resnet34_npu.faults:NAME``), built and judged
through exactly the path a real device takes (``Session.runner`` then ``Session.compare``), so
the suite's ability to fail is itself tested. Faults claim fp32, as a broken port would.
Every fault keeps ResNet34's module names, so localization can name the stage that broke.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnet34_npu.core.constants import IMAGES_DIR, PHOTOS
from resnet34_npu.judge.compare import Session
from resnet34_npu.judge.criteria import Status, judge, worst_status
from resnet34_npu.judge.metrics import worst_of

#: The convolution and BatchNorm the weight and statistics faults touch.
CONV = "layer3.0.conv2"
BN = "layer2.0.bn2"
FP16_LAYER = "layer3"
RESIDUAL_BLOCK = "layer2.1"
SWAPPED = (0, 1)
NAN_AT = (0, 500)
#: The convolution (in graph order: 0 is conv1) that the miscompiling backend scales.
MISCOMPILED_CONV = 10


def _named(module: Any, name: str, precision: str = "fp32") -> Any:
    module.name = name
    module.precision = precision
    return module


def _noisy_conv(model: torch.nn.Module, relative: float, seed: int = 0) -> None:
    weight = model.get_submodule(CONV).weight
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight.mul_(1 + relative * torch.randn(weight.shape, generator=gen))


def conv_weight_noise(model: torch.nn.Module) -> torch.nn.Module:
    """Fault: one convolution's weights perturbed by 1e-3 relative noise (a bad weight copy)."""
    _noisy_conv(model, 1e-3)
    return _named(model, "fault:conv-weight-noise-1e-3")


def _to_fp16(x: torch.Tensor) -> torch.Tensor:
    return x.half().float()


def layer_in_fp16(model: torch.nn.Module) -> torch.nn.Module:
    """Fault: layer3 silently computed in fp16 (a kernel that ignores the requested dtype):
    its weights, its input and every operator's output rounded to fp16. The arithmetic runs in
    fp32 on fp16 values, which is what an fp16 kernel with fp32 accumulation computes, at fp32
    speed on any CPU (real fp16 kernels are tens of times slower on CPUs without them)."""
    layer = model.get_submodule(FP16_LAYER)
    with torch.no_grad():
        for tensor in [*layer.parameters(), *layer.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(_to_fp16(tensor))
    layer.register_forward_pre_hook(lambda _m, args: tuple(_to_fp16(a) for a in args))
    for sub in layer.modules():
        if not list(sub.children()):
            sub.register_forward_hook(lambda _m, _args, out: _to_fp16(out))
    return _named(model, "fault:layer3-in-fp16")


def residual_dropped(model: torch.nn.Module) -> torch.nn.Module:
    """Fault: the residual add of one BasicBlock dropped (a fused kernel missing its skip)."""
    block = model.get_submodule(RESIDUAL_BLOCK)

    def forward(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))

    block.forward = types.MethodType(forward, block)
    return _named(model, "fault:residual-dropped")


def bn_stats_off(model: torch.nn.Module) -> torch.nn.Module:
    """Fault: one BatchNorm's running mean and variance off by 2 % (stale statistics)."""
    bn = model.get_submodule(BN)
    with torch.no_grad():
        bn.running_mean.mul_(1.02)
        bn.running_var.mul_(1.02)
    return _named(model, "fault:bn-stats-2pct")


def logits_swapped(model: torch.nn.Module) -> torch.nn.Module:
    """Fault: two logits swapped (an output layout or label-order bug)."""
    a, b = SWAPPED

    def swap(_module: Any, _args: Any, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, [a, b]] = out[:, [b, a]]
        return out

    model.fc.register_forward_hook(swap)
    return _named(model, "fault:logits-swapped")


def nan_output(model: torch.nn.Module) -> torch.nn.Module:
    """Fault: one NaN in the output (an uninitialised buffer)."""

    def poison(_module: Any, _args: Any, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[NAN_AT] = float("nan")
        return out

    model.fc.register_forward_hook(poison)
    return _named(model, "fault:nan-in-output")


class _Stale:
    """Returns the previous call's output buffer (its first N rows) whenever it holds at least
    as many samples as this batch (a missed synchronisation reading last batch's buffer)."""

    name = "fault:stale-output"
    precision = "fp32"

    def __init__(self, model: torch.nn.Module) -> None:
        self.module = model
        self.previous: torch.Tensor | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fresh = self.module(batch)
        stale = self.previous is not None and self.previous.shape[0] >= fresh.shape[0]
        out = self.previous[: fresh.shape[0]] if stale else fresh
        self.previous = fresh
        return out


def stale_output(model: torch.nn.Module) -> _Stale:
    """Fault: the previous batch's output returned (stale results)."""
    return _Stale(model)


def noise_1e7(model: torch.nn.Module) -> torch.nn.Module:
    """Healthy control: the same convolution with 1e-7 relative noise (below fp32 rounding)."""
    _noisy_conv(model, 1e-7)
    return _named(model, "healthy:conv-noise-1e-7")


def torchscript_frozen(model: torch.nn.Module) -> torch.nn.Module:
    """Healthy control: TorchScript-frozen, BatchNorm folded into the convolutions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.9 deprecates TorchScript; it still runs
        frozen = torch.jit.freeze(torch.jit.script(model.eval()))
    return _Named(frozen, "healthy:torchscript-frozen")


class _Named:
    """A callable with a name around a module that cannot take attributes (ScriptModule)."""

    precision = "fp32"

    def __init__(self, fn: Any, name: str) -> None:
        self.fn, self.name = fn, name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.fn(batch)


class _OneThread:
    name = "healthy:one-thread"
    precision = "fp32"

    def __init__(self, model: torch.nn.Module) -> None:
        self.module = model

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                return self.module(batch)
        finally:
            torch.set_num_threads(threads)


def one_thread(model: torch.nn.Module) -> _OneThread:
    """Healthy control: the CPU with one thread (another reduction order)."""
    return _OneThread(model)


class _ChannelsLast:
    name = "healthy:channels-last"
    precision = "fp32"

    def __init__(self, model: torch.nn.Module) -> None:
        self.module = model.to(memory_format=torch.channels_last)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(batch.contiguous(memory_format=torch.channels_last))


def channels_last(model: torch.nn.Module) -> _ChannelsLast:
    """Healthy control: channels_last memory format."""
    return _ChannelsLast(model)


def _perturbing_backend(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
    """A torch.compile backend with a fusion bug: the output of the graph's convolution
    number ``MISCOMPILED_CONV`` is scaled by 1.001, then the graph runs as traced."""
    convs = [n for n in gm.graph.nodes if n.op == "call_function" and "conv" in getattr(n.target, "__name__", "")]
    if len(convs) > MISCOMPILED_CONV:
        node = convs[MISCOMPILED_CONV]
        with gm.graph.inserting_after(node):
            scaled = gm.graph.call_function(torch.mul, (node, 1.001))
        node.replace_all_uses_with(scaled, delete_user_cb=lambda user: user is not scaled)
        gm.recompile()
    return gm.forward


def miscompiled_conv(model: torch.nn.Module) -> torch.nn.Module:
    """Fault in the compiler, not the model: ``torch.compile`` with a backend that rewrites one
    convolution of the traced graph. Its eager twin (``_orig_mod``) is healthy, so the blame
    falls on the compiled graph."""
    compiled = torch.compile(model, backend=_perturbing_backend, dynamic=False)
    return _named(compiled, "fault:miscompiled-conv")


@dataclass(frozen=True)
class Control:
    factory: str
    intended: Status
    stage: str | None
    description: str

    @property
    def spec(self) -> str:
        return f"{__name__}:{self.factory}"


#: The catalogue: factory, intended verdict under the default profile, the stage a fault
#: should be localized to (None: it arises outside the module's stages), and what it is.
CONTROLS: tuple[Control, ...] = (
    Control("conv_weight_noise", Status.FAIL, CONV, f"{CONV} weights x (1 + 1e-3 N(0,1))"),
    Control("layer_in_fp16", Status.FAIL, f"{FP16_LAYER}.0.conv1", f"{FP16_LAYER} silently in fp16"),
    Control("residual_dropped", Status.FAIL, RESIDUAL_BLOCK, f"residual add of {RESIDUAL_BLOCK} dropped"),
    Control("bn_stats_off", Status.FAIL, BN, f"{BN} running mean and var x 1.02"),
    Control("logits_swapped", Status.FAIL, "fc", f"logits {SWAPPED[0]} and {SWAPPED[1]} swapped"),
    Control("nan_output", Status.FAIL, "fc", f"one NaN at sample {NAN_AT[0]}, class {NAN_AT[1]}"),
    Control("stale_output", Status.FAIL, None, "the previous batch's output returned"),
    Control("noise_1e7", Status.PASS, None, f"{CONV} weights x (1 + 1e-7 N(0,1))"),
    Control("torchscript_frozen", Status.PASS, None, "torch.jit.freeze(torch.jit.script(model)): BN folded"),
    Control("one_thread", Status.PASS, None, "torch.set_num_threads(1) around the forward"),
    Control("channels_last", Status.PASS, None, "channels_last weights and input"),
)


@dataclass(frozen=True)
class ControlResult:
    control: Control
    verdicts: dict[str, str]
    rel_l2_error: float
    first_stage: str | None
    localizable: bool


def run_controls(
    weights: str = "seeded",
    images: Sequence[str | Path] | None = None,
    profiles: Sequence[str] = ("default", "seed", "msprobe", "strict"),
) -> list[ControlResult]:
    """Build every control, run it on ``images`` (each separately, in order, as ``compare``
    does) and judge it under every profile; localize with the default profile."""
    images = list(images or [IMAGES_DIR / p for p in PHOTOS])
    session = Session(weights, "cpu")
    results = []
    for control in CONTROLS:
        runner = session.runner(control.spec)
        cases = [session.compare(runner, [image]) for image in images]
        verdicts = {p: worst_status([judge(c.comparison, p).status for c in cases]) for p in profiles}
        located = next((c.localization for c in cases if c.localization is not None), None)
        results.append(
            ControlResult(
                control,
                verdicts,
                worst_of([c.comparison.rel_l2_error for c in cases]),
                located.first_failing if located else None,
                bool(located and located.available),
            )
        )
    return results
