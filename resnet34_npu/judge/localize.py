"""Layer-wise localization: which stage of ResNet34 breaks first.

Both sides run with forward hooks on every named stage (conv1, bn1, relu, maxpool, every
BasicBlock of layer1 to layer4 with its convs, BNs and downsample, avgpool, fc); each stage's
output is compared with the same metrics as the logits and judged by the profile's rules that
apply to tensors (top-1, top-5 and probability rules do not; a profile without tensor rules,
like ``seed``, is judged by the default profile's). The first stage that breaks them is named.

A target exposes its model by being an ``nn.Module`` (or having a ``module`` attribute) whose
named submodules end with ResNet34's stage names: ``model.layer2.1.bn1`` matches
``layer2.1.bn1``. Targets that hide their model cannot be localized, and say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from resnet34_npu.judge.criteria import (
    DEFAULT_PROFILE,
    TENSOR_METRICS,
    Finding,
    Profile,
    Status,
    get_profile,
    judge,
)
from resnet34_npu.judge.metrics import compare_tensors

#: Stage names in ResNet34's execution order.
STAGES: tuple[str, ...] = (
    ("conv1", "bn1", "relu", "maxpool")
    + tuple(
        name
        for layer, blocks in (("layer1", 3), ("layer2", 4), ("layer3", 6), ("layer4", 3))
        for block in range(blocks)
        for name in (
            f"{layer}.{block}.conv1",
            f"{layer}.{block}.bn1",
            f"{layer}.{block}.conv2",
            f"{layer}.{block}.bn2",
            *(
                (f"{layer}.{block}.downsample.0", f"{layer}.{block}.downsample.1")
                if block == 0 and layer != "layer1"
                else ()
            ),
            f"{layer}.{block}",
        )
    )
    + ("avgpool", "fc")
)

NO_MODULE = (
    "localization needs a module: this target exposes no nn.Module (itself or as `.module`) "
    "whose submodules are named like ResNet34's stages (conv1, layer2.1.bn1, fc, ...)"
)


@dataclass(frozen=True)
class StageResult:
    name: str
    rel_l2_error: float
    cosine_similarity: float
    max_rel_error: float
    max_abs_error: float
    status: str
    failure: str
    #: The stage's first broken rule (``failure`` is its line), None when the stage passes.
    finding: Finding | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rel_l2_error": self.rel_l2_error,
            "cosine_similarity": self.cosine_similarity,
            "max_rel_error": self.max_rel_error,
            "max_abs_error": self.max_abs_error,
            "status": Status(self.status).value,
            "failure": self.failure,
        }


@dataclass(frozen=True)
class Localization:
    """Per-stage agreement, and the first stage that breaks the profile (None: none does)."""

    stages: tuple[StageResult, ...]
    first_failing: str | None
    note: str = ""

    @property
    def available(self) -> bool:
        return bool(self.stages)

    def line(self, logits_failed: bool = True) -> str:
        """One line for a failure message (or, with ``logits_failed=False``, a report)."""
        if not self.available:
            return f"localization: {self.note}"
        if self.first_failing is None:
            return "localization: no stage of the module breaks the profile" + (
                "; the difference arises after the last stage (in the target's output handling) or outside its module"
                if logits_failed
                else ""
            )
        stage = next(s for s in self.stages if s.name == self.first_failing)
        return (
            f"first diverging stage: {stage.name}: rel L2 {stage.rel_l2_error:.3e}, cosine "
            f"{stage.cosine_similarity:.8f}, max rel {stage.max_rel_error:.3e} ({stage.failure})"
        )

    def finding(self, logits_failed: bool = True, suffix: str = "") -> Finding:
        """:meth:`line` (plus ``suffix``) as a ``localization`` finding: the first diverging stage
        and, when there is one, the metric, value and bound of the rule it breaks."""
        broken = None
        if self.first_failing is not None:
            broken = next(s for s in self.stages if s.name == self.first_failing).finding
        return Finding(
            "localization",
            self.line(logits_failed) + suffix,
            metric=None if broken is None else broken.metric,
            op=None if broken is None else broken.op,
            bound=None if broken is None else broken.bound,
            value=None if broken is None else broken.value,
            precision=None if broken is None else broken.precision,
            stage=self.first_failing,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_failing_stage": self.first_failing,
            "note": self.note,
            "stages": [s.to_dict() for s in self.stages],
        }


def find_stages(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Map each ResNet34 stage name to the submodule whose name is it or ends with ``.name``."""
    found: dict[str, torch.nn.Module] = {}
    for name, sub in module.named_modules():
        for stage in STAGES:
            if stage not in found and (name == stage or name.endswith("." + stage)):
                found[stage] = sub
    return found


