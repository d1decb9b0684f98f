"""Dataset-scale agreement: one target against the reference over every image of a dataset,
on one card or, under ``torchrun``, on every card of a host (the dataset sharded over the
ranks exactly: no image twice, none padded in).

Per-image results are streamed to a results folder as they are produced, one JSON line an
image, in a file per rank (``rank<R>.jsonl``), so memory stays flat and an interrupted run
resumes (``--resume``) from what is on disk: every rank reads every rank's file, skips the
images already there and appends the rest to its own. The summary is computed from those
files at the end by rank 0, which writes the one report.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet34_npu.core.documents import dumps_line, format_table
from resnet34_npu.core.errors import InputError, plain, show
from resnet34_npu.dataset import distributed
from resnet34_npu.dataset.reference_file import StoredReference
from resnet34_npu.dataset.sources import Dataset, Progress, loader
from resnet34_npu.dataset.sources import file_sha256 as dataset_file_sha256
from resnet34_npu.judge.compare import Session, is_target_error, truth_metrics
from resnet34_npu.judge.criteria import Status, judge, worst_status
from resnet34_npu.judge.metrics import compare_logits
from resnet34_npu.targets import devices
from resnet34_npu.targets.runners import Runner
from resnet34_npu.targets.spec import TargetSpec, parse_target

UNREADABLE = "unreadable"
#: MLPerf Inference's closed-division accuracy rule for ResNet: at least 99 % of the FP32
#: reference's top-1 accuracy.
MLPERF_FRACTION = 0.99
WORST = 10


@dataclass(frozen=True)
class Job:
    """What one dataset comparison computes: its identity decides which results on disk it may
    resume."""

    dataset: Dataset
    target: str
    weights: str
    profile: str
    batch_size: int
    workers: int
    results: Path
    reference: StoredReference | None = None
    fp64_truth: bool = False
    strict_images: bool = False
    resume: bool = False

    def identity(self, weights_sha: str, reference_name: str) -> dict[str, Any]:
        return {
            "target": self.target,
            "weights": weights_sha,
            "profile": self.profile,
            "batch_size": self.batch_size,
            "listing": self.dataset.listing_sha256(),
            "reference": self.reference.header["payload_sha256"] if self.reference else f"{reference_name} computed",
            "fp64_truth": self.truth,
        }

    @property
    def truth(self) -> bool:
        return self.fp64_truth or (self.reference is not None and self.reference.truth is not None)


def results_folder(base: Path, target: str) -> Path:
    """The results folder of one target under ``base``: its name as one folder name."""
    return base / "".join(c if c.isalnum() or c in "-_.=" else "_" for c in target)


def placed(spec_text: str, world: distributed.World) -> str:
    """The target of this rank: a built-in target on an indexed device kind runs on the local
    rank's card (``npu`` -> ``npu:3`` on local rank 3); custom targets and the CPU as given."""
    spec = parse_target(spec_text)
    if not isinstance(spec, TargetSpec) or not world.distributed:
        return spec_text
    kind = devices.resolve_device("auto").type if spec.kind == "auto" else spec.kind
    if not devices.kind_of(kind).indexed:
        return spec.on(kind).name
    return spec.on(f"{kind}:{world.local_rank}").name


