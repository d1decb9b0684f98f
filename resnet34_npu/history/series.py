"""Series: the runs of one (device model or host, target, batch, methodology), oldest first. A
methodology change (warm-up, iterations, clock, profile, weights, images) starts a new series, so
it never shows as a step; an environment change (a CANN, driver or torch release) is a label on
the series' axis, not a new series."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnet34_npu.history.record import LABEL_PREFIX, Record, Scalar, TargetResult, digest_of


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

    @property
    def sources(self) -> list[str]:
        """Where its runs came from (``compare``, ``pytest``, ``pytest-benchmark``), in order of first run."""
        return list(dict.fromkeys(p.record.source for p in self.points))

    @property
    def title(self) -> str:
        """The series in words: what tells it apart from another of the same target, batch and device."""
        return f"from {', '.join(self.sources)}; {methodology_words(self.methodology)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "device": self.device,
            "target": self.target,
            "batch": self.batch,
            "methodology": dict(self.methodology),
            "runs": len(self.points),
        }


#: methodology fields in words (the rest: ``name value``); digests shortened to 12 characters
_WORDS = {"warmup": "{} warm-up run(s)", "iterations": "{} timed run(s)", "clock": "clock {}", "profile": "profile {}"}


def methodology_words(methodology: dict[str, Scalar]) -> str:
    """``3 warm-up run(s), 20 timed run(s), clock perf_counter, profile default, weights 0d7f6619f185, ...``."""
    parts = []
    for key in sorted(methodology, key=lambda k: (k not in _WORDS, list(_WORDS).index(k) if k in _WORDS else 0, k)):
        value = methodology[key]
        text = str(value)[:12] if isinstance(value, str) and len(str(value)) > 16 else str(value)
        parts.append(_WORDS[key].format(text) if key in _WORDS else f"{key} {text}")
    return ", ".join(parts) or "no methodology recorded"


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
    """``name old -> new`` for each field that differs (``-`` where absent): ``CANN 8.5.0 -> 8.5.1``;
    a label as ``release=2026.11 -> 2026.12``, labels first (the user named them)."""
    keys = sorted(set(before) | set(after), key=lambda k: (not k.startswith(LABEL_PREFIX), k))
    return [
        f"{key[len(LABEL_PREFIX) :]}={before.get(key, '-')} -> {after.get(key, '-')}"
        if key.startswith(LABEL_PREFIX)
        else f"{key} {before.get(key, '-')} -> {after.get(key, '-')}"
        for key in keys
        if before.get(key) != after.get(key)
    ]
