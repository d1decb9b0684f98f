"""The network under test: torchvision's ResNet34, always in eval mode."""

from __future__ import annotations

import torch
import torchvision

from resnet34_npu.model.weights import WeightsInfo, load_weights


def resnet34() -> torch.nn.Module:
    """A ResNet34 with torchvision's default initialisation, in eval mode."""
    return torchvision.models.resnet34(weights=None).eval()


def build_model(weights: str = "seeded") -> torch.nn.Module:
    """ResNet34 on the CPU in float32 and eval mode, loaded from the weights spec
    (``seeded``, ``seeded:N``, ``imagenet`` or a path to a state-dict file)."""
    return build_model_with_info(weights)[0]


def build_model_with_info(weights: str = "seeded") -> tuple[torch.nn.Module, WeightsInfo]:
    """Like :func:`build_model`, also returning where the weights came from and their hashes."""
    info, state = load_weights(weights, resnet34)
    # Built on the meta device, then given the loaded tensors: skips a random initialisation
    # that the state dict would overwrite anyway.
    with torch.device("meta"):
        model = resnet34()
    for name, buffer in model.named_buffers():
        if name.endswith("num_batches_tracked") and name not in state:
            state[name] = torch.zeros((), dtype=buffer.dtype)
    model.load_state_dict(state, assign=True)
    # A checkpoint saved in fp16, bf16 or fp64 still gives the float32 model every target
    # and custom factory is promised.
    return model.float().eval(), info


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