class Results:
    """The results folder: one ``rank<R>.jsonl`` per rank, each starting with the run's
    identity and the id of the run that started it; a torn last line (a killed process) is cut
    off before appending. ``own_only``: read only this run's files (a run that started afresh
    must never count another run's results, e.g. a second host writing the same folder)."""

    def __init__(self, folder: Path, identity: dict[str, Any], rank: int, run_id: str = "", own_only: bool = False):
        self.folder, self.identity, self.rank = folder, identity, rank
        self.run_id, self.own_only = run_id, own_only
        self.mine = folder / f"rank{rank}.jsonl"
        self._lock: Any = None

    def lock(self) -> None:
        """Hold the folder for this run (rank 0): a second live run writing the same folder is
        refused instead of replacing this one's files."""
        import fcntl

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.folder / ".lock", "a")  # noqa: SIM115 - held until release()
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"results folder {show(self.folder)}: in use by another run right now; wait for it, or give this run "
                "its own --results folder"
            ) from None
        except OSError as exc:
            raise InputError(f"results folder {show(self.folder)}: cannot write in it ({exc.strerror})") from None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("rank*.jsonl"))

    def clear(self, world: distributed.World) -> None:
        """Start afresh: this rank's file, and (rank 0) files of ranks this run does not have."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for path in self.files():
                number = path.stem[4:]
                if path == self.mine or (world.rank == 0 and (not number.isdigit() or int(number) >= world.size)):
                    path.unlink()
        except OSError as exc:
            raise InputError(f"results folder {show(self.folder)}: cannot write in it ({exc.strerror})") from None

    def records(self, path: Path) -> Iterator[dict[str, Any]]:
        """The complete image records of one file (a torn last line is not one)."""
        with open(path, "rb") as handle:
            header = handle.readline()
            if not header.endswith(b"\n"):
                return  # being created by its rank right now: nothing in it yet
            try:
                head = json.loads(header)
                theirs, run = head.get("identity"), head.get("run")
            except (ValueError, AttributeError):
                theirs = run = None
            if self.own_only and run != self.run_id:
                return  # another run's file (it started afresh after this one, or runs beside it)
            if theirs != self.identity:
                raise InputError(
                    f"results folder {show(self.folder)}: {path.name} holds results of another run "
                    "(target, weights, profile, batch size, dataset or reference differ); "
                    "drop --resume to start afresh"
                )
            for number, line in enumerate(handle, 2):
                if not line.endswith(b"\n"):
                    return
                try:
                    record = json.loads(line)
                    if record.get("kind") == "image" and not (
                        isinstance(record["i"], int) and isinstance(record["status"], str)
                    ):
                        raise KeyError("i")
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise InputError(
                        f"results folder {show(self.folder)}: {path.name} line {number} is not a result this suite "
                        "wrote (edited or damaged); drop --resume to start afresh"
                    ) from None
                if record.get("kind") == "image":
                    yield record

    def saved(self) -> dict[int, dict[str, Any]]:
        """Every saved image record by dataset index."""
        return {r["i"]: r for path in self.files() for r in self.records(path)}

    def open(self) -> Any:
        """This rank's file, for appending after its last complete line."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.mine.exists():
                with open(self.mine, "r+b") as handle:
                    data = handle.read()
                    handle.truncate(data.rfind(b"\n") + 1)
                if self.mine.stat().st_size == 0:
                    self.mine.unlink()
            fresh = not self.mine.exists()
            handle = open(self.mine, "ab")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise InputError(f"results folder {show(self.folder)}: cannot write in it ({exc.strerror})") from None
        if fresh:
            header = {"kind": "header", "identity": self.identity, "run": self.run_id}
            handle.write((json.dumps(header) + "\n").encode())
        return handle


def _identity(index: int, dataset: Dataset, digest: str, card: str) -> dict[str, Any]:
    """What every image record starts with: which image, its bytes' digest, its label and card."""
    entry = dataset.entries[index]
    return {"kind": "image", "i": index, "path": entry.path, "sha256": digest, "label": entry.label, "card": card}


def _record(
    index: int, dataset: Dataset, digest: str, card: str, comparison: Any, verdict: Any, truth: dict[str, float]
) -> dict[str, Any]:
    sample = comparison.samples[0]
    record = {
        **_identity(index, dataset, digest, card),
        "status": Status(verdict.status).value,
        "rel_l2": comparison.rel_l2_error,
        "cosine": comparison.cosine_similarity,
        "max_abs": comparison.max_abs_error,
        "prob_max_rel": comparison.prob_max_rel_error,
        "top1_match": sample.top1_match,
        "top5_overlap": sample.top5_overlap,
        "reference_top5": list(sample.reference_top5),
        "target_top5": list(sample.target_top5),
        "failures": list(verdict.failure_lines),
        "warnings": list(verdict.warning_lines),
    }
    if truth:
        record["error_ratio_vs_cpu"] = truth["error_ratio_vs_cpu"]
    return record


