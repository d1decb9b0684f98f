"""The emulated host's hazards: cards that hang, crash, run out of memory or are lost.

``R34_EMULATED_FAULTS`` lists faulty cards, comma-separated. The precision faults (a bare ``K``,
``K:flip``, ``K:ulp``) belong to the emulated kernels (``standin/torch_npu/npu``); this module
reads only the hazards:

* ``K:hang[@M]``: physical card K answers its first M device calls, then stops answering: the
  (M+1)-th call never returns (it waits, GIL released, as a call blocked in a driver does);
* ``K:crash[@M]``: the process dies inside that call, killed by SIGSEGV (as a driver's bad
  pointer kills it);
* ``K:oom[@M]``: that call raises the runtime's out-of-memory error, worded as torch_npu words it
  (``NPU out of memory. Tried to allocate ...``, e.g. vllm-project/vllm-ascend#1127);
* ``K:lost[@M]``: that call raises the device-lost runtime error (``... runtime result = 507010``,
  ``Device[K] lost heartbeat``, as CANN reports it, e.g. vllm-project/vllm-ascend#8186).

A device call is an operator the emulated card runs or a synchronize; every process counts its own
calls, per card. Without ``@M``, M is :data:`DEFAULT_AFTER`: past the card's build (the copy of the
weights, about 550 calls) and its first forward pass (about 130), inside the second forward pass.
E.g. ``R34_EMULATED_FAULTS=2:hang,6:crash@0,3:oom``.

The emulated device calls :func:`on_device_call` at each operator and each synchronize.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

ENV = "R34_EMULATED_FAULTS"
KINDS = ("hang", "crash", "oom", "lost")
#: Calls a faulty card answers before its hazard, when the item gives no ``@M``.
DEFAULT_AFTER = 700


@dataclass(frozen=True)
class Hazard:
    card: int
    kind: str
    after: int = DEFAULT_AFTER

    def item(self) -> str:
        return f"{self.card}:{self.kind}@{self.after}"


def parse(text: str) -> dict[int, Hazard]:
    """The hazards of ``text`` (``R34_EMULATED_FAULTS``'s syntax), by physical card. Items that are
    not hazards (the precision faults, blanks) are left to their readers; a hazard item whose
    card or ``@M`` is not a whole number is refused with a ValueError naming it."""
    found: dict[int, Hazard] = {}
    for raw in text.split(","):
        card, _, rest = raw.strip().partition(":")
        kind, _, after = rest.partition("@")
        if kind not in KINDS:
            continue
        if not card.isdigit() or (after and not after.isdigit()):
            raise ValueError(f"{ENV}: {raw.strip()!r} is not K:{kind}[@M] with whole numbers K and M")
        found[int(card)] = Hazard(int(card), kind, int(after) if after else DEFAULT_AFTER)
    return found


_HAZARDS: dict[int, Hazard] | None = None
_CALLS: dict[int, int] = {}


def hazards() -> dict[int, Hazard]:
    """The hazards in force (``R34_EMULATED_FAULTS`` read once per process)."""
    global _HAZARDS
    if _HAZARDS is None:
        _HAZARDS = parse(os.environ.get(ENV, ""))
    return _HAZARDS


def oom_message(card: int) -> str:
    return (
        f"NPU out of memory. Tried to allocate 392.00 MiB (NPU {card}; 60.96 GiB total capacity; 60.34 GiB already "
        "allocated; 60.34 GiB current active; 14.24 MiB free; 60.60 GiB reserved in total by PyTorch) If reserved "
        "memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation."
    )


def lost_message(card: int, stage: str) -> str:
    return (
        f"{stage}: wait for compute device to finish failed, runtime result = 507010. Device[{card}] lost heartbeat. "
        "EL0001: Device not found or invalid."
    )


def on_device_call(physical_card: int, stage: str) -> None:
    """Called by the emulated device at each operator (``stage``: its name) and each synchronize
    (``synchronize``) on ``physical_card``: the card's hazard strikes at its call M + 1."""
    hazard = hazards().get(physical_card)
    if hazard is None:
        return
    calls = _CALLS[physical_card] = _CALLS.get(physical_card, 0) + 1
    if calls <= hazard.after:
        return
    if hazard.kind == "hang":
        while True:  # never answers: sleeping releases the GIL, as a call blocked in the driver does
            time.sleep(3600)
    if hazard.kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(60)  # the signal is delivered at once; never return into the call
        os._exit(139)
    import torch

    if hazard.kind == "oom":
        raise torch.OutOfMemoryError(oom_message(physical_card))
    raise RuntimeError(lost_message(physical_card, stage))
