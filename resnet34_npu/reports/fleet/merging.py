"""The merge of ``report merge``: reports grouped by what they must share (weights, profile,
suite and schema version; groups are never pooled), every card ranked and scored against its
latency population (:mod:`.outliers`), cards of one device model compared card to card across
hosts, the verdicts of groups and of the fleet, and the notes that say what was kept apart.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from resnet34_npu.core.documents import utc_now
from resnet34_npu.core.errors import InputError, show
from resnet34_npu.judge.consistency import CardToCard, compare_groups
from resnet34_npu.judge.criteria import Status
from resnet34_npu.reports.fleet.model import (
    REPORT,
    CardRow,
    Fleet,
    Group,
    GroupKey,
    HostReport,
    Population,
    Refusal,
    Target,
    _value,
)
from resnet34_npu.reports.fleet.outliers import OUTLIER_MIN_CARDS, is_outlier, robust_z
from resnet34_npu.reports.fleet.read import Invalid, RefusedReports, find_reports, read_report


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
            refused.append(Refusal(str(path), str(exc), REPORT))
    if refused and not skip_invalid:
        raise RefusedReports(refused)
    if not reports:
        raise InputError(f"report merge: none of the {len(refused)} file(s) is a report that can be merged")
    return merge_reports(reports, refused)