def run_shard(
    job: Job,
    session: Session,
    runner: Runner,
    card: str,
    world: distributed.World,
    results: Results,
    todo: Sequence[int],
) -> int:
    """Compare ``runner`` with the reference on the images ``todo``, appending each image's
    record to this rank's results file as its batch finishes. Returns the images computed."""
    stored = job.reference
    rows = {image["path"]: image for image in stored.images} if stored else {}
    label = f"rank {world.rank} ({card})" if world.distributed else runner.name
    progress = Progress(len(todo), label, position=world.local_rank)
    computed = 0
    try:
        with results.open() as handle:
            for loaded in loader(job.dataset, todo, job.batch_size, job.workers):
                lines: list[tuple[int, bytes]] = []  # (dataset index, its JSON line), written in index order
                unreferenced: set[int] = set()
                for index, digest, reason in zip(loaded.indices, loaded.sha256, loaded.reasons):
                    entry = job.dataset.entries[index]
                    if stored:
                        known = rows[entry.path]
                        if digest != (known["sha256"] or ""):
                            raise InputError(
                                f"image {show(job.dataset.root / entry.path)}: changed since the reference file "
                                f"{show(stored.path)} was built (sha256 {digest[:16] or 'unreadable'}... , stored "
                                f"{(known['sha256'] or 'unreadable')[:16]}...); rebuild the reference"
                            )
                    if stored and not reason and known["row"] is None:  # another Pillow, e.g. without WebP
                        reason = f"not in the reference: unreadable when the reference was built ({known['reason']})"
                        unreferenced.add(index)
                    if reason:
                        if job.strict_images:
                            raise InputError(f"image {show(job.dataset.root / entry.path)}: {reason} (--strict-images)")
                        record = {**_identity(index, job.dataset, digest, card), "status": UNREADABLE, "reason": reason}
                        lines.append((index, dumps_line(record)))
                keep = [at for at, index in enumerate(loaded.readable) if index not in unreferenced]
                readable = [loaded.readable[at] for at in keep]
                batch = loaded.batch if len(keep) == len(loaded.readable) else loaded.batch[keep]
                if readable:
                    try:
                        logits = runner.run(batch)
                    except BaseException as exc:
                        if not is_target_error(exc):
                            raise
                        raise TargetFailed(f"{type(exc).__name__}: {exc}".splitlines()[0], computed) from exc
                    if stored:
                        picked = [rows[job.dataset.entries[i].path]["row"] for i in readable]
                        reference = torch.from_numpy(np.asarray(stored.logits[picked], dtype=np.float32))
                        truth = (
                            torch.from_numpy(np.asarray(stored.truth[picked], dtype=np.float64))
                            if stored.truth is not None
                            else None
                        )
                    else:
                        reference = session.reference.run(batch)
                        truth = session.truth_run(batch) if job.fp64_truth else None
                    digests = dict(zip(loaded.indices, loaded.sha256))
                    for row, index in enumerate(readable):
                        comparison = compare_logits(
                            reference[row : row + 1], logits[row : row + 1], precision=runner.precision
                        )
                        extra = (
                            truth_metrics(truth[row : row + 1], reference[row : row + 1], logits[row : row + 1])
                            if truth is not None
                            else {}
                        )
                        verdict = judge(comparison, session.profile, extra)
                        record = _record(index, job.dataset, digests[index], card, comparison, verdict, extra)
                        lines.append((index, dumps_line(record)))
                handle.write(b"".join(line for _, line in sorted(lines)))
                handle.flush()
                os.fsync(handle.fileno())
                computed += len(loaded.indices)
                progress.update(len(loaded.indices))
    finally:
        progress.close()
    return computed