def capture(
    module: torch.nn.Module, run: Callable[[], Any], inputs: dict[str, tuple[torch.Tensor, ...]] | None = None
) -> dict[str, torch.Tensor]:
    """Run ``run()`` with hooks on every stage of ``module``; each stage's first output, as
    float32 on the CPU (cloned: ResNet's ReLUs work in place). Given ``inputs``, it also gets
    each stage's tensor inputs of that call, taken before the stage runs (an in-place ReLU
    overwrites its input), the same way."""
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for stage, sub in find_stages(module).items():

        def hook(_module: Any, _inputs: Any, output: Any, stage: str = stage) -> None:
            if stage not in outputs and isinstance(output, torch.Tensor):
                outputs[stage] = output.detach().float().cpu().clone()

        def pre_hook(_module: Any, args: Any, stage: str = stage) -> None:
            if inputs is not None and stage not in inputs and stage not in outputs:
                inputs[stage] = tuple(a.detach().float().cpu().clone() for a in args if isinstance(a, torch.Tensor))

        handles.append(sub.register_forward_hook(hook))
        if inputs is not None:
            handles.append(sub.register_forward_pre_hook(pre_hook))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def tensor_profile(profile: Profile) -> Profile:
    """The profile itself when it has rules for tensors, else the default profile."""
    if any(rule.metric in TENSOR_METRICS for rules in profile.rows.values() for rule in rules):
        return profile
    return get_profile(DEFAULT_PROFILE)


def localize(
    reference: Callable[[], dict[str, torch.Tensor]],
    target_module: torch.nn.Module | None,
    target_run: Callable[[], Any],
    precision: str,
    profile: Profile,
) -> Localization:
    """Compare every stage of the two runs; see the module docstring. ``reference()`` gives
    the reference's stage outputs (what :func:`capture` returns; a caller may cache them)."""
    if target_module is None or not find_stages(target_module):
        return Localization((), None, NO_MODULE)
    target = capture(target_module, target_run)
    reference = reference()
    rules = tensor_profile(profile)
    stages = []
    first = None
    for name in (s for s in STAGES if s in reference):
        if name not in target:
            continue
        ref, out = reference[name], target[name]
        if ref.shape != out.shape:
            stages.append(
                StageResult(
                    name,
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    Status.FAIL,
                    f"shape {list(out.shape)} instead of {list(ref.shape)}",
                )
            )
        else:
            n = ref.shape[0]
            comparison = compare_tensors(ref.reshape(n, -1), out.reshape(n, -1), precision=precision)
            verdict = judge(comparison, rules, tensor_only=True)
            stages.append(
                StageResult(
                    name,
                    comparison.rel_l2_error,
                    comparison.cosine_similarity,
                    comparison.max_rel_error,
                    comparison.max_abs_error,
                    verdict.status,
                    verdict.failure_lines[0] if verdict.failures else "",
                    verdict.failures[0] if verdict.failures else None,
                )
            )
        if first is None and stages[-1].status == Status.FAIL:
            first = name
    if not stages:
        return Localization((), None, NO_MODULE)
    return Localization(tuple(stages), first)
