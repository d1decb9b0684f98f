"""A history record from a compare report or the suite's acceptance report (one schema), made on
the host that ran it, at its end: the environment from its ``machine`` block over what this host
reads itself (driver, firmware, cuDNN, onnxruntime), the methodology from its profile, weights digest,
images and each target's timing settings, the raw samples from each target's ``latency_ms``
and the accuracy figures from its images (the worst of each) and its dataset summary."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from resnet34_npu.history.record import Record, Scalar, TargetResult, digest_of, environment, make_record

#: per-image figure of a report -> the record's name (worst over images: highest, cosine lowest)
FIGURES = {"rel_l2_error": "rel_l2", "max_abs_error": "max_abs", "cosine_similarity": "cosine"}
_ENV_FIELDS = {"cann": "CANN", "cuda_runtime": "CUDA", "torch_npu": "torch_npu", "resnet34_npu": "resnet34-npu"}


def _environment(machine: dict[str, Any]) -> dict[str, str]:
    env = {}
    for key, value in machine.items():
        if value is None or value == [] or key == "cpu_count":
            continue
        env[_ENV_FIELDS.get(key, key)] = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return env


def _finite(value: Any) -> float | None:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def _target(t: dict[str, Any]) -> TargetResult | None:
    latency = t.get("latency_ms") if isinstance(t.get("latency_ms"), dict) else None
    images = []
    for case in t.get("images") or []:
        metrics = case.get("metrics") or {}
        figures = {name: _finite(metrics.get(key)) for key, name in FIGURES.items()}
        images.append({k: v for k, v in figures.items() if v is not None})
    accuracy: dict[str, float] = {}
    for name in FIGURES.values():
        values = [im[name] for im in images if name in im]
        if values:
            accuracy[name] = min(values) if name == "cosine" else max(values)
    summary = (t.get("dataset") or {}).get("accuracy") if isinstance(t.get("dataset"), dict) else None
    if isinstance(summary, dict) and _finite(summary.get("reference_top1")) is not None:
        loss = _finite(summary.get("reference_top1")) - (_finite(summary.get("target_top1")) or 0.0)
        accuracy["dataset_top1_loss"] = max(loss, 0.0)
    if latency is None and not accuracy:
        return None
    methodology = {}
    if latency:
        methodology = {k: latency.get(k) for k in ("warmup", "iterations", "clock")}
    samples = tuple(float(v) for v in (latency or {}).get("samples") or ())
    return TargetResult(
        target=str(t.get("name")),
        device=str(t.get("device_name") or t.get("device")),
        batch=int((latency or {}).get("batch_size") or 1),
        samples_ms=samples,
        median_ms=_finite((latency or {}).get("median")),
        p90_ms=_finite((latency or {}).get("p90")),
        accuracy=accuracy,
        images=tuple(images),
        methodology=methodology,
        status=str(t.get("verdict")) if t.get("verdict") else None,
    )


def _image_digest(image: Any) -> str:
    """An image's identity for the methodology: its bytes' sha256 where this host can read the file
    (a re-encoded photo under the same name starts a new series), else its name."""
    path = Path(str(image))
    try:
        if path.is_file():
            return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        pass
    return path.name


def run_methodology(profile: Any, weights: Any, images: list[Any]) -> dict[str, Scalar]:
    """A run's methodology (its series key with each target's ``warmup``, ``iterations`` and
    ``clock``): the profile, the weights' digest and a digest of the images' bytes. One function for
    ``compare``, pytest and the suite's pytest-benchmark benchmarks, so their series join."""
    digest = hashlib.sha256("\n".join(sorted(_image_digest(i) for i in images)).encode()).hexdigest()[:12]
    return {"profile": profile, "weights": weights, "images": digest}


def record_of_report(
    document: dict[str, Any], *, source: str, labels: dict[str, str] | list[tuple[str, str]] | None = None
) -> Record:
    """The record of a finished report (targets that ran nothing are left out); ``labels``: the
    user's ``KEY=VALUE`` labels (``compare --label``, ``pytest --r34-label``)."""
    images = document.get("images")
    if isinstance(document.get("dataset"), dict):  # compare --dataset: the dataset's description
        images = [digest_of(document["dataset"])]
    if not isinstance(images, list):
        images = sorted({c.get("image", "") for t in document.get("targets", []) for c in t.get("images") or []})
    weights = document.get("weights") or {}
    methodology = run_methodology(
        document.get("profile"), weights.get("tensor_sha256") or weights.get("sha256") or weights.get("spec"), images
    )
    targets = [r for r in (_target(t) for t in document.get("targets", []) if isinstance(t, dict)) if r is not None]
    return make_record(
        targets,
        source=source,
        methodology=methodology,
        env={**environment(), **_environment(document.get("machine") or {})},
        created=document.get("created"),
        labels=labels,
    )
