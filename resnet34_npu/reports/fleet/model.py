"""The fleet document's pieces, as data: a validated host's report (:class:`HostReport`, its
:class:`Target` and :class:`WorstMetric`), what reports must share to be pooled
(:class:`GroupKey`), one card's row (:class:`CardRow`), a latency :class:`Population`, a
:class:`Group` of comparable reports, a refused file (:class:`Refusal`) and the merged
:class:`Fleet`, each with the ``to_dict`` that writes it (docs/report-schema.md), and the order
rows sort in (failing cards first). Reading is in :mod:`.read`, merging in :mod:`.merging`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resnet34_npu.core.errors import plain, show
from resnet34_npu.core.refused import Refused
from resnet34_npu.judge.consistency import CardToCard
from resnet34_npu.judge.criteria import Status
from resnet34_npu.reports.fleet.outliers import OUTLIER_MIN_CARDS, OUTLIER_MIN_EXCESS, OUTLIER_Z
from resnet34_npu.reports.report import SCHEMA_VERSION

_STATUSES = tuple(s.value for s in Status)
#: Row order: failing cards first, then what did not finish, then slow cards, then the rest.
_RANK = {
    Status.FAIL: 0,
    Status.INTERRUPTED: 1,
    Status.NOT_RUN: 2,
    Status.WARN: 4,
    Status.SKIPPED: 5,
    Status.PASS: 6,
}
_OUTLIER_RANK = 3


#: a file left out of the merge, and why: the shared refused-file type (history's too)
Refusal = Refused
#: what a refused file of a merge was read as
REPORT = "report"


@dataclass(frozen=True)
class GroupKey:
    """What reports must share to be merged: the same weights (tensor digest, else file digest),
    verdict profile, suite version and schema version. None: the report does not say."""

    weights: str | None
    profile: str | None
    resnet34_npu: str | None
    schema_version: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def differences(self, other: GroupKey) -> list[str]:
        """What differs from ``other``, in words: ``profile 'strict' (not 'default')``."""
        labels = {"weights": "weights", "profile": "profile", "resnet34_npu": "resnet34-npu", "schema_version": ""}
        out = []
        for name, label in labels.items():
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                label = label or "schema_version"
                out.append(f"{label} {_value(mine)} (not {_value(theirs)})")
        return out


def _value(value: Any) -> str:
    if value is None:
        return "unknown"
    text = show(value) if isinstance(value, str) else plain(value)
    return text if len(text) <= 30 else text[:27] + "...'"


@dataclass(frozen=True)
class WorstMetric:
    """The largest ``rel_l2_error`` among a target's images (NaN is the worst), and which image."""

    name: str
    value: float
    image: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Target:
    """One target of one report, as the fleet needs it."""

    name: str
    card: str
    population: str | None  # what it is compared with for latency: spec without the index, device model
    verdict: Status
    worst: WorstMetric | None
    latency_median_ms: float | None
    #: card-to-card: the group (device model, software environment, target without its card)
    #: and the timed image's output digests (empty when untimed or an older report)
    consistency_group: str | None = None
    digests: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class HostReport:
    """A report that passed validation."""

    path: str
    host: str | None
    verdict: Status
    key: GroupKey
    targets: tuple[Target, ...]
    failed_tests: int

    @property
    def interrupted(self) -> bool:
        return self.verdict == Status.INTERRUPTED

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "host": self.host, "verdict": self.verdict.value, "targets": len(self.targets)}


@dataclass(frozen=True)
class CardRow:
    """One card's target in the fleet document (the HTML grid reads these keys)."""

    host: str | None
    card: str | None
    target: str | None
    verdict: Status
    worst_metric: WorstMetric | None
    latency_median_ms: float | None
    robust_z: float | None
    latency_outlier: bool
    report: str

    @property
    def rank(self) -> int:
        """Where the row sorts: failing first, then unfinished, then slow cards, then the rest."""
        rank = _RANK[self.verdict]
        return _OUTLIER_RANK if self.latency_outlier and rank > _OUTLIER_RANK else rank

    def sort_key(self) -> tuple:
        return (self.rank, _natural(self.host), _natural(self.card), _natural(self.target), self.report)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "card": self.card,
            "target": self.target,
            "verdict": self.verdict.value,
            "worst_metric": None if self.worst_metric is None else self.worst_metric.to_dict(),
            "latency_median_ms": self.latency_median_ms,
            "robust_z": self.robust_z,
            "latency_outlier": self.latency_outlier,
            "report": self.report,
        }


