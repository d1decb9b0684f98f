"""The comparison engine: the model card's compare_cpu_npu.py, for any targets.

A :class:`Session` holds what every comparison of one run shares: the model and its weights,
the reference target, the preprocessed images, and the reference's (and optionally the
float64 truth's) logits, each computed once and reused, so every extra target costs only its
own forward passes. ``compare`` and the pytest plugin both go through it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from . import devices
from .bench import DEFAULT_ITERS, DEFAULT_WARMUP, Timing, time_runner
from .criteria import DEFAULT_PROFILE, Profile, Verdict, get_profile, judge, worst_status
from .images import load_image
from .localize import Localisation, localise
from .metrics import Comparison, _rel_l2, compare_logits, worst_of
from .model import build_model_with_info
from .preprocess import preprocess
from .errors import InputError
from .targets import CustomSpec, ModelRunner, Runner, build_runner, parse_target, run_checked
from .weights import WeightsInfo


@dataclass(frozen=True)
class CaseResult:
    """One target on one batch of images (batch 1 = one image): its verdict and metrics."""

    images: tuple[str, ...]
    verdict: Verdict
    comparison: Comparison
    truth: dict[str, float] = field(default_factory=dict)
    localisation: Localisation | None = None
    paths: tuple[str, ...] = ()

    @property
    def image(self) -> str:
        return "+".join(self.images)

    def metrics(self) -> dict[str, float]:
        return {**self.comparison.metrics(), **self.truth}

    def to_dict(self) -> dict[str, Any]:
        detail = self.comparison.to_dict()
        return {
            "image": self.image,
            "paths": list(self.paths),
            "batch_size": len(self.images),
            "verdict": self.verdict.status,
            "failures": list(self.verdict.failures),
            "warnings": list(self.verdict.warnings),
            "metrics": self.metrics(),
            "worst_abs": detail["worst_abs"],
            "worst_rel": detail["worst_rel"],
            "first_nonfinite": detail["first_nonfinite"],
            "samples": detail["samples"],
            "localisation": None if self.localisation is None else self.localisation.to_dict(),
        }


@dataclass(frozen=True)
class TargetResult:
    """One target over all images: identity, precision, verdict, latency and every case."""

    name: str
    device: str
    device_name: str
    dtype: str
    mode: str
    effective_precision: str
    precision_reason: str
    precision_settings: dict[str, Any]
    cases: tuple[CaseResult, ...]
    latency: Timing | None
    speedup_vs_reference: float | None

    @property
    def verdict(self) -> str:
        return worst_status([c.verdict.status for c in self.cases])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device": self.device,
            "device_name": self.device_name,
            "dtype": self.dtype,
            "mode": self.mode,
            "effective_precision": self.effective_precision,
            "precision_reason": self.precision_reason,
            "precision_settings": self.precision_settings,
            "verdict": self.verdict,
            "latency_ms": None if self.latency is None else self.latency.to_dict(),
            "throughput_ips": None if self.latency is None else self.latency.throughput_ips,
            "speedup_vs_reference": self.speedup_vs_reference,
            "images": [c.to_dict() for c in self.cases],
        }


def describe_runner(runner: Runner) -> dict[str, Any]:
    """Identity and precision of a target, built-in or custom."""
    if isinstance(runner, ModelRunner):
        return {
            "name": runner.name,
            "device": str(runner.device),
            "device_name": devices.device_name(runner.device),
            "dtype": runner.spec.dtype,
            "mode": runner.spec.mode,
            "effective_precision": runner.precision,
            "precision_reason": runner.precision_reason,
            "precision_settings": runner.precision_settings,
        }
    device = getattr(runner, "device", None)
    return {
        "name": runner.name,
        "device": str(device) if device is not None else "custom",
        "device_name": devices.device_name(device) if isinstance(device, torch.device) else "custom",
        "dtype": getattr(runner, "dtype", runner.precision),
        "mode": getattr(runner, "mode", "custom"),
        "effective_precision": runner.precision,
        "precision_reason": getattr(runner, "precision_reason", "declared by the custom target"),
        "precision_settings": getattr(runner, "precision_settings", {}),
    }


class Session:
    """Shared state of one comparison run; see the module docstring."""

    def __init__(self, weights: str = "seeded", reference: str = "cpu", *, fp64_truth: bool = False,
                 profile: str | Profile = DEFAULT_PROFILE) -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        if isinstance(parse_target(reference), CustomSpec):
            raise InputError(f"reference {reference!r}: the reference must be a built-in target (e.g. cpu), "
                             "not a custom one; compare custom targets against it with --target")
        self.model, self.weights_info = build_model_with_info(weights)
        self.reference = build_runner(reference, self.model)
        self.fp64_truth = fp64_truth
        self._truth_model: torch.nn.Module | None = None
        self._inputs: dict[str, torch.Tensor] = {}
        self._reference_logits: dict[tuple[str, ...], torch.Tensor] = {}
        self._truth_logits: dict[tuple[str, ...], torch.Tensor] = {}
        self._reference_timing: dict[int, Timing] = {}

    @property
    def weights(self) -> WeightsInfo:
        return self.weights_info

    def runner(self, spec: str) -> ModelRunner:
        """A built-in target running this session's model."""
        return build_runner(spec, self.model)

    def input(self, image: str | Path) -> torch.Tensor:
        """The preprocessed image [3, 224, 224], loaded once."""
        key = str(image)
        if key not in self._inputs:
            self._inputs[key] = preprocess(load_image(image))
        return self._inputs[key]

    def batch(self, images: Sequence[str | Path]) -> torch.Tensor:
        return torch.stack([self.input(i) for i in images])

    def reference_logits(self, images: Sequence[str | Path]) -> torch.Tensor:
        key = tuple(map(str, images))
        if key not in self._reference_logits:
            self._reference_logits[key] = self.reference(self.batch(images))
        return self._reference_logits[key]

    def truth_logits(self, images: Sequence[str | Path]) -> torch.Tensor:
        """The same model in float64 on the CPU: the truth both sides are measured against."""
        key = tuple(map(str, images))
        if key not in self._truth_logits:
            if self._truth_model is None:
                self._truth_model = copy.deepcopy(self.model).double().eval()
            with torch.inference_mode():
                self._truth_logits[key] = self._truth_model(self.batch(images).double())
        return self._truth_logits[key]

    def truth_metrics(self, images: Sequence[str | Path], logits: torch.Tensor) -> dict[str, float]:
        truth = self.truth_logits(images)
        reference = self.reference_logits(images)

        def worst_rel_l2(x: torch.Tensor) -> float:
            diff = x.double() - truth
            return worst_of([_rel_l2(diff[i], truth[i]) for i in range(truth.shape[0])])

        target_error = worst_rel_l2(logits)
        reference_error = worst_rel_l2(reference)
        if reference_error == 0.0:
            ratio = 1.0 if target_error == 0.0 else float("inf")
        else:
            ratio = target_error / reference_error
        return {
            "truth_rel_l2_error": target_error,
            "reference_truth_rel_l2_error": reference_error,
            "error_ratio_vs_cpu": ratio,
        }

    def compare(self, runner: Runner, images: Sequence[str | Path], logits: torch.Tensor | None = None) -> CaseResult:
        """Run ``runner`` on the batch of ``images`` (unless ``logits`` are given) and judge it
        against the reference with the session's profile."""
        if logits is None:
            logits = run_checked(runner, self.batch(images))
        comparison = compare_logits(self.reference_logits(images), logits, precision=runner.precision)
        truth = self.truth_metrics(images, logits) if self.fp64_truth else {}
        verdict = judge(comparison, self.profile, truth)
        localisation = None
        if not verdict.passed:
            # A failure says where: the first stage that breaks the profile, when a module exists.
            localisation = self.localise(runner, images)
            verdict = Verdict(verdict.status, verdict.failures + (localisation.line(),), verdict.warnings)
        return CaseResult(tuple(Path(i).name for i in images), verdict, comparison, truth, localisation,
                          tuple(map(str, images)))

    def localise(self, runner: Runner, images: Sequence[str | Path]) -> Localisation:
        """Stage-by-stage comparison of ``runner`` with the reference on ``images``."""
        batch = self.batch(images)
        return localise(self.reference.module, lambda: self.reference(batch), getattr(runner, "module", None),
                        lambda: runner(batch), runner.precision, self.profile)

    def reference_timing(self, batch_size: int, warmup: int, iters: int, image: str | Path) -> Timing:
        if batch_size not in self._reference_timing:
            self._reference_timing[batch_size] = time_runner(
                self.reference, self.batch([image] * batch_size), warmup=warmup, iters=iters
            )
        return self._reference_timing[batch_size]

    def evaluate(self, runner: Runner, images: Sequence[str | Path], *, warmup: int = DEFAULT_WARMUP,
                 iters: int = DEFAULT_ITERS) -> TargetResult:
        """Every image at batch 1, then latency on the first image (``iters`` = 0: no timing)."""
        cases = tuple(self.compare(runner, [image]) for image in images)
        latency = speedup = None
        if iters > 0:
            latency = time_runner(runner, self.batch(images[:1]), warmup=warmup, iters=iters)
            reference = self.reference_timing(1, warmup, iters, images[0])
            speedup = reference.median / latency.median if latency.median > 0 else None
        return TargetResult(**describe_runner(runner), cases=cases, latency=latency, speedup_vs_reference=speedup)
