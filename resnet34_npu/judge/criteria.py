"""Verdicts: named profiles of pass / warn / fail rules, per effective precision.

A profile holds one table of rules per precision row: ``fp32``, ``fp16`` and ``bf16``.
Targets that compute fp32 tensors in TF32 or HF32 (10- and 11-bit mantissas, near fp16's) are judged
on the ``fp16`` row, and so are fp32 targets whose ACL precision mode runs matrix operators
in fp16. Whatever the profile, a target that produces NaN or Inf anywhere fails, and a rule
whose measured value is NaN fails: NaN never passes, whatever the arithmetic says.

A verdict's failures and warnings are :class:`Finding` s: data (the kind, the rule, its metric,
the measured value, the bound, the precision, the stage) rendered by ``str()`` to the line users
see, which reads like ``torch.testing.assert_close``'s: the rule, the measured value, the
allowed bound, the precision, and the worst element (sample, class index and class name,
both values).

Every rule names a metric a comparison has (:data:`~resnet34_npu.judge.metrics.COMPARISON_METRICS`)
or a float64-truth metric (:data:`~resnet34_npu.judge.metrics.TRUTH_METRICS`, present only with
``--fp64-truth``); a profile naming any other metric is refused when it is defined, and a judged
comparison lacking a comparison metric a rule needs is an error, never a rule silently skipped.
"""

from __future__ import annotations

import enum
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from resnet34_npu.core.errors import InputError
from resnet34_npu.judge.metrics import COMPARISON_METRICS, TRUTH_METRICS, Comparison, Element
from resnet34_npu.model.labels import class_name


class Status(str, enum.Enum):
    """The one status type: of a rule, a case, a target and a whole report. A ``str``, so it
    compares equal to and serialises as its value (``Status.PASS == "pass"``)."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"
    NOT_RUN = "not run"
    INTERRUPTED = "interrupted"

    __str__ = str.__str__
    __format__ = str.__format__


PASS, WARN, FAIL = Status.PASS, Status.WARN, Status.FAIL
ROW_OF_PRECISION = {"fp64": "fp32", "fp32": "fp32", "tf32": "fp16", "hf32": "fp16", "fp16": "fp16", "bf16": "bf16"}
ROWS = ("fp32", "fp16", "bf16")

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}
_NEGATION = {"<": ">=", "<=": ">", ">=": "<", ">": "<=", "==": "!="}

#: Metrics whose worst element is the largest relative error (the others: the largest absolute).
_RELATIVE = {"max_rel_error", "mean_rel_error", "rel_err_ratio_1e-2", "rel_err_ratio_1e-3", "rel_err_ratio_1e-4"}
_RANKING = {"top1_match", "top5_overlap", "top5_order_match"}
#: Metrics that mean something for any tensor (feature maps, operator outputs), not only logits.
TENSOR_METRICS = {
    "max_abs_error",
    "mean_abs_error",
    "l2_error",
    "rel_l2_error",
    "cosine_similarity",
    "rmse",
    "max_rel_error",
    "mean_rel_error",
    "error_balance",
    "rel_err_ratio_1e-2",
    "rel_err_ratio_1e-3",
    "rel_err_ratio_1e-4",
    "nonfinite_mismatch",
    "assert_close_ratio",
    "assert_close_mismatches",
}


@dataclass(frozen=True)
class Rule:
    """``metric OP bound`` must hold; a ``warn`` rule only warns. ``when`` = (metric, op,
    value): the rule applies only when that holds too (msprobe's "cosine < 0.99 *and* max abs
    error > 0.001"). A rule on a metric the comparison does not have (the float64-truth ratio
    without ``--fp64-truth``) does not apply; any other metric name, or an unknown operator or
    level, is refused here (a typo would otherwise disable the rule)."""

    metric: str
    op: str
    bound: float
    level: str = FAIL
    when: tuple[str, str, float] | None = None

    def __post_init__(self) -> None:
        for metric in self.needs():
            if metric not in COMPARISON_METRICS and metric not in TRUTH_METRICS:
                raise ValueError(
                    f"rule on unknown metric {metric!r}: a rule names one of {', '.join(COMPARISON_METRICS)} "
                    f"or {', '.join(TRUTH_METRICS)}"
                )
        for op in (self.op,) + (() if self.when is None else (self.when[1],)):
            if op not in _OPS:
                raise ValueError(f"rule on {self.metric!r} has unknown operator {op!r}: one of {', '.join(_OPS)}")
        if self.level not in (FAIL, WARN):
            raise ValueError(f"rule on {self.metric!r} has level {self.level!r}: {FAIL!r} or {WARN!r}")

    @property
    def text(self) -> str:
        """The rule as written: ``rel_l2_error <= 1e-05``."""
        return f"{self.metric} {self.op} {format_bound(self.bound)}"

    def needs(self) -> tuple[str, ...]:
        """The metrics the rule reads: its own and its condition's."""
        return (self.metric,) + (() if self.when is None else (self.when[0],))

    def applies(self, metrics: Mapping[str, float]) -> bool:
        """Whether the rule applies to ``metrics``: not when its metric is absent (a float64-truth
        one the run did not compute; :func:`judge` refuses a comparison missing any other), nor
        when its ``when`` condition does not hold."""
        if self.metric not in metrics:
            return False
        if self.when is None:
            return True
        metric, op, value = self.when
        measured = metrics.get(metric, math.nan)
        return math.isnan(measured) or _OPS[op](measured, value)

    def holds(self, value: float) -> bool:
        return not math.isnan(value) and _OPS[self.op](value, self.bound)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    rows: Mapping[str, tuple[Rule, ...]]

    def rules_for(self, precision: str) -> tuple[Rule, ...]:
        return self.rows[ROW_OF_PRECISION[precision]]

    def level_of(self, metric: str, precision: str) -> str | None:
        """The strictest level of the rules on ``metric`` for ``precision`` (None: no rule)."""
        levels = {rule.level for rule in self.rules_for(precision) if rule.metric == metric}
        return FAIL if FAIL in levels else WARN if WARN in levels else None


