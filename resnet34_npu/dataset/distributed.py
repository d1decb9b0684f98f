"""One process per card under ``torchrun``: which rank this is, the process group (hccl on an
NPU, nccl on CUDA, gloo elsewhere and on the emulated Ascend host), and the end-of-run status
each rank sends the others, as a tensor (never a pickled object).

A rank that fails sends its reason; a rank that never arrives (hung on its card) is named by
gloo's monitored barrier after ``timeout`` seconds, so a run fails with that rank and reason
and never hangs. A rank that dies outright is torchrun's to report: its agent stops the others.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

import torch

from resnet34_npu.core.errors import InputError

#: Bytes of a rank's card name and failure reason carried in its status tensor.
_CARD_BYTES, _REASON_BYTES = 128, 1024


@dataclass(frozen=True)
class World:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def from_env(cls) -> World:
        values = {}
        for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
            text = os.environ.get(name, "")
            if text and not re.fullmatch(r"\d+", text):
                raise InputError(
                    f"environment variable {name}={text!r} is not a non-negative integer (set by torchrun)"
                )
            values[name] = int(text) if text else default
        if "WORLD_SIZE" in os.environ and values["WORLD_SIZE"] < 1:
            raise InputError(f"environment variable WORLD_SIZE={values['WORLD_SIZE']} must be >= 1 (set by torchrun)")
        world = cls(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
        if world.rank >= world.size:
            raise InputError(f"environment: RANK={world.rank} is not below WORLD_SIZE={world.size}")
        port = os.environ.get("MASTER_PORT", "")
        if world.distributed and port and not (port.isdigit() and 0 < int(port) < 65536):
            raise InputError(f"environment variable MASTER_PORT={port!r} is not a port number (1..65535)")
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
        if world.distributed and missing:
            raise InputError(
                f"environment: WORLD_SIZE={world.size} but {' and '.join(missing)} not set: start the ranks with "
                "torchrun (torchrun --nproc-per-node=N -m resnet34_npu ...)"
            )
        return world


def backend_for(kind: str) -> str:
    """The collective backend for a device kind: hccl (Ascend), nccl (CUDA), gloo (the rest,
    and an emulated Ascend host, whose stand-in has no hccl)."""
    from resnet34_npu.targets.emulation import ENV, OFF

    if kind == "npu" and os.environ.get(ENV, "").lower() in OFF:
        return "hccl"
    return "nccl" if kind == "cuda" else "gloo"


@dataclass(frozen=True)
class RankStatus:
    """What a rank reports at the end: whether it finished, images computed, seconds taken,
    and why it failed."""

    rank: int
    card: str
    ok: bool
    images: int
    seconds: float
    reason: str = ""

    def encode(self) -> torch.Tensor:
        """This status as an int64 tensor: ok, images, milliseconds, then the card and the
        reason as length-prefixed UTF-8 bytes."""
        head = torch.tensor([int(self.ok), self.images, round(self.seconds * 1000)], dtype=torch.int64)
        return torch.cat([head, _text(self.card, _CARD_BYTES), _text(self.reason, _REASON_BYTES)])

    @classmethod
    def decode(cls, rank: int, row: torch.Tensor) -> RankStatus:
        card = _untext(row[3 : 4 + _CARD_BYTES])
        reason = _untext(row[4 + _CARD_BYTES :])
        return cls(rank, card, bool(row[0]), int(row[1]), int(row[2]) / 1000, reason)


def _text(text: str, size: int) -> torch.Tensor:
    data = text.encode("utf-8", "replace")[:size]
    out = torch.zeros(size + 1, dtype=torch.int64)
    out[0] = len(data)
    out[1 : 1 + len(data)] = torch.tensor(list(data), dtype=torch.int64)
    return out


def _untext(row: torch.Tensor) -> str:
    n = max(0, min(int(row[0]), row.numel() - 1))
    return bytes(int(b) & 0xFF for b in row[1 : 1 + n]).decode("utf-8", "replace")


class Group:
    """The process group of a torchrun job: the device's backend for the status exchange,
    and a gloo group for the monitored barrier (gloo is the backend that can name absent ranks)."""

    def __init__(self, world: World, device: torch.device, timeout_s: float) -> None:
        import torch.distributed as dist

        self.world, self.timeout = world, datetime.timedelta(seconds=timeout_s)
        self.backend = backend_for(device.type)
        self.device = device if self.backend != "gloo" else torch.device("cpu")
        if self.backend != "gloo":
            getattr(torch, device.type).set_device(device)
        try:
            dist.init_process_group(self.backend, timeout=self.timeout)
            self.gloo = dist.new_group(backend="gloo", timeout=self.timeout) if self.backend != "gloo" else None
        except Exception as exc:  # the store or a peer never answered: one line naming this rank
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(
                f"rank {world.rank}: the process group ({self.backend}) did not start within "
                f"{timeout_s:g} s (--rank-timeout): {type(exc).__name__}: {first[:200]}"
            ) from None

    def barrier(self) -> None:
        """All ranks here before any goes on (results files are cleared before the work); a
        rank that does not arrive within the timeout is named."""
        import torch.distributed as dist

        try:
            dist.monitored_barrier(group=self.gloo, timeout=self.timeout, wait_all_ranks=True)
        except RuntimeError as exc:
            timeout = RankTimeout(_absent(str(exc)), self.timeout.total_seconds())
            raise InputError(f"rank {self.world.rank}: {timeout}") from None

    def agree(self, text: str) -> str:
        """Rank 0's ``text`` on every rank (the run's id), as a tensor."""
        import torch.distributed as dist

        value = _text(text, 64).to(self.device)
        dist.broadcast(value, src=0)
        return _untext(value.cpu())

    def exchange(self, status: RankStatus) -> list[RankStatus]:
        """Every rank's status, in rank order; a rank that does not arrive within the timeout
        makes this raise :class:`RankTimeout` naming it (on rank 0) or rank 0 (elsewhere)."""
        import torch.distributed as dist

        try:
            dist.monitored_barrier(group=self.gloo, timeout=self.timeout, wait_all_ranks=True)
        except RuntimeError as exc:
            raise RankTimeout(_absent(str(exc)), self.timeout.total_seconds()) from None
        mine = status.encode()
        gathered = [torch.zeros_like(mine, device=self.device) for _ in range(self.world.size)]
        dist.all_gather(gathered, mine.to(self.device))
        return [RankStatus.decode(rank, row.cpu()) for rank, row in enumerate(gathered)]

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class RankTimeout(Exception):
    """Ranks that did not reach the end of the run within the timeout."""

    def __init__(self, ranks: list[int], seconds: float) -> None:
        self.ranks, self.seconds = ranks, seconds
        names = ", ".join(map(str, ranks)) or "unknown"
        super().__init__(f"rank(s) {names} did not finish within {seconds:g} s of the others (--rank-timeout): hung")


def _absent(message: str) -> list[int]:
    """The ranks gloo's monitored barrier names in its error ("Ranks 1, 3 failed to pass ...",
    or "Rank 0 ..." on a rank that waited for rank 0)."""
    found = re.search(r"Ranks? ([\d, ]+) failed to pass", message)
    if found:
        return [int(r) for r in re.findall(r"\d+", found.group(1))]
    return [0] if "rank 0" in message.lower() else []
