"""The summary of a dataset run, computed by rank 0 from every rank's results file (streamed:
only two floats an image are held): verdict, quantiles, accuracy and MLPerf's rule, the worst
images with the command that localises each, the per-rank rows and the cross-check
(:mod:`~resnet34_npu.dataset.crosscheck`); and the summary as the lines ``compare --dataset``
and the pytest summary print.
"""

from __future__ import annotations

import heapq
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from resnet34_npu.core.documents import format_table
from resnet34_npu.core.errors import plain
from resnet34_npu.dataset import crosscheck, distributed
from resnet34_npu.dataset.results import UNREADABLE, Job, Results
from resnet34_npu.judge.criteria import Status, worst_status
from resnet34_npu.targets.spec import TargetSpec, parse_target

#: MLPerf Inference's closed-division accuracy rule for ResNet: at least 99 % of the FP32
#: reference's top-1 accuracy.
MLPERF_FRACTION = 0.99
WORST = 10


@dataclass
class _Card:
    card: str
    statuses: Counter = field(default_factory=Counter)
    images: int = 0
    worst: tuple[float, str] = (-1.0, "")


def _worst_key(value: Any) -> float:
    """Relative L2 for ordering, NaN (or "nan" from JSON) as the worst of all."""
    if isinstance(value, str) or value is None or (isinstance(value, float) and math.isnan(value)):
        return math.inf
    return float(value)


def _quantile(values: np.ndarray, q: float) -> float | None:
    return None if values.size == 0 else float(np.quantile(values, q))