#: The kinds of :class:`Finding`: a broken rule; NaN/Inf in the output; the target's code raised
#: (or left threads); where the difference arises (localisation); which layer is to blame.
#: ``hung``, ``crashed`` and ``device_error``: the card failed (see :mod:`resnet34_npu.targets.watchdog`).
FINDING_KINDS = ("rule", "nonfinite", "raised", "localization", "blame", "hung", "crashed", "device_error")


@dataclass(frozen=True)
class Finding:
    """One failure or warning of a verdict, as data; ``str()`` renders the line users see.

    ``kind`` is one of :data:`FINDING_KINDS`. A ``rule`` finding carries the broken rule (``metric``,
    ``op``, ``bound``, ``when``), the measured ``value`` and the ``precision`` row, and ``detail``
    says where (the worst element, or the first sample whose ranking differs; may be empty); its
    line is rendered from those fields. A ``nonfinite`` finding has metric ``target_nonfinite``,
    the count as ``value`` and bound 0. A ``localization`` finding names the first diverging
    ``stage`` (None: no stage breaks the profile, or no module) and, when one does, that stage's
    broken rule's metric, value and bound. For every kind but ``rule``, ``detail`` is the whole line."""

    kind: str
    detail: str = ""
    level: str = FAIL
    metric: str | None = None
    op: str | None = None
    bound: float | None = None
    value: float | None = None
    precision: str | None = None
    when: tuple[str, str, float] | None = None
    stage: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FINDING_KINDS:
            raise ValueError(f"finding kind {self.kind!r}: one of {', '.join(FINDING_KINDS)}")

    @property
    def rule(self) -> str | None:
        """The broken rule as written (``rel_l2_error <= 1e-05``), None when none was."""
        if self.metric is None or self.op is None or self.bound is None:
            return None
        return f"{self.metric} {self.op} {format_bound(self.bound)}"

    @property
    def line(self) -> str:
        if self.kind != "rule":
            return self.detail
        assert self.metric is not None and self.op is not None and self.bound is not None and self.value is not None
        when = self.when
        condition = "" if when is None else f" (applies since {when[0]} {when[1]} {format_bound(when[2])})"
        return (
            f"{self.metric}: {format_bound(self.value)} {_NEGATION[self.op]} {format_bound(self.bound)} "
            f"(allowed: {self.op} {format_bound(self.bound)} for {self.precision}){condition}"
            + (f"; {self.detail}" if self.detail else "")
        )

    def __str__(self) -> str:
        return self.line

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "level": Status(self.level).value,
            "rule": self.rule,
            "metric": self.metric,
            "value": self.value,
            "bound": self.bound,
            "precision": self.precision,
            "stage": self.stage,
            "line": self.line,
        }


