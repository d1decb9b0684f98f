"""Series: the runs of one (device model or host, target, batch, methodology), oldest first. A
methodology change (warm-up, iterations, clock, profile, weights, images) starts a new series, so
it never shows as a step; an environment change (a CANN, driver or torch release) is a label on
the series' axis, not a new series."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnet34_npu.history.record import Record, Scalar, TargetResult, digest_of


@dataclass(frozen=True)
class Point:
    """One run of a series."""

    record: Record
    result: TargetResult


@dataclass(frozen=True)
class Series:
    device: str
    target: str
    batch: int
    methodology: dict[str, Scalar]
    points: tuple[Point, ...]

    @property
    def key(self) -> str:
        return f"{self.device} | {self.target} | batch {self.batch} | methodology {digest_of(self.methodology)}"

    @property
    def label(self) -> str:
        return f"{self.target} (batch {self.batch}) on {self.device}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "device": self.device,
            "target": self.target,
            "batch": self.batch,
            "methodology": dict(self.methodology),
            "runs": len(self.points),
        }


def methodology_of(record: Record, result: TargetResult) -> dict[str, Scalar]:
    return {**record.methodology, **result.methodology}


def build(records: tuple[Record, ...] | list[Record]) -> list[Series]:
    """The series of ``records`` (oldest first within each), in order of first appearance."""
    groups: dict[tuple[str, str, int, str], list[Point]] = {}
    methods: dict[tuple[str, str, int, str], dict[str, Scalar]] = {}
    for record in records:
        for result in record.targets:
            method = methodology_of(record, result)
            key = (result.device, result.target, result.batch, digest_of(method))
            groups.setdefault(key, []).append(Point(record, result))
            methods[key] = method
    return [Series(k[0], k[1], k[2], methods[k], tuple(points)) for k, points in groups.items()]


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``name old -> new`` for each field that differs (``-`` where absent): ``CANN 8.5.0 -> 8.5.1``."""
    return [
        f"{key} {before.get(key, '-')} -> {after.get(key, '-')}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
