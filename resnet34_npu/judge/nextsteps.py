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

#: The knob that lifts a reduced precision the device chose for an fp32 target.
_KNOB = {
    "hf32": ("hf32=off", "HF32 off: convolutions in fp32"),
    "fp16": ("acl=must_keep_origin_dtype", "the ACL precision mode that keeps fp32"),
}


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
    if failing:
        case = failing[0]
        image = (case.get("paths") or [case.get("image")])[0]
        stage = ((case.get("localization") or {}).get("first_failing_stage")) or ""
        at = f" (first failing stage: {stage})" if stage else ""
        steps.append(
            f"localise it{at} and dump every layer for msprobe: python -m resnet34_npu localize "
            f"--target {q(name)} --image {q(str(image))} --dump r34-dump"
        )
    precision = str(target.get("effective_precision") or "")
    if failing and target.get("dtype") == "fp32" and precision in _KNOB:
        knob, why = _KNOB[precision]
        steps.append(
            f"tell the precision mode from a fault ({why}): python -m resnet34_npu compare "
            f"--target {q(_with_knob(name, knob))}"
        )
    if target.get("card_outlier") or target.get("burn_in") or (target.get("run_to_run") or {}).get("passed") is False:
        steps.append(
            "it disagrees with the other cards or with itself: burn it in alone: "
            f"python -m resnet34_npu compare --target {q(name)} --burn-in 120"
        )
    steps.append(f"re-run this card alone: pytest --r34-require=npu --r34-target={q(name)}")
    return steps


def add_next_steps(targets: Any) -> None:
    """Give every failing target of a report (its entries) its ``next_steps``."""
    for target in targets:
        steps = next_steps(target)
        if steps:
            target["next_steps"] = steps
