"""The 1000 ImageNet class names, from torchvision's weight metadata (no download)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    from torchvision.models import ResNet34_Weights

    return tuple(ResNet34_Weights.IMAGENET1K_V1.meta["categories"])


def class_name(index: int) -> str:
    return class_names()[index]


def format_probability(probability: float) -> str:
    """Four decimals, or scientific notation below 1e-4 so small probabilities stay readable."""
    return f"{probability:.4f}" if probability >= 1e-4 or probability == 0 else f"{probability:.2e}"


def describe(index: int, probability: float | None = None) -> str:
    """``[134] crane bird 0.9997``: index, name and, if given, the probability."""
    text = f"[{index}] {class_name(index)}"
    return text if probability is None else f"{text} {format_probability(probability)}"