def summarize(job: Job, results: Results, statuses: list[distributed.RankStatus]) -> dict[str, Any]:
    """The dataset summary from every results file (streamed: only two floats an image are held)."""
    counts: Counter = Counter()
    per_card: dict[str, _Card] = {}
    rel, cos = [], []
    worst: list[tuple[float, int, dict[str, Any]]] = []
    unreadable = []
    seen: set[int] = set()
    agree = hits = 0
    acc = Counter()
    for path in results.files():
        for record in results.records(path):
            if record["i"] in seen:
                continue  # never twice, even if a file was copied
            seen.add(record["i"])
            status = record["status"]
            counts[status] += 1
            card = per_card.setdefault(record["card"], _Card(record["card"]))
            card.statuses[status] += 1
            card.images += 1
            if status == UNREADABLE:
                unreadable.append({"path": record["path"], "reason": record["reason"]})
                continue
            value = _worst_key(record["rel_l2"])
            rel.append(value)
            cos.append(float(record["cosine"]) if not isinstance(record["cosine"], str) else math.nan)
            if value > card.worst[0]:
                card.worst = (value, record["path"])
            item = (value, -record["i"], record)
            if len(worst) < WORST:
                heapq.heappush(worst, item)
            else:
                heapq.heappushpop(worst, item)
            agree += bool(record["top1_match"])
            hits += 1
            if record["label"] is not None:
                label = record["label"]
                acc["n"] += 1
                acc["ref1"] += record["reference_top5"][0] == label
                acc["ref5"] += label in record["reference_top5"]
                acc["tgt1"] += record["target_top5"][0] == label
                acc["tgt5"] += label in record["target_top5"]
    rel_a, cos_a = np.asarray(rel, dtype=np.float64), np.asarray(cos, dtype=np.float64)
    finite = np.isfinite(rel_a) & np.isfinite(cos_a)
    nonfinite = int((~finite).sum())  # NaN or Inf logits: the worst images, kept out of the quantiles
    missing = len(job.dataset.entries) - len(seen)
    verdicts = [s for s in counts if s != UNREADABLE]
    verdict = worst_status(verdicts) if verdicts else Status.NOT_RUN
    failures = []
    if counts[Status.FAIL]:
        failures.append(f"{counts[Status.FAIL]} of {hits} images fail the {job.profile} profile")
    accuracy = None
    if acc["n"]:
        n = acc["n"]
        accuracy = {
            "images": n,
            "reference_top1": acc["ref1"] / n,
            "reference_top5": acc["ref5"] / n,
            "target_top1": acc["tgt1"] / n,
            "target_top5": acc["tgt5"] / n,
            "mlperf_fraction": MLPERF_FRACTION,
        }
        if accuracy["reference_top1"] == 0:
            accuracy["mlperf_pass"] = None  # 0 >= 0.99 x 0 would pass anything: the labels do not fit the model
            accuracy["mlperf_note"] = (
                "not applicable: the reference's top-1 accuracy is 0 (labels that are not this model's classes, "
                "or untrained weights)"
            )
        else:
            accuracy["mlperf_pass"] = accuracy["target_top1"] >= MLPERF_FRACTION * accuracy["reference_top1"]
        if accuracy["mlperf_pass"] is False:
            failures.append(
                f"top-1 accuracy {accuracy['target_top1']:.5g} is below {MLPERF_FRACTION:g} x the reference's "
                f"{accuracy['reference_top1']:.5g} (MLPerf's rule)"
            )
    cross, found = crosscheck.judge(job, results, [s.card for s in statuses])
    odd = {o.card: o for o in found.outliers} if found is not None else {}
    if found is not None and not found.passed:
        failures.extend(found.lines())
    rank_rows = []
    for status in statuses:
        name = status.card
        card = per_card.get(name, _Card(name))
        compared = [s for s in card.statuses if s != UNREADABLE]
        card_verdict = worst_status(compared) if compared else Status.NOT_RUN
        who = f"rank {status.rank} ({name})" if len(statuses) > 1 else name
        if not status.ok:
            card_verdict = Status.FAIL
            failures.append(f"{who} failed: {status.reason}")
        elif status.images > card.images:
            card_verdict = Status.FAIL
            failures.append(
                f"{who} computed {status.images} images but {card.images} of its results are in {results.folder} "
                "(on several hosts, --results must be a folder every rank shares)"
            )
        if name in odd:
            card_verdict = Status.FAIL
        rank_rows.append(
            {
                "rank": status.rank,
                "card": name,
                "verdict": Status(card_verdict).value,
                "error": status.reason or None,
                "images": card.images,
                "computed_now": status.images,
                "statuses": dict(card.statuses),
                "worst_image": card.worst[1] or None,
                "worst_rel_l2": None if card.worst[0] < 0 else card.worst[0],
                "images_per_s": status.images / status.seconds if status.images and status.seconds > 0 else None,
                "card_outlier": odd[name].to_dict() if name in odd else None,
            }
        )
    if failures:
        verdict = Status.FAIL
    elif missing and verdict != Status.NOT_RUN:
        verdict = Status.INTERRUPTED
    return {
        "verdict": Status(verdict).value,
        "failures": failures,
        "images": len(job.dataset.entries),
        "compared": hits,
        "missing": missing,
        "statuses": {k: counts[k] for k in sorted(counts)},
        "unreadable": unreadable,
        "nonfinite": nonfinite,
        "rel_l2": {
            "median": _quantile(rel_a[finite], 0.5),
            "p99": _quantile(rel_a[finite], 0.99),
            "max": math.inf if nonfinite else _quantile(rel_a, 1.0),
        },
        "cosine": {
            "median": _quantile(cos_a[finite], 0.5),
            "p1": _quantile(cos_a[finite], 0.01),
            "min": math.nan if nonfinite else _quantile(cos_a, 0.0),
        },
        "top1_agreement": agree / hits if hits else None,
        "accuracy": accuracy,
        "worst": [
            {
                "path": r["path"],
                "card": r["card"],
                "status": r["status"],
                "rel_l2": r["rel_l2"],
                "cosine": r["cosine"],
                "localize": localize_command(job, r),
            }
            for _, _, r in sorted(worst, key=lambda item: (-item[0], -item[1]))
        ],
        "cards": rank_rows,
        "cross_check": cross,
        "results": str(results.folder),
    }


def localize_command(job: Job, record: dict[str, Any]) -> str:
    """The command that localises one image's disagreement on the card that computed it."""
    target = job.target
    parsed = parse_target(job.target)
    device = record["card"].split(" ")[0]
    if isinstance(parsed, TargetSpec) and device not in ("custom",):
        target = parsed.on(device).name
    path = job.dataset.root / record["path"]
    return (
        f"python -m resnet34_npu localize --target {_quote(target)} --image {_quote(str(path))} "
        f"--weights {_quote(job.weights)} --profile {job.profile}"
    )