class TargetFailed(Exception):
    """The target's own code raised on a batch (a device error): its rank stops and fails,
    with the images it had computed before."""

    def __init__(self, reason: str, computed: int) -> None:
        super().__init__(reason)
        self.reason, self.computed = reason, computed


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


def card_label(runner: Runner, world: distributed.World) -> str:
    """The card a rank computes on: its device (``npu:3``); ranks sharing a device that has no
    index (the CPU under torchrun, a custom target) are told apart by their rank."""
    device = getattr(runner, "device", None)
    label = str(device) if device is not None else "custom"
    if world.distributed and (device is None or device.index is None):
        label += f" (rank {world.rank})"
    local = os.environ.get("LOCAL_WORLD_SIZE", "")
    if world.distributed and local.isdigit() and 0 < int(local) < world.size:  # several hosts: npu:3 of which?
        label = f"{socket.gethostname()}/{label}"
    return label


def run(
    job: Job,
    session: Session,
    world: distributed.World,
    group: distributed.Group | None,
    *,
    runner: Runner | None = None,
) -> tuple[dict[str, Any] | None, Runner]:
    """This rank's part of the job (with ``runner`` when the caller built it already); on
    rank 0 the summary of all ranks (None elsewhere)."""
    identity = job.identity(session.weights.tensor_sha256, session.reference.name)
    run_id = uuid.uuid4().hex if group is None else group.agree(uuid.uuid4().hex)
    results = Results(job.results, identity, world.rank, run_id, own_only=not job.resume)
    runner = runner or session.runner(placed(job.target, world))
    card = card_label(runner, world)
    if world.rank == 0:
        results.lock()
    try:
        return _run_locked(job, session, world, group, runner, card, results)
    finally:
        results.release()


def _verify_saved(job: Job, world: distributed.World, saved: dict[int, dict[str, Any]]) -> None:
    """Before resuming: every saved result of this rank's shard is of the image as it is now
    (its bytes' SHA-256), and none is an unreadable image when ``--strict-images`` asks."""
    for index, record in saved.items():
        if index % world.size != world.rank:
            continue
        path = job.dataset.root / job.dataset.entries[index].path
        if job.strict_images and record["status"] == UNREADABLE:
            raise InputError(f"image {show(path)}: {record.get('reason')} (--strict-images; saved by the run resumed)")
        if dataset_file_sha256(path) != (record.get("sha256") or ""):
            raise InputError(
                f"image {show(path)}: changed since its result was saved in {show(job.results)}; "
                "drop --resume to start afresh"
            )


def _run_locked(
    job: Job,
    session: Session,
    world: distributed.World,
    group: distributed.Group | None,
    runner: Runner,
    card: str,
    results: Results,
) -> tuple[dict[str, Any] | None, Runner]:
    if group is not None:
        group.barrier()  # rank 0 holds the folder before any rank clears its file
    if not job.resume:
        results.clear(world)
    if group is not None:
        group.barrier()  # nobody reads the folder while another rank clears its file
    saved = results.saved() if job.resume else {}
    _verify_saved(job, world, saved)
    done = set(saved)
    todo = [i for i in range(len(job.dataset.entries)) if i % world.size == world.rank and i not in done]
    start, computed, reason = time.monotonic(), 0, ""
    try:
        computed = run_shard(job, session, runner, card, world, results, todo)
    except TargetFailed as exc:
        reason, computed = exc.reason, exc.computed
    mine = distributed.RankStatus(world.rank, card, not reason, computed, time.monotonic() - start, reason)
    if group is None:
        statuses = [mine]
    else:
        try:
            statuses = group.exchange(mine)
        except distributed.RankTimeout as exc:
            if world.rank != 0:
                raise InputError(f"rank {world.rank}: {exc}") from None
            statuses = [mine] + [
                distributed.RankStatus(r, f"rank {r}", r not in exc.ranks, 0, 0.0, str(exc) if r in exc.ranks else "")
                for r in range(1, world.size)
            ]
    summary = summarize(job, results, statuses) if world.rank == 0 else None
    return summary, runner


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
