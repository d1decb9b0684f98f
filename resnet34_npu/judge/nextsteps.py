"""What to run next about a failing target: the commands an engineer signing a card off types
after a failure, worked out from the report's own entry for the target, so that ``compare``, the
pytest acceptance report, the console and the HTML page give the same ones.

- localise it on the image that failed, with the msprobe dump (``localize --dump``) to hand to
  Ascend's tools;
- the precision knob that would tell a precision mode from a fault (``hf32=off``,
  ``acl=must_keep_origin_dtype``);
- a card that disagrees with its group, or failed the burn-in: the burn-in on it alone;
- a hung, crashed or erroring card: that card alone, with a deadline;
- the same card re-run alone.
"""

from __future__ import annotations

import shlex
from typing import Any

#: The knobs that lift a reduced precision an Ascend card chose for an fp32 target (both: with
#: ``allow_fp32_to_fp16``, HF32 off alone gives USE_FP16, not fp32).
_KNOBS = ("hf32=off", "acl=must_keep_origin_dtype")


def _with_knob(name: str, knob: str) -> str:
    key = knob.partition("=")[0]
    parts = [p for p in name.split("/") if not p.startswith(key + "=")]
    return "/".join([*parts, knob])


def next_steps(target: dict[str, Any]) -> list[str]:
    """The commands for a failing target (the report's entry), most useful first; [] for one that passed."""
    if target.get("verdict") != "fail":
        return []
    name = str(target["name"])
    q = shlex.quote
    steps: list[str] = []
    failing = [c for c in target.get("images") or () if c.get("verdict") == "fail"]
    failure = target.get("card_failure")
    if failure:
        steps.append(
            f"the card {failure.get('kind')} at {failure.get('stage')}: run it alone with a deadline: "
            f"python -m resnet34_npu compare --target {q(name)} --iters 1 --deadline 60"
        )
    outlier = target.get("card_outlier") or {}
    if failing or outlier:
        case = failing[0] if failing else (target.get("images") or [{}])[0]
        image = (case.get("paths") or [case.get("image") or (outlier.get("images") or ["IMAGE"])[0]])[0]
        stage = ((case.get("localization") or {}).get("first_failing_stage")) or ""
        at = f" (first failing stage: {stage})" if stage else ""
        steps.append(
            f"localise it{at} and dump every layer for msprobe: python -m resnet34_npu localize "
            f"--target {q(name)} --image {q(str(image))} --dump r34-dump"
        )
    precision = str(target.get("effective_precision") or "")
    if failing and target.get("dtype") == "fp32" and precision in ("hf32", "fp16") and name.startswith("npu"):
        exact = name
        for knob in _KNOBS:
            exact = _with_knob(exact, knob)
        steps.append(
            "tell the precision mode from a fault (the cube in fp32: HF32 off, the ACL mode that keeps fp32): "
            f"python -m resnet34_npu compare --target {q(exact)}"
        )
    if target.get("card_outlier") or target.get("burn_in") or (target.get("run_to_run") or {}).get("passed") is False:
        steps.append(
            "it disagrees with the other cards or with itself: burn it in alone: "
            f"python -m resnet34_npu compare --target {q(name)} --burn-in 120"
        )
    kind = name.partition(":")[0].partition("/")[0]
    require = f"--r34-require={kind} " if kind in ("npu", "cuda", "xpu", "mps") else ""
    steps.append(f"re-run this target alone: pytest {require}--r34-target={q(name)}")
    return steps


def add_next_steps(targets: Any) -> None:
    """Give every failing target of a report (its entries) its ``next_steps``."""
    for target in targets:
        steps = next_steps(target)
        if steps:
            target["next_steps"] = steps