def _quote(text: str) -> str:
    """``text`` as one shell word that runs as printed: shlex's quoting, or for a name with
    control characters or bytes that are not UTF-8, bash's ``$'...'`` with ``\\xNN`` escapes."""
    import shlex

    if text.isprintable() and not any(0xDC80 <= ord(c) <= 0xDCFF for c in text):
        return shlex.quote(text)
    data = os.fsencode(text)
    return "$'" + "".join(chr(b) if 0x20 <= b < 0x7F and chr(b) not in "'\\" else f"\\x{b:02x}" for b in data) + "'"


def _fmt(value: object, spec: str = ".5g") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, float) else str(value)


def summary_lines(name: str, s: dict[str, Any]) -> list[str]:
    """The dataset summary as the lines ``compare --dataset`` and the pytest summary print."""
    out: list[str] = []
    out.append(
        f"{plain(name)}: {s['compared']} of {s['images']} images compared; "
        + ", ".join(f"{k} {v}" for k, v in s["statuses"].items())
    )
    out.append(
        f"  rel L2 median {_fmt(s['rel_l2']['median'], '.3e')}, p99 {_fmt(s['rel_l2']['p99'], '.3e')}, "
        f"max {_fmt(s['rel_l2']['max'], '.3e')}; cosine median {_fmt(s['cosine']['median'], '.8f')}, "
        f"min {_fmt(s['cosine']['min'], '.8f')}; top-1 agreement {_fmt(s['top1_agreement'])}"
    )
    if s.get("nonfinite"):
        out.append(f"  {s['nonfinite']} images with NaN or Inf logits (the worst; left out of the quantiles)")
    acc = s["accuracy"]
    if acc and acc.get("mlperf_note"):
        out.append(f"  MLPerf rule {acc['mlperf_note']}")
    if acc:
        out.append(
            f"  accuracy on {acc['images']} labelled images: reference top-1 {acc['reference_top1']:.5g}, "
            f"top-5 {acc['reference_top5']:.5g}; target top-1 {acc['target_top1']:.5g}, "
            f"top-5 {acc['target_top5']:.5g}; MLPerf rule (target >= {acc['mlperf_fraction']:g} x reference): "
            + {True: "PASS", False: "FAIL", None: "n/a"}[acc["mlperf_pass"]]
        )
    rows = [
        (
            str(c["rank"]),
            c["card"],
            c["verdict"].upper(),
            str(c["images"]),
            plain(c["worst_image"] or "-"),
            _fmt(c["worst_rel_l2"], ".3e"),
            _fmt(c["images_per_s"], ".1f"),
        )
        for c in s["cards"]
    ]
    if len(rows) > 1:
        for line in format_table(("rank", "card", "verdict", "images", "worst image", "rel L2", "images/s"), rows):
            out.append("  " + line)
    elif rows and rows[0][6] != "-":
        out.append(f"  throughput on {rows[0][1]}: {rows[0][6]} images/s (decoding, forward passes and comparisons)")
    cross = s.get("cross_check")
    if cross and cross["skipped"]:
        out.append(f"  cross-check: none ({plain(cross['skipped'])})")
    elif cross and cross["passed"]:
        out.append(f"  cross-check: {len(cross['images'])} shared images on {len(cross['cards'])} cards, bit-identical")
    for item in s["unreadable"]:
        out.append(f"  unreadable {plain(item['path'])}: {plain(item['reason'])}")
    if s["worst"]:
        out.append(f"  worst {len(s['worst'])} images (rel L2), localise each with:")
        for w in s["worst"]:
            out.append(f"    {_fmt(w['rel_l2'], '.3e')} {w['status'].upper():4} {w['localize']}")
    for line in s["failures"]:
        out.append(f"FAIL {plain(name)}: {plain(line)}")
    if s["missing"]:
        out.append(f"  {s['missing']} images have no result yet (interrupted): run again with --resume")
    return out