@dataclass(frozen=True)
class Verdict:
    """A status and the findings behind it: ``failures`` (level fail) and ``warnings``."""

    status: str
    failures: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status != FAIL

    @property
    def failure_lines(self) -> tuple[str, ...]:
        """The failures as the lines users see (the report's ``failures``)."""
        return tuple(map(str, self.failures))

    @property
    def warning_lines(self) -> tuple[str, ...]:
        return tuple(map(str, self.warnings))

    def with_failures(self, *findings: Finding) -> Verdict:
        """This verdict with ``findings`` appended to its failures (localisation, blame)."""
        return Verdict(self.status, self.failures + findings, self.warnings)

    def findings_dict(self) -> dict[str, list[dict[str, Any]]]:
        """The report's structured ``findings``: ``{"failures": [...], "warnings": [...]}``."""
        return {"failures": [f.to_dict() for f in self.failures], "warnings": [f.to_dict() for f in self.warnings]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": Status(self.status).value,
            "failures": list(self.failure_lines),
            "warnings": list(self.warning_lines),
            "findings": self.findings_dict(),
        }


def _same(rules: tuple[Rule, ...]) -> dict[str, tuple[Rule, ...]]:
    return dict.fromkeys(ROWS, rules)


#: msprobe's accuracy checker on a float tensor (``Comparator._compare_float_tensor``,
#: mindstudio-probe 26.2.0), in its order: cosine <= 0.99 is an error whatever else holds; then
#: max abs error < 0.001 passes and skips the dual-ratio test; else the dual-ratio test of the
#: tensor's dtype. msprobe's ratio mode (against the float64 truth, with --fp64-truth) is a
#: separate standard and applies either way. NaN/Inf fails here as in every profile (msprobe
#: itself lets a NaN cosine through).
_EARLY_PASS = ("max_abs_error", ">=", 0.001)
_MSPROBE_COMMON = (
    Rule("cosine_similarity", ">", 0.99),
    Rule("nonfinite_mismatch", "==", 0),
    Rule("error_ratio_vs_cpu", "<=", 2.0),
    Rule("error_ratio_vs_cpu", "<=", 1.0, level=WARN),
)

PROFILES: dict[str, Profile] = {
    "default": Profile(
        "default",
        "relative L2 error of the logits bounded per effective precision, set 5-25x above healthy "
        "runs and below every fault in the catalogue; top-1 must match (bf16: warns); top-5 overlap "
        "below 5 warns; a target more than 2x the CPU's own error against float64 warns",
        {
            "fp32": (
                Rule("rel_l2_error", "<=", 1e-5),
                Rule("cosine_similarity", ">=", 0.999),
                Rule("top1_match", ">=", 1.0),
                Rule("top5_overlap", ">=", 5.0, level=WARN),
                Rule("error_ratio_vs_cpu", "<=", 2.0, level=WARN),
            ),
            "fp16": (
                Rule("rel_l2_error", "<=", 3e-3),
                Rule("cosine_similarity", ">=", 0.999),
                Rule("top1_match", ">=", 1.0),
                Rule("top5_overlap", ">=", 5.0, level=WARN),
            ),
            "bf16": (
                Rule("rel_l2_error", "<=", 2.5e-2),
                Rule("cosine_similarity", ">=", 0.999),
                Rule("top1_match", ">=", 1.0, level=WARN),
                Rule("top5_overlap", ">=", 5.0, level=WARN),
            ),
        },
    ),
    "seed": Profile(
        "seed",
        "the model card's rules: top-1 match, top-5 overlap 5/5, probability max relative error < 1 %",
        _same(
            (
                Rule("top1_match", ">=", 1.0),
                Rule("top5_overlap", ">=", 5.0),
                Rule("prob_max_rel_error", "<", 0.01),
            )
        ),
    ),
    "msprobe": Profile(
        "msprobe",
        "Ascend msprobe's accuracy checker for a float tensor, in its order: cosine <= 0.99 fails; "
        "max abs error < 0.001 passes; else the dual-ratio test per dtype (fp32: share over 1e-3 "
        "fails, over 1e-4 warns; fp16/bf16: 1e-2 fails, 1e-3 warns); ratio mode against the "
        "float64 truth when it is computed",
        {
            "fp32": _MSPROBE_COMMON
            + (
                Rule("rel_err_ratio_1e-3", "<", 1e-3, when=_EARLY_PASS),
                Rule("rel_err_ratio_1e-4", "<", 1e-4, level=WARN, when=_EARLY_PASS),
            ),
            **{
                row: _MSPROBE_COMMON
                + (
                    Rule("rel_err_ratio_1e-2", "<", 1e-2, when=_EARLY_PASS),
                    Rule("rel_err_ratio_1e-3", "<", 1e-3, level=WARN, when=_EARLY_PASS),
                )
                for row in ("fp16", "bf16")
            },
        },
    ),
    "strict": Profile(
        "strict",
        "torch.testing.assert_close with its default tolerances for the effective precision, on every logit",
        _same((Rule("assert_close_ratio", "<=", 1.0), Rule("top1_match", ">=", 1.0))),
    ),
}
DEFAULT_PROFILE = "default"

