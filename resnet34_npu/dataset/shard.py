"""Running a dataset comparison: one target against the reference over every image of a
dataset, on one card or, under ``torchrun``, on every card of a host (the dataset sharded over
the ranks exactly: no image twice, none padded in).

Each rank streams its images' results to its file of the results folder
(:mod:`~resnet34_npu.dataset.results`) as each batch finishes, so memory stays flat and an
interrupted run resumes (``--resume``) from what is on disk: every rank reads every rank's file,
skips the images already there and appends the rest to its own. Under torchrun every rank then
computes the cross-check's shared images (:mod:`~resnet34_npu.dataset.crosscheck`); the ranks
exchange their end-of-run status, and rank 0 writes the summary
(:mod:`~resnet34_npu.dataset.summary`) from the files.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from resnet34_npu.core.documents import dumps_line
from resnet34_npu.core.errors import InputError, show
from resnet34_npu.dataset import crosscheck, distributed
from resnet34_npu.dataset.results import UNREADABLE, Job, Results
from resnet34_npu.dataset.sources import Dataset, Progress, loader
from resnet34_npu.dataset.sources import file_sha256 as dataset_file_sha256
from resnet34_npu.dataset.summary import summarize
from resnet34_npu.judge.compare import Session, is_target_error, truth_metrics
from resnet34_npu.judge.criteria import Status, judge
from resnet34_npu.judge.metrics import compare_logits
from resnet34_npu.targets import devices
from resnet34_npu.targets.runners import Runner
from resnet34_npu.targets.spec import TargetSpec, parse_target


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
                    logits = _forward(runner, batch, computed)
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


def _forward(runner: Runner, batch: torch.Tensor, computed: int) -> torch.Tensor:
    """``runner`` on ``batch``; the target's own error as :class:`TargetFailed` (``computed``:
    the images of the rank's shard done before)."""
    try:
        return runner.run(batch)
    except BaseException as exc:
        if not is_target_error(exc):
            raise
        raise TargetFailed(f"{type(exc).__name__}: {exc}".splitlines()[0], computed) from exc


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
    start, computed, reason, seconds = time.monotonic(), 0, "", None
    try:
        computed = run_shard(job, session, runner, card, world, results, todo)
        seconds = time.monotonic() - start  # the shard's images/s: the cross-check's forwards left out
        crosscheck.compute(job, lambda batch: _forward(runner, batch, computed), card, world, results)
    except TargetFailed as exc:
        reason, computed = exc.reason, exc.computed
    elapsed = time.monotonic() - start if seconds is None else seconds
    mine = distributed.RankStatus(world.rank, card, not reason, computed, elapsed, reason)
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