@dataclass(frozen=True)
class Population:
    """The cards that run the same thing in one group, and their latency spread."""

    label: str
    cards: int
    median_ms: float
    mad_ms: float
    scale: str  # "MAD", "mean absolute deviation" (the MAD was 0), "none" (all equal or too few cards)

    def to_dict(self) -> dict[str, Any]:
        return {
            "population": self.label,
            "cards": self.cards,
            "median_ms": self.median_ms,
            "mad_ms": self.mad_ms,
            "scale": self.scale,
        }


@dataclass(frozen=True)
class Group:
    """Reports that may be compared with one another, their cards in order (failing first)."""

    key: GroupKey
    apart: str | None  # why this group is not merged with the first, or None
    verdict: Status
    reports: tuple[HostReport, ...]
    cards: tuple[CardRow, ...]
    populations: tuple[Population, ...]
    outliers: tuple[tuple[CardRow, Population], ...]  # the slow cards, each with what it was compared with
    #: the cards of one device model, software environment and target compared digest by digest
    card_to_card: tuple[CardToCard, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "card_to_card": [c.to_dict() for c in self.card_to_card],
            "key": self.key.to_dict(),
            "apart": self.apart,
            "verdict": self.verdict.value,
            "counts": _counts(self.reports, self.cards),
            "reports": [r.to_dict() for r in self.reports],
            "latency": [p.to_dict() for p in self.populations],
            "cards": [c.to_dict() for c in self.cards],
        }


@dataclass(frozen=True)
class Fleet:
    """The merged document: groups of comparable reports, the refused files, the verdict."""

    created: str
    verdict: Status
    groups: tuple[Group, ...]
    refused: tuple[Refusal, ...]
    notes: tuple[str, ...]

    @property
    def rows(self) -> list[tuple[int, CardRow]]:
        """(group number from 1, row) over every group, failing cards first."""
        rows = [(i, row) for i, g in enumerate(self.groups, 1) for row in g.cards]
        return sorted(rows, key=lambda item: (item[1].rank, item[0], item[1].sort_key()))

    def to_dict(self) -> dict[str, Any]:
        reports = tuple(r for g in self.groups for r in g.reports)
        cards = tuple(c for g in self.groups for c in g.cards)
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "fleet",
            "created": self.created,
            "verdict": self.verdict.value,
            "counts": {**_counts(reports, cards), "groups": len(self.groups), "refused": len(self.refused)},
            "outlier_rule": {
                "robust_z_above": OUTLIER_Z,
                "min_excess_over_median": OUTLIER_MIN_EXCESS,
                "min_cards": OUTLIER_MIN_CARDS,
            },
            "notes": list(self.notes),
            "groups": [g.to_dict() for g in self.groups],
            "refused": [r.to_dict() for r in self.refused],
        }


def _counts(reports: Sequence[HostReport], cards: Sequence[CardRow]) -> dict[str, Any]:
    verdicts = Counter(c.verdict.value for c in cards)
    return {
        "reports": len(reports),
        "hosts": len({r.host for r in reports if r.host is not None}),
        "cards": len(cards),
        "verdicts": {s: verdicts[s] for s in _STATUSES if verdicts[s]},
        "latency_outliers": sum(c.latency_outlier for c in cards),
    }


def _natural(text: str | None) -> tuple:
    """Sort key that puts npu:2 before npu:10 and host-9 before host-10 (None last)."""
    if text is None:
        return ((2, ""),)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text) if p)
