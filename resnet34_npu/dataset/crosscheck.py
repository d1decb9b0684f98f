"""The cross-check of a dataset run under torchrun: the shards share no image, so a card that is
silently wrong (1 ulp off in one convolution) passes every tolerance unseen. Every rank also
computes a few shared images (the first ``N`` of the dataset, in its order, as one set of
batches alike on every rank), keeps the digest of each output's bytes
(:func:`resnet34_npu.targets.timing.digest`, the one run-to-run and card-to-card use) and the
output itself in its results file, as ``cross`` records; rank 0 reads them back from the files
and compares the cards image by image with
:func:`resnet34_npu.judge.consistency.card_to_card`: a card whose outputs differ from the
majority's is named with its images and the largest distance in ulps, and fails the run.

Only accelerator cards are compared, as in ``compare``'s card-to-card: CPU ranks and custom
targets promise no bitwise agreement across processes.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from resnet34_npu.core.documents import dumps_line
from resnet34_npu.dataset import distributed
from resnet34_npu.dataset.results import CROSS, Job, Results
from resnet34_npu.dataset.sources import loader
from resnet34_npu.judge.consistency import CardToCard, card_to_card, is_card
from resnet34_npu.targets.timing import digest

#: The default ``--cross-check`` under torchrun: the emulated faults and the silent corruption
#: they stand for (a wrong kernel on a card) change every image, so four show them, for four
#: forward passes a rank (a quarter of one default batch); one rank has nobody to compare with.
DEFAULT = 4


def default_count(world_size: int) -> int:
    """``--cross-check``'s default: :data:`DEFAULT` with more than one rank, else 0."""
    return DEFAULT if world_size > 1 else 0


def shared(job: Job) -> list[int]:
    """The dataset indices every rank computes: the first ``job.cross_check``."""
    return list(range(min(job.cross_check, len(job.dataset.entries))))


def comparable(card: str) -> bool:
    """Whether a rank's card (``npu:3``, ``host/npu:3``, ``cpu (rank 1)``) is an accelerator card
    that card-to-card compares."""
    return is_card(card.rpartition("/")[2].split(" ")[0])


def skipped(job: Job, world_size: int, cards: list[str]) -> str | None:
    """Why this run's ranks compute no cross-check (None: they do)."""
    if not job.cross_check:
        return "--cross-check 0"
    if world_size < 2:
        return "one rank: every image is computed on one card, nothing to compare"
    if not cards or not all(comparable(c) for c in cards):
        return "not accelerator cards (the CPU and custom targets promise no bitwise agreement across processes)"
    return None


def pack(out: torch.Tensor) -> str:
    """One output as text: base64 of its float32 bytes (bf16 kept as float32, as the judge does)."""
    array = out.detach().cpu().float().numpy()
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def unpack(text: str) -> np.ndarray:
    """:func:`pack`'s array back, flat (ulps are counted element by element)."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").copy()


def compute(
    job: Job,
    forward: Callable[[torch.Tensor], torch.Tensor],
    card: str,
    world: distributed.World,
    results: Results,
) -> int:
    """This rank's part: ``forward`` on the shared images, each output's digest and bytes appended
    to its results file. Nothing when the run has nothing to compare, or (``--resume``) when this
    card's file already holds them all. Returns the images computed."""
    indices = shared(job)
    if skipped(job, world.size, [card]) or not indices:
        return 0
    if job.resume and results.mine.exists():
        have = {r["i"] for r in results.records(results.mine, CROSS) if r["card"] == card}
        if have >= set(indices):
            return 0
    computed = 0
    with results.open() as handle:
        for loaded in loader(job.dataset, indices, job.batch_size, job.workers):
            computed += len(loaded.indices)
            if not loaded.readable:
                continue
            logits = forward(loaded.batch)
            lines = []
            for row, index in enumerate(loaded.readable):
                out = logits[row : row + 1]
                record = {
                    "kind": CROSS,
                    "i": index,
                    "path": job.dataset.entries[index].path,
                    "card": card,
                    "rank": world.rank,
                    "digest": digest(out),
                    "output": pack(out),
                }
                lines.append(dumps_line(record))
            handle.write(b"".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
    return computed


def judge(job: Job, results: Results, cards: list[str]) -> tuple[dict[str, Any] | None, CardToCard | None]:
    """Rank 0's part: the cards' cross-check outputs compared image by image, as the summary's
    ``cross_check`` and the comparison itself (None, None: no cross-check asked for; a dict and
    None: skipped, with the reason). ``cards``: every rank's card, in rank order."""
    if not job.cross_check:
        return None, None
    group = f"{job.target} dataset cross-check"
    reason = skipped(job, len(cards), cards)
    if reason:
        empty = CardToCard(group, (), (), ()).to_dict()
        return {"requested": job.cross_check, "skipped": reason, **empty, "images": []}, None
    wanted = set(shared(job))
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for path in results.files():
        for record in results.records(path, CROSS):
            if record["i"] in wanted and record["card"] in cards:
                latest[(record["card"], record["i"])] = record  # a resumed run's last one
    digests: dict[str, dict[str, list[str]]] = {card: {} for card in cards}
    outputs: dict[str, np.ndarray] = {}
    for (card, _), record in sorted(latest.items(), key=lambda item: (cards.index(item[0][0]), item[0][1])):
        digests[card][record["path"]] = [record["digest"]]
        outputs.setdefault(record["digest"], unpack(record["output"]))
    found = card_to_card(group, {c: d for c, d in digests.items() if d}, outputs)
    paths = {i: r["path"] for (_, i), r in latest.items()}
    images = [paths[i] for i in sorted(paths)]
    return {"requested": job.cross_check, "skipped": None, **found.to_dict(), "images": images}, found
