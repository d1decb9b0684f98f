"""Metrics over logits: probabilities and rankings (more come with the comparison engine)."""

from __future__ import annotations

import torch


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes, computed in float64 on the CPU."""
    return torch.softmax(logits.detach().cpu().to(torch.float64), dim=-1)


def top_k(logits: torch.Tensor, k: int = 5) -> list[list[tuple[int, float]]]:
    """Per sample, the ``k`` most likely (class index, probability) pairs, best first."""
    probs = probabilities(logits.reshape(-1, logits.shape[-1]))
    values, indices = probs.topk(k, dim=-1)
    return [[(int(i), float(v)) for i, v in zip(row_i, row_v)] for row_i, row_v in zip(indices, values)]