#: Operator-level rules (Ascend's per-API precision standard, as msprobe applies it) for an operator's output
#: against a float64 CPU run on the same inputs: cosine > 0.99 unless max abs error < 0.001;
#: fp32: at least 99.9 % of elements within 1e-3 relative error (conv2d's rule), more than
#: 1e-4 of them over 1e-4 warns; fp16/bf16 (and TF32/HF32): the share over 1e-2 must stay
#: below 1e-2, over 1e-3 warns; NaN/Inf in the same places.
OPS_PROFILE = Profile(
    "ops",
    "Ascend's per-API precision standard",
    {
        "fp32": (
            Rule("cosine_similarity", ">", 0.99, when=("max_abs_error", ">=", 0.001)),
            Rule("rel_err_ratio_1e-3", "<=", 1e-3),
            Rule("rel_err_ratio_1e-4", "<=", 1e-4, level=WARN),
            Rule("nonfinite_mismatch", "==", 0),
        ),
        **{
            row: (
                Rule("cosine_similarity", ">", 0.99, when=("max_abs_error", ">=", 0.001)),
                Rule("rel_err_ratio_1e-2", "<", 1e-2),
                Rule("rel_err_ratio_1e-3", "<", 1e-3, level=WARN),
                Rule("nonfinite_mismatch", "==", 0),
            )
            for row in ("fp16", "bf16")
        },
    },
)


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise InputError(f"Unknown profile {name!r}. Choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]


def format_bound(value: float) -> str:
    if math.isfinite(value) and (value == 0 or 1e-2 <= abs(value) < 1e4):
        return f"{value:.4g}"
    return f"{value:.3e}"


def _element_text(element: Element, logits: bool = True) -> str:
    diff = element.target - element.reference
    where = f"class {element.index} {class_name(element.index)!r}" if logits else f"element {element.index}"
    return (
        f"sample {element.sample}, {where}: "
        f"reference {element.reference:.6g}, target {element.target:.6g}, diff {diff:.3e}"
    )


def _where(rule: Rule, comparison: Comparison, logits: bool = True) -> str:
    if rule.metric in _RANKING:
        bad = [
            (i, s)
            for i, s in enumerate(comparison.samples)
            if (rule.metric == "top1_match" and not s.top1_match)
            or (rule.metric == "top5_overlap" and s.top5_overlap < 5)
            or (rule.metric == "top5_order_match" and not s.top5_order_match)
        ]
        if not bad:
            return ""
        i, s = bad[0]
        return (
            f"first at sample {i}: reference top-5 {list(s.reference_top5)}, target top-5 "
            f"{list(s.target_top5)}; reference top-1 [{s.reference_top5[0]}] {class_name(s.reference_top5[0])}, "
            f"target top-1 [{s.target_top5[0]}] {class_name(s.target_top5[0])}"
        )
    if rule.metric.startswith("assert_close"):
        element = comparison.worst_tolerance
    elif rule.metric in _RELATIVE:
        element = comparison.worst_rel
    else:
        element = comparison.worst_abs
    return f"worst element: {_element_text(element, logits)}"


def rule_finding(rule: Rule, value: float, precision: str, comparison: Comparison, logits: bool = True) -> Finding:
    """The finding of ``rule`` broken by ``value`` (at the rule's level)."""
    return Finding(
        "rule",
        _where(rule, comparison, logits),
        level=rule.level,
        metric=rule.metric,
        op=rule.op,
        bound=rule.bound,
        value=value,
        precision=precision,
        when=rule.when,
    )


def judge(
    comparison: Comparison,
    profile: Profile | str = DEFAULT_PROFILE,
    extra_metrics: Mapping[str, float] | None = None,
    *,
    tensor_only: bool = False,
) -> Verdict:
    """Apply ``profile``'s rules for the comparison's precision. ``extra_metrics`` adds the
    float64-truth keys (``error_ratio_vs_cpu`` ...). ``tensor_only`` judges a plain tensor
    (a stage's output, an operator's): only the rules on :data:`TENSOR_METRICS` apply."""
    if isinstance(profile, str):
        profile = get_profile(profile)
    metrics = {**comparison.metrics(), **(extra_metrics or {})}
    failures: list[Finding] = []
    warnings: list[Finding] = []
    if comparison.target_nonfinite or comparison.reference_nonfinite:
        first = comparison.first_nonfinite
        line = (
            f"non-finite values: target has {comparison.target_nonfinite}, reference has "
            f"{comparison.reference_nonfinite} NaN/Inf (allowed: none, in every profile)"
            + (f"; first at {_element_text(first, not tensor_only)}" if first is not None else "")
        )
        failures.append(
            Finding(
                "nonfinite",
                line,
                metric="target_nonfinite" if comparison.target_nonfinite else "reference_nonfinite",
                op="==",
                bound=0.0,
                value=float(comparison.target_nonfinite or comparison.reference_nonfinite),
                precision=comparison.precision,
            )
        )
    for rule in profile.rules_for(comparison.precision):
        missing = [m for m in rule.needs() if m not in metrics and m not in TRUTH_METRICS]
        if missing:  # never a rule silently skipped
            raise KeyError(f"rule {rule.text!r} needs metric {missing[0]!r}, which the comparison does not have")
    failed_metrics: set[str] = set()
    for rule in sorted(profile.rules_for(comparison.precision), key=lambda r: r.level != FAIL):
        if (tensor_only and rule.metric not in TENSOR_METRICS) or not rule.applies(metrics):
            continue
        value = float(metrics[rule.metric])
        if rule.holds(value) or (rule.level == WARN and rule.metric in failed_metrics):
            continue
        if rule.level == FAIL:
            failed_metrics.add(rule.metric)
        finding = rule_finding(rule, value, comparison.precision, comparison, not tensor_only)
        (failures if rule.level == FAIL else warnings).append(finding)
    status = FAIL if failures else WARN if warnings else PASS
    return Verdict(status, tuple(failures), tuple(warnings))


def worst_status(statuses: list[str]) -> Status:
    """FAIL over WARN over PASS (an empty list passes)."""
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS


def deciding_rule(profile: Profile, precision: str, metrics: Mapping[str, float]) -> tuple[Rule, float] | None:
    """The rule that decides a verdict, with its measured value: the first broken fail rule,
    else the first broken warn rule, else the profile's first fail rule that applies (its
    headline, e.g. ``rel_l2_error <= 1e-05`` for fp32); None when no rule applies."""
    rules = [rule for rule in profile.rules_for(precision) if rule.applies(metrics)]
    value = {rule: float(metrics[rule.metric]) for rule in rules}
    broken = [rule for rule in rules if not rule.holds(value[rule])]
    for chosen in (
        [r for r in broken if r.level == FAIL]
        + [r for r in broken if r.level == WARN]
        + [r for r in rules if r.level == FAIL]
    )[:1]:
        return chosen, value[chosen]
    return None
