"""Custom targets: how to put a backend the suite does not know under test.

    python -m resnet34_npu compare --target examples.custom_target:torchscript_frozen
    pytest tests/conformance --r34-target=examples.custom_target:torchscript_frozen

A factory receives the reference model (a copy: CPU, float32, eval mode) and returns a callable
that maps a float32 CPU batch [N, 3, 224, 224] to logits [N, 1000] on any device and in any
floating dtype (the suite brings them back). Optional attributes: ``name``, ``precision`` (the
effective precision the verdict uses: fp32, tf32, hf32, fp16, bf16; default fp32) and
``synchronize()`` (called around every timed run). Return an ``nn.Module``, or give the
callable a ``module`` attribute, whose submodules keep ResNet34's names, and a failing
comparison is localized to the first stage that breaks.
"""

from __future__ import annotations

import warnings

import torch


class TorchScriptFrozen:
    """A compiled 'engine' with its own graph: TorchScript, frozen (BatchNorm folded into the
    convolutions). Stands in for an OM model through ACL or a TensorRT engine."""

    name = "example:torchscript-frozen"
    precision = "fp32"

    def __init__(self, model: torch.nn.Module) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.engine = torch.jit.freeze(torch.jit.script(model.eval()))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.engine(batch)

    def synchronize(self) -> None:
        """Nothing is queued on the CPU; a device backend waits for its stream here."""


def torchscript_frozen(model: torch.nn.Module) -> TorchScriptFrozen:
    return TorchScriptFrozen(model)


class BF16Module(torch.nn.Module):
    """An ``nn.Module`` target: the model in bfloat16 behind float32 inputs and outputs. Its
    submodules are ``model.conv1`` ... ``model.fc``, so a failure can be localized."""

    name = "example:bf16-module"
    precision = "bf16"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model.to(torch.bfloat16)

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(torch.bfloat16)).float()


def bf16_module(model: torch.nn.Module) -> BF16Module:
    return BF16Module(model)


class Float64:
    """The model in float64 on the CPU, returning float64 logits: a target may answer in any
    floating dtype (the suite converts). Judged as fp32: it should be at least that good."""

    name = "example:float64"
    precision = "fp32"

    def __init__(self, model: torch.nn.Module) -> None:
        self.module = model.double()

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(batch.double())


def float64(model: torch.nn.Module) -> Float64:
    return Float64(model)
