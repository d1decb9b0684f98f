"""``infer``: single-image inference, the model card's ``inference.py``: the library function
:func:`infer` and the command that prints it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet34_npu.cli import args as shared
from resnet34_npu.core.constants import DEFAULT_IMAGE
from resnet34_npu.core.documents import dumps
from resnet34_npu.core.errors import InputError, plain
from resnet34_npu.targets.timing import DEFAULT_ITERS, DEFAULT_WARMUP, Timing

if TYPE_CHECKING:
    from resnet34_npu.model.weights import WeightsInfo


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
    from resnet34_npu.judge.metrics import top_k
    from resnet34_npu.model.images import load_image
    from resnet34_npu.model.labels import class_name
    from resnet34_npu.model.network import build_model_with_info
    from resnet34_npu.model.preprocess import make_batch
    from resnet34_npu.targets.runners import build_runner
    from resnet34_npu.targets.spec import parse_target

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


def register(sub: argparse._SubParsersAction) -> None:
    from resnet34_npu.targets import devices

    p = sub.add_parser("infer", help="classify one image on one device (the model card's inference.py)")
    shared.add_image(p)
    p.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help=f"auto, {', '.join(k.name + ('[:N]' if k.indexed else '') for k in devices.KINDS.values())} "
        f"(default: auto = {', then '.join(devices.AUTO_ORDER)})",
    )
    shared.add_weights(p)
    p.add_argument(
        "--dtype", default="fp32", choices=("fp32", "fp16", "bf16"), help="weights and input dtype (default: fp32)"
    )
    p.add_argument("--topk", default=5, type=shared.positive, metavar="K", help="classes to print (default: 5)")
    shared.add_timing(p, timing_optional=False)
    shared.add_json(p, "one JSON object instead of text")
    p.set_defaults(func=run)


def settings_line(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "-"


def run(args: argparse.Namespace) -> int:
    from resnet34_npu.model.labels import describe

    options = ("device", "dtype", "weights", "topk", "warmup", "iters")
    result = infer(Path(args.image), **{name: getattr(args, name) for name in options})
    if args.json:
        print(dumps(result.to_dict()), end="")
        return shared.EXIT_OK
    t, target = result.latency_ms, result.target
    print(f"device:    {target['device']} ({target['device_name']}), {target['dtype']}")
    print(f"precision: {settings_line(target['precision_settings'])}")
    print(f"image:     {plain(result.image)}")
    print(f"weights:   {plain(result.weights.spec)} ({plain(result.weights.path)})")
    print(f"sha256:    {result.weights.sha256}")
    print(
        f"latency:   {t.median:.2f} ms median of {t.iterations} synchronized runs after {t.warmup} warm-up "
        f"(mean {t.mean:.2f} ms, std {t.std:.2f} ms)"
    )
    print(f"top-{len(result.top)}:")
    for rank, (index, _, prob) in enumerate(result.top, 1):
        print(f"  {rank}. {describe(index, prob)}")
    return shared.EXIT_OK
