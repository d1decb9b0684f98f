"""The JUnit XML properties of a conformance test: what a CI page (Jenkins, GitLab, GitHub
Actions) shows beside a test, so a failing device is named with its precision, the metric that
decided and its bound, not only an assertion line. Written with pytest's ``user_properties``
(what ``record_property`` writes), one ``<property>`` each under the test's ``<testcase>``."""

from __future__ import annotations

from typing import Any

from resnet34_npu.judge.criteria import Profile, deciding_rule

#: The property names, in the order they are written.
NAMES = (
    "r34_target",
    "r34_device",
    "r34_device_name",
    "r34_effective_precision",
    "r34_verdict",
    "r34_metric",
    "r34_value",
    "r34_bound",
)


def verdict_properties(record: dict[str, Any], profile: Profile) -> list[tuple[str, str]]:
    """The properties of one verdict record (``Suite.record``): target, device, its name, the
    effective precision, the verdict, and the deciding metric with its value and its bound."""
    info, case = record["target_info"], record["case"]
    precision = info.get("effective_precision") or "fp32"
    decided = deciding_rule(profile, precision, case["metrics"])
    rule, value = decided if decided else (None, None)
    values = (
        record["target"],
        info.get("device", ""),
        info.get("device_name", ""),
        precision,
        case["verdict"],
        rule.metric if rule else "",
        "" if value is None else f"{value:.6g}",
        "" if rule is None else f"{rule.op} {rule.bound:g}",
    )
    return [(name, str(v)) for name, v in zip(NAMES, values)]
