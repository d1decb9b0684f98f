"""Single-image inference: the model card's ``inference.py``, as a library function."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet34_npu.core.constants import DEFAULT_IMAGE
from resnet34_npu.core.errors import InputError
from resnet34_npu.judge.metrics import top_k
from resnet34_npu.model.images import load_image
from resnet34_npu.model.labels import class_name
from resnet34_npu.model.network import build_model_with_info
from resnet34_npu.model.preprocess import make_batch
from resnet34_npu.model.weights import WeightsInfo
from resnet34_npu.targets.runners import build_runner
from resnet34_npu.targets.spec import parse_target
from resnet34_npu.targets.timing import DEFAULT_ITERS, DEFAULT_WARMUP, Timing


@dataclass(frozen=True)
class Inference:
    """What one inference run found: where it ran (``target``: the runner's ``describe()``: name,
    device, device name, dtype, precision settings...), on what, how fast, and the top-k."""

    image: str
    target: dict[str, Any]
    weights: WeightsInfo
    latency_ms: Timing
    top: list[tuple[int, str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "target": self.target["name"],
            **{k: self.target[k] for k in ("device", "device_name", "dtype", "precision_settings")},
            "weights": self.weights.to_dict(),
            "latency_ms": self.latency_ms.to_dict(),
            "top": [{"index": i, "name": n, "probability": p} for i, n, p in self.top],
        }


def infer(
    image: str | Path = DEFAULT_IMAGE,
    *,
    device: str = "auto",
    dtype: str = "fp32",
    weights: str = "seeded",
    topk: int = 5,
    warmup: int = DEFAULT_WARMUP,
    iters: int = DEFAULT_ITERS,
) -> Inference:
    """Classify one image on one device; latency is the median of ``iters`` synchronised runs."""
    if not 1 <= topk <= 1000:
        raise InputError(f"topk {topk!r}: must be between 1 and 1000")
    spec = parse_target(f"{device}/{dtype}")
    batch = make_batch([load_image(image)])
    model, info = build_model_with_info(weights)
    runner = build_runner(spec, model)
    logits = runner.run(batch)
    timing = runner.time(batch, warmup=warmup, iters=iters)
    top = [(i, class_name(i), p) for i, p in top_k(logits, topk)[0]]
    return Inference(
        image=str(image),
        target=runner.describe(),
        weights=info,
        latency_ms=timing,
        top=top,
    )
