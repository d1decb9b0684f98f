"""Fleet reports: the compare and acceptance reports of many hosts and cards merged into one
document (``report merge``), with failing cards first and slow cards named.

Every file is read with a size cap and validated against docs/report-schema.md before anything
is merged: a truncated, non-JSON, foreign or future-version file is refused with one line naming
it and the reason. Reports made with different weights, verdict profiles, suite versions or
schema versions are never pooled: each such set is a group of its own, with a line that says
what differs, and the fleet's verdict is the worst of every group's. Reports (or cards) of a run
that was interrupted or compared nothing stay in the document as such and never count as a pass.

Latency outliers (why this rule): a card's median latency is compared with the cards that run
the same thing (same target spec without the card's index, same device model, same batch), in
the same group. The test is Iglewicz and Hoaglin's modified z-score, ``z = 0.6745 (x - median)
/ MAD`` with the median absolute deviation (MAD): median and MAD ignore the slow cards
themselves, where a mean and a standard deviation would be dragged towards them and hide them,
and 0.6745 makes ``z`` read as standard deviations for normal noise; they recommend calling
``z > 3.5`` an outlier (one card in about 4,300 of a normal fleet would exceed it). Only slower
cards are flagged. A robust z-score alone flags noise in a tight fleet (a MAD of 0.3 % makes a
card 1.5 % slower "an outlier"), so a card must also be at least 10 % slower than the median: a
run-to-run wobble of a few percent (clock boost, temperature, the host's load) is not worth an
operator's time, a 10 % slower card (throttled, a PCIe link trained at a lower width, another
driver) is. When the MAD is 0 (more than half the cards read the same median) the mean absolute
deviation times 1.253314 stands in, the usual fallback (equal for normal noise); when every card
reads the same, z is 0. A population of fewer than 3 cards has no fleet to compare with: no z.
A latency outlier is named, never a failure: the verdict is about the numbers a card computes.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet34_npu.core import schemas
from resnet34_npu.core.documents import format_table, utc_now
from resnet34_npu.core.errors import InputError, plain, show
from resnet34_npu.judge.consistency import CardToCard, compare_groups, group_of, is_card
from resnet34_npu.judge.criteria import Status
from resnet34_npu.reports.report import SCHEMA_VERSION

#: The largest report read (a dataset-scale report with every image's metrics fits well under it).
MAX_REPORT_BYTES = 256 * 1024 * 1024
#: Iglewicz and Hoaglin's modified z-score: 0.6745 = the normal distribution's third quartile,
#: so that MAD / 0.6745 estimates the standard deviation; z > 3.5 is their outlier bound.
Z_SCALE = 0.6745
OUTLIER_Z = 3.5
#: ...and at least this much slower than the population's median (see the module docstring).
OUTLIER_MIN_EXCESS = 0.10
#: The mean absolute deviation times this estimates the standard deviation of normal noise
#: (sqrt(pi / 2)); it replaces MAD / 0.6745 when the MAD is 0.
MEAN_AD_SCALE = 1.253314
#: Fewer cards of a kind than this: no robust z (there is no fleet to compare with).
OUTLIER_MIN_CARDS = 3

_STATUSES = tuple(s.value for s in Status)
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
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


class RefusedReports(InputError):
    """One or more reports could not be merged (and ``skip_invalid`` was not given): one line each."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        self.refusals = tuple(refusals)
        super().__init__("; ".join(r.line() for r in self.refusals))


class Invalid(ValueError):
    """Why a file is not a report we can merge (the reason only; the caller names the file)."""


@dataclass(frozen=True)
class Refusal:
    """A file left out of the merge, and why."""

    path: str
    reason: str

    def line(self) -> str:
        return f"report {show(self.path)}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason}


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


# --- reading and validating ----------------------------------------------------------------------


def find_reports(paths: Iterable[str | Path], *, exclude: str | Path | None = None) -> list[Path]:
    """The report files named by ``paths``: files as given, folders searched for ``*.json``
    recursively (in name order). ``exclude`` (the fleet document being written) is left out of
    folder searches. A path that does not exist, or a folder with no ``*.json``, is an
    :class:`InputError`: a typo must not silently drop a host."""
    skip = Path(exclude).resolve() if exclude is not None and str(exclude) != "-" else None
    found: dict[Path, Path] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*.json") if p.resolve() != skip)
            if not inside:
                raise InputError(f"report folder {show(path)}: holds no *.json file")
            for p in inside:
                found.setdefault(p.resolve(), p)
        elif path.exists() or path.is_symlink():
            found.setdefault(path.resolve(), path)
        else:
            raise InputError(f"report {show(path)}: no such file or folder")
    if not found:
        raise InputError("report merge: no report given")
    return list(found.values())


