"""Faulty cards on the emulated host: ``R34_EMULATED_FAULTS=K[:KIND][,K[:KIND]...]``, read once.

Kinds: a bare ``K`` (a precision fault: layer3's 256-channel 3x3 convolutions 1 % off),
``K:ulp`` (conv1 1 ulp off), ``K:flip`` (one bit of the largest logit in 1 of 200 forwards), and
the hazards ``K:hang``, ``K:crash``, ``K:oom`` and ``K:lost``, each with an optional ``@M`` (after M device
calls; ``hazards.py``). A card past the host's, or a kind not listed, is
refused in one line naming it and what is allowed.
"""

from __future__ import annotations

from resnet34_npu.core.errors import InputError

ENV = "R34_EMULATED_FAULTS"
#: The numeric faults, judged by the comparison (the name a bare ``K`` gets: ``precision``).
NUMERIC = ("precision", "ulp", "flip")
#: The faults that stop a card (hangs, crashes, runtime errors): ``hazards.py``.
HAZARDS = ("hang", "crash", "oom", "lost")


def parse(text: str, cards: int) -> dict[int, set[str]]:
    """Physical card -> its fault kinds (``hang@M`` keeps its count: ``hang@5``)."""
    found: dict[int, set[str]] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        card, _, kind = item.partition(":")
        kind = kind or "precision"
        base, _, count = kind.partition("@")
        if not (card.isascii() and card.isdigit()) or base not in (*NUMERIC, *HAZARDS):
            raise InputError(
                f"{ENV}={text!r}: {item!r} is not a fault; write K (a precision fault on card K) or K:KIND "
                f"with KIND one of {', '.join((*NUMERIC[1:], *HAZARDS))} (a hazard may add @M: after M device calls)"
            )
        if count and (base not in HAZARDS or not (count.isascii() and count.isdigit())):
            raise InputError(f"{ENV}={text!r}: {item!r}: only {'/'.join(HAZARDS)} take @M, a number of device calls")
        if int(card) >= cards:
            raise InputError(f"{ENV}={text!r}: card {card} is not there; this emulated host has cards 0-{cards - 1}")
        found.setdefault(int(card), set()).add(kind)
    return found


def hazard(faults: dict[int, set[str]], physical: int, stage: str) -> None:
    """Called by the emulated card at every operator and synchronisation: a card with a hazard
    hangs, crashes or raises its runtime error here."""
    kinds = faults.get(physical)
    if kinds and any(k.partition("@")[0] in HAZARDS for k in kinds):
        from resnet34_npu.targets.emulation import hazards

        hazards.on_device_call(physical, stage)
