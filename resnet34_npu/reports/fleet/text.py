"""What ``report merge`` prints: the table of cards (failing first, only those that need a look
unless every card is asked for), the notes and refused files, one line per slow card, and the
verdict line.
"""

from __future__ import annotations

from collections import Counter

from resnet34_npu.core.documents import format_table
from resnet34_npu.core.errors import plain
from resnet34_npu.judge.criteria import Status
from resnet34_npu.reports.fleet.model import _OUTLIER_RANK, Fleet, _value
from resnet34_npu.reports.fleet.outliers import OUTLIER_Z

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