def read_text(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the merge
    except OSError as exc:
        raise Invalid(f"cannot be read ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # a folder named x.json, a FIFO, a device
        os.close(fd)
        raise Invalid("is a folder" if stat.S_ISDIR(mode) else "is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_REPORT_BYTES + 1)
        except OSError as exc:
            raise Invalid(f"cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise Invalid("is empty")
    if len(data) > MAX_REPORT_BYTES:
        raise Invalid(f"is larger than {MAX_REPORT_BYTES // 2**20} MiB, the most a report may be")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"is not JSON: not UTF-8 text (byte {exc.start})") from None


def _no_constant(token: str) -> Any:
    raise Invalid(f'is not a resnet34-npu report: it holds the token {token} (our reports write "nan", "inf")')


def parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        rest = text[exc.pos :].strip()  # the text ends inside a literal or number, or right after a token
        literal = any(word.startswith(rest) for word in ("true", "false", "null")) and text.strip() != rest
        if literal or re.fullmatch(r"-?[\d.eE+-]*", rest) or exc.msg.startswith("Unterminated string"):
            raise Invalid(
                f"is truncated: the JSON stops after {len(text.encode('utf-8'))} bytes before the document closes"
            ) from None
        raise Invalid(f"is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise Invalid("is not JSON that can be read: nested too deeply") from None


def _quote(value: Any) -> str:
    text = show(value) if isinstance(value, str) else plain(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> float:
    """A number of a validated report as a float ("nan", "inf", "-inf" are JSON's stand-ins)."""
    return _NON_FINITE[value] if isinstance(value, str) else float(value)


def _worst(images: list[dict[str, Any]]) -> WorstMetric | None:
    worst: WorstMetric | None = None
    for case in images:
        value = _number(case["metrics"]["rel_l2_error"])
        if worst is None or math.isnan(value) and not math.isnan(worst.value) or value > worst.value:
            worst = WorstMetric("rel_l2_error", value, case["image"])
    return worst


#: The software environment a card-to-card group shares: outputs are bit-identical only on one stack.
SOFTWARE = ("torch", "torchvision", "torch_npu", "cann", "cuda_runtime", "resnet34_npu")


def _software(machine: dict[str, Any]) -> str:
    return ", ".join(f"{k} {machine[k]}" for k in SOFTWARE if machine.get(k))


def _consistency(obj: dict[str, Any], software: str) -> tuple[str | None, tuple[tuple[str, tuple[str, ...]], ...]]:
    """A target's card-to-card group and its timed image's digests (none for the CPU, custom
    targets, untimed ones)."""
    digests = (obj.get("latency_ms") or {}).get("digests") or ()
    images = obj.get("images") or []
    if not digests or not images or not is_card(str(obj.get("device") or "custom")):
        return None, ()
    group = f"{group_of(obj['name'], str(obj.get('device_name') or ''), str(obj.get('dtype') or ''))} ({software})"
    return group, ((str(images[0]["image"]), tuple(map(str, digests))),)


def _target(obj: dict[str, Any], software: str = "") -> Target:
    name, device, device_name = obj["name"], obj.get("device"), obj.get("device_name")
    latency = obj.get("latency_ms")
    median = None
    if latency is not None:
        median = _number(latency["median"])
        median = median if math.isfinite(median) and median > 0 else None
    worst = _worst(obj.get("images") or [])
    card = device or name.split("/")[0]  # a skipped target has no device keys: its spec starts with it
    population = None
    if median is not None:
        kind = card.split(":")[0]
        spec = kind + name[len(card) :] if name.startswith(card) else name  # npu:3/fp16 -> npu/fp16
        batch = latency.get("batch_size") if latency else None
        population = f"{spec} on {device_name or 'an unnamed device'}" + (
            f" at batch {batch}" if batch not in (None, 1) else ""
        )
    return Target(name, card, population, Status(obj["verdict"]), worst, median, *_consistency(obj, software))


def _dataset_cards(obj: dict[str, Any]) -> tuple[Target, ...]:
    """A dataset-scale target (``compare --dataset``, one rank per card under torchrun): a
    target per card, its worst image's relative L2 as the worst metric, and its time per image
    (1000 / images per second) as its latency, compared only with other dataset runs."""
    name, device_name = obj["name"], obj.get("device_name")
    out = []
    for row in obj["dataset"].get("cards") or []:
        card = row["card"]
        worst = None
        if row.get("worst_rel_l2") is not None:
            worst = WorstMetric("rel_l2_error", _number(row["worst_rel_l2"]), row.get("worst_image") or "-")
        rate = row.get("images_per_s")
        per_image = 1000.0 / _number(rate) if rate else None
        kind = card.split(":")[0].split(" ")[0]
        spec = (
            kind + name[name.index("/") :] if "/" in name and not name.startswith(("tests.", "resnet34_npu.")) else name
        )
        population = f"dataset {spec} on {device_name or 'an unnamed device'}" if per_image else None
        out.append(Target(f"{name} [{card}]", card, population, Status(row["verdict"]), worst, per_image))
    return tuple(out)


def _key(document: dict[str, Any]) -> GroupKey:
    weights = document.get("weights") or {}
    digest = weights.get("tensor_sha256")
    if digest is None:
        file_digest = weights.get("sha256")
        digest = None if file_digest is None else f"sha256:{file_digest}"
    return GroupKey(
        weights=digest,
        profile=document.get("profile"),
        resnet34_npu=(document.get("machine") or {}).get("resnet34_npu"),
        schema_version=document["schema_version"],
    )


def check_version(document: Any) -> None:
    """What no schema says: a document that is not one of ours, or one a newer version wrote."""
    if not isinstance(document, dict):
        raise Invalid(f"is not a resnet34-npu report: the JSON is {type(document).__name__}, not an object")
    if "schema_version" not in document:
        keys = ", ".join(plain(k) for k in list(document)[:5]) or "none"
        raise Invalid(f"is not a resnet34-npu report: no schema_version (its keys: {keys})")
    version = document["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Invalid(f"is not a resnet34-npu report: schema_version is {_quote(version)}")
    if version > SCHEMA_VERSION:
        raise Invalid(
            f"was written by a newer resnet34-npu (schema_version {version}; this one reads up to "
            f"{SCHEMA_VERSION}): upgrade resnet34-npu to merge it"
        )


def check_schema(document: Any) -> str:
    """The document checked against its JSON Schema (:mod:`resnet34_npu.core.schemas`); returns
    the schema's name, raises the first rule it breaks as an :class:`Invalid`."""
    check_version(document)
    name = schemas.schema_for(document)
    found = schemas.problem(document, name)
    if found is not None:
        raise Invalid(f"does not match the report schema: {found}")
    return name


def validate(document: Any, path: str) -> HostReport:
    """The host's report at ``path`` checked against its JSON Schema (compare or acceptance
    report), then read. Raises the reason, without the file name, as an :class:`Invalid`."""
    check_version(document)
    if document.get("kind") == "fleet":
        raise Invalid("is a fleet report, not a host's report: merge the hosts' reports themselves")
    check_schema(document)
    verdict = Status(document["verdict"])
    if document.get("interrupted") is True:
        verdict = Status.INTERRUPTED
    host = (document.get("machine") or {}).get("host")
    if "targets" not in document and verdict == Status.INTERRUPTED:  # what `compare` leaves while it runs
        return HostReport(path, host, verdict, _key(document), (), 0)
    software = _software(document.get("machine") or {})
    targets = tuple(
        target
        for t in document["targets"]
        for target in (_dataset_cards(t) if isinstance(t.get("dataset"), dict) else (_target(t, software),))
    )
    tests = document.get("tests") or []
    failed = sum(1 for t in tests if t.get("outcome") in ("failed", "error"))
    return HostReport(path, host, verdict, _key(document), targets, failed)


def check_file(path: str | Path) -> str:
    """Read the JSON document at ``path`` (the merge's reader: size cap, no FIFO, no NaN token)
    and check it against its schema (compare, acceptance or fleet report); returns the schema's
    name, raises the reason as an :class:`Invalid`."""
    return check_schema(parse_json(read_text(Path(path))))


def read_report(path: str | Path) -> HostReport:
    """Read and validate one report; a file that is not one raises :class:`Invalid`."""
    path = Path(path)
    return validate(parse_json(read_text(path)), str(path))


# --- merging --------------------------------------------------------------------------------------


def robust_z(values: Sequence[float]) -> tuple[list[float], float, float, str]:
    """Iglewicz and Hoaglin's modified z-score of each value: ``0.6745 (x - median) / MAD``; with a
    MAD of 0, ``(x - median) / (1.253314 mean absolute deviation)``; all 0 when every value is
    the same. Returns (scores, median, MAD, which scale was used)."""
    median = statistics.median(values)
    deviations = [abs(v - median) for v in values]
    mad = statistics.median(deviations)
    if mad > 0:
        return [Z_SCALE * (v - median) / mad for v in values], median, mad, "MAD"
    mean_ad = statistics.fmean(deviations)
    if mean_ad > 0:
        return [(v - median) / (MEAN_AD_SCALE * mean_ad) for v in values], median, mad, "mean absolute deviation"
    return [0.0 for _ in values], median, mad, "none"


def is_outlier(value: float, z: float, median: float) -> bool:
    """Slower than the population by both rules: robust z above 3.5 and at least 10 % over the median."""
    return z > OUTLIER_Z and value >= median * (1 + OUTLIER_MIN_EXCESS)


def _row_verdict(report: HostReport, target: Target) -> Status:
    """A target of an interrupted run is "interrupted" (never a pass), unless it failed."""
    if report.interrupted and target.verdict != Status.FAIL:
        return Status.INTERRUPTED
    return target.verdict


def _group(key: GroupKey, reports: Sequence[HostReport], apart: str | None) -> Group:
    entries = [(r, t) for r in reports for t in r.targets]
    scores: dict[int, tuple[float, bool]] = {}
    populations: dict[str, Population] = {}
    by_population: dict[str, list[int]] = defaultdict(list)
    for i, (_, target) in enumerate(entries):
        if target.population is not None:
            by_population[target.population].append(i)
    for label in sorted(by_population):
        members = by_population[label]
        values = [entries[i][1].latency_median_ms for i in members]
        if len(values) < OUTLIER_MIN_CARDS:
            populations[label] = Population(label, len(values), statistics.median(values), 0.0, "none")
            continue
        zs, median, mad, scale = robust_z(values)
        populations[label] = Population(label, len(values), median, mad, scale)
        for i, value, z in zip(members, values, zs):
            scores[i] = (round(z, 2), is_outlier(value, z, median))
    cards = _card_to_card(entries)
    odd = {(o.card, g.group) for g in cards for o in g.outliers}
    rows = [
        CardRow(
            host=report.host,
            card=target.card,
            target=target.name,
            verdict=Status.FAIL
            if (f"{report.host} {target.card}", target.consistency_group) in odd
            else _row_verdict(report, target),
            worst_metric=target.worst,
            latency_median_ms=target.latency_median_ms,
            robust_z=scores[i][0] if i in scores else None,
            latency_outlier=scores[i][1] if i in scores else False,
            report=report.path,
        )
        for i, (report, target) in enumerate(entries)
    ]
    outliers = sorted(
        ((rows[i], populations[entries[i][1].population or ""]) for i in scores if rows[i].latency_outlier),
        key=lambda item: item[0].sort_key(),
    )
    rows += [  # a report with no targets (a run that never finished) is shown as a row of its own
        CardRow(r.host, None, None, r.verdict, None, None, None, False, r.path) for r in reports if not r.targets
    ]
    rows.sort(key=CardRow.sort_key)
    return Group(
        key,
        apart,
        verdict_of(reports, rows),
        tuple(reports),
        tuple(rows),
        tuple(populations.values()),
        tuple(outliers),
        tuple(cards),
    )


def _card_to_card(entries: Sequence[tuple[HostReport, Target]]) -> list[CardToCard]:
    """Card-to-card across hosts, as ``compare`` does on one
    (:func:`~resnet34_npu.judge.consistency.card_to_card`): cards (``host card``) of one device
    model, software environment and target, their timed image's digests (no outputs travel in a
    report: the ulps are not measured here)."""
    groups: dict[str, dict[str, dict[str, tuple[str, ...]]]] = defaultdict(dict)
    for report, target in entries:
        if target.consistency_group is not None and target.digests:
            groups[target.consistency_group][f"{report.host} {target.card}"] = dict(target.digests)
    return compare_groups(groups)


def worst_verdict(statuses: Iterable[Status]) -> Status:
    """FAIL over INTERRUPTED over NOT_RUN over PASS (the fleet's and a group's verdict)."""
    statuses = set(statuses)
    return next((s for s in (Status.FAIL, Status.INTERRUPTED, Status.NOT_RUN) if s in statuses), Status.PASS)


def verdict_of(reports: Sequence[HostReport], rows: Sequence[CardRow]) -> Status:
    """The verdict of a group: "fail" when any card or report failed; else "interrupted" when any run did not finish;
    else "not run" when a report compared nothing or no card passed; else "pass". Skipped and
    not-run cards of a passing report (a device the host lacks, a target selected away) are shown,
    not failed: ``--r34-require`` is how a host makes a missing card fail."""
    statuses = [r.verdict for r in reports] + [c.verdict for c in rows]
    if not any(c.verdict in (Status.PASS, Status.WARN) for c in rows):
        statuses.append(Status.NOT_RUN)
    return worst_verdict(s for s in statuses if s in (Status.FAIL, Status.INTERRUPTED, Status.NOT_RUN))


def _notes(groups: Sequence[Group]) -> list[str]:
    notes = []
    if len(groups) > 1:
        notes.append(
            f"{len(groups)} groups kept apart, never compared or averaged together "
            "(reports must share weights, profile, resnet34-npu version and schema_version)"
        )
        notes += [f"group {i}: {g.apart}" for i, g in enumerate(groups, 1) if g.apart]
    for i, group in enumerate(groups, 1):
        for report in group.reports:
            failed_cards = any(t.verdict == Status.FAIL for t in report.targets)
            if report.verdict == Status.FAIL and not failed_cards:
                why = f"{report.failed_tests} test(s) failed" if report.failed_tests else "see the report"
                notes.append(
                    f"report {show(report.path)} (host {_value(report.host)}) is FAIL though none of its cards "
                    f"failed: {why}"
                )
            elif report.verdict in (Status.INTERRUPTED, Status.NOT_RUN):
                what = "did not finish" if report.interrupted else "compared nothing"
                notes.append(
                    f"report {show(report.path)} (host {_value(report.host)}) is {report.verdict.value.upper()}: "
                    f"the run {what}; its cards count as {report.verdict.value}, never as a pass"
                )
        seen: dict[tuple, list[str]] = defaultdict(list)
        for row in group.cards:
            if row.card is not None:
                seen[(row.host, row.card, row.target)].append(row.report)
        repeated: dict[tuple[str | None, tuple[str, ...]], int] = Counter(
            (host, tuple(sorted(paths))) for (host, _, _), paths in seen.items() if len(paths) > 1
        )
        for (host, paths), count in repeated.items():
            notes.append(
                f"group {i}: host {_value(host)}: {count} card target(s) appear in {len(paths)} reports "
                f"({', '.join(show(p) for p in paths)}); every row is kept, so a failing one still fails"
            )
    return notes


def merge_reports(reports: Sequence[HostReport], refused: Sequence[Refusal] = ()) -> Fleet:
    """Group ``reports`` by :class:`GroupKey` (largest group first), rank and score every card."""
    buckets: dict[GroupKey, list[HostReport]] = defaultdict(list)
    for report in reports:
        buckets[report.key].append(report)
    keys = sorted(buckets, key=lambda k: (-len(buckets[k]), repr(k.to_dict())))
    groups = []
    for i, key in enumerate(keys):
        apart = None
        if i:
            apart = f"kept apart from group 1: {', '.join(key.differences(keys[0]))}"
        groups.append(_group(key, buckets[key], apart))
    verdict = worst_verdict(g.verdict for g in groups)
    return Fleet(utc_now(), verdict, tuple(groups), tuple(refused), tuple(_notes(groups)))


def merge(paths: Iterable[str | Path], *, skip_invalid: bool = False, exclude: str | Path | None = None) -> Fleet:
    """Read every report under ``paths`` (:func:`find_reports`) and merge them. A file that is
    not a valid report raises :class:`RefusedReports` (all of them, one line each), unless
    ``skip_invalid``: then it is listed in the fleet's ``refused`` and the merge goes on."""
    reports, refused = [], []
    for path in find_reports(paths, exclude=exclude):
        try:
            reports.append(read_report(path))
        except Invalid as exc:
            refused.append(Refusal(str(path), str(exc)))
    if refused and not skip_invalid:
        raise RefusedReports(refused)
    if not reports:
        raise InputError(f"report merge: none of the {len(refused)} file(s) is a report that can be merged")
    return merge_reports(reports, refused)


# --- the table ------------------------------------------------------------------------------------

TABLE_HEADER = (
    "verdict",
    "host",
    "card",
    "target",
    "worst rel L2",
    "on image",
    "median ms",
    "robust z",
    "latency",
    "group",
)


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_rows(fleet: Fleet, *, every_card: bool = False) -> list[tuple[str, ...]]:
    """The CLI's rows, failing cards first; without ``every_card`` only those that need a look
    (not a pass, a warning or a skip, or slow)."""
    rows = []
    for group, row in fleet.rows:
        if not every_card and row.rank > _OUTLIER_RANK:
            continue
        worst = row.worst_metric
        rows.append(
            (
                row.verdict.value.upper(),
                "-" if row.host is None else row.host,
                row.card or "-",
                row.target or f"(no targets: report {row.report})",
                "-" if worst is None else format(worst.value, ".2e"),
                "-" if worst is None else worst.image,
                _cell(row.latency_median_ms, ".2f"),
                _cell(row.robust_z, ".1f"),
                "SLOW" if row.latency_outlier else "",
                str(group),
            )
        )
    return rows


def outlier_lines(fleet: Fleet) -> list[str]:
    """One line per slow card: its median, the median of the cards it was compared with, by how
    much it is slower, its robust z."""
    lines = []
    for number, group in enumerate(fleet.groups, 1):
        for row, population in group.outliers:
            excess = row.latency_median_ms / population.median_ms - 1
            lines.append(
                f"latency outlier: host {_value(row.host)} card {plain(row.card)} ({plain(row.target)}): "
                f"{row.latency_median_ms:.2f} ms median, {excess:+.0%} over the median {population.median_ms:.2f} ms "
                f"of the {population.cards} cards running {plain(population.label)} in group {number}; "
                f"robust z {row.robust_z:.1f} > {OUTLIER_Z}"
            )
    return lines


def summary_lines(fleet: Fleet, *, every_card: bool = False) -> list[str]:
    """What ``report merge`` prints before its verdict line: the refused files, the notes (groups
    kept apart, unfinished runs, repeated cards), the table (failing cards first) and the slow
    cards; a line says how many passing cards the table left out."""
    lines = [f"refused {r.line()}" for r in fleet.refused] + list(fleet.notes)
    rows = table_rows(fleet, every_card=every_card)
    if rows:
        lines += format_table(TABLE_HEADER, rows)
    left_out = sum(len(g.cards) for g in fleet.groups) - len(rows)
    if left_out:
        lines.append(f"{left_out} other card target(s) pass, warn or were skipped (--all lists every one)")
    lines += [line for g in fleet.groups for c in g.card_to_card if not c.passed for line in c.lines()]
    return lines + outlier_lines(fleet)


def verdict_line(fleet: Fleet) -> str:
    """``verdict: FAIL (3 of 1024 card targets failed, 2 latency outliers; 64 reports in 1 group)``."""
    counts = Counter(row.verdict for _, row in fleet.rows)
    parts = [f"{counts[Status.FAIL]} of {sum(counts.values())} card targets failed"]
    parts += [f"{counts[s]} {s.value}" for s in (Status.INTERRUPTED, Status.NOT_RUN) if counts[s]]
    outliers = sum(len(g.outliers) for g in fleet.groups)
    parts.append(f"{outliers} latency outlier{'' if outliers == 1 else 's'}")
    reports = sum(len(g.reports) for g in fleet.groups)
    where = f"{reports} report(s) in {len(fleet.groups)} group(s)" + (
        f", {len(fleet.refused)} refused" if fleet.refused else ""
    )
    return f"verdict: {fleet.verdict.value.upper()} ({', '.join(parts)}; {where})"
