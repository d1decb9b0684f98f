"""Every card's targets run and judged under the watchdog: a card that hangs, crashes or raises a
device error fails with a ``hung``, ``crashed`` or ``device_error`` finding, its remaining targets are
not run, and the other cards go on (:mod:`resnet34_npu.targets.watchdog`).

Isolation (``isolate``): ``auto`` runs each accelerator card (``npu:K``, ``cuda:K``, ...) in a child
process of its own, forked from a server that imported the suite once; CPU and custom targets run
in this thread, unwatched (a crash or a hang there is the process's, and a thread they leave running
is theirs, non-daemon). ``on``: every card in a child; ``off``: every accelerator card in a watched
thread.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet34_npu.core.errors import InputError
from resnet34_npu.judge.compare import CardJob, Session, TargetResult, card_of, card_seeds, failed_target, run_card
from resnet34_npu.targets import watchdog
from resnet34_npu.targets.spec import CustomSpec, parse_target

ISOLATION = ("auto", "on", "off")
_HOST = ("cpu", "meta")


def reference_forward_s(session: Session, images: Sequence[str | Path], warmup: int, iters: int) -> float:
    """The reference's own forward pass at batch 1, in seconds: the median of its timed runs (timed
    once per session; with no timing, one forward pass after one untimed one)."""
    if iters > 0:
        return session.reference_timing(1, warmup, iters, images[0]).median / 1000.0
    batch = session.batch(list(images[:1]))
    session.reference.run(batch)
    begin = time.perf_counter()
    session.reference.run(batch)
    return time.perf_counter() - begin


def deadline_for(
    given: float | None, session: Session, images: Sequence[str | Path], warmup: int, iters: int, where: str
) -> float:
    """The run's deadline: ``given`` (refused when shorter than the reference's own forward pass),
    or the default rule of :func:`watchdog.default_deadline`."""
    forward = reference_forward_s(session, images, warmup, iters)
    if given is None:
        return watchdog.default_deadline(forward)
    watchdog.check_deadline(given, forward, where)
    return given


def _host(card: str) -> bool:
    """A CPU or custom target's "card" (not an accelerator's)."""
    spec = parse_target(card) if ":" in card or card in _HOST else None
    return spec is None or isinstance(spec, CustomSpec) or spec.device.split(":")[0] in _HOST


def isolated(card: str, mode: str) -> bool:
    if mode not in ISOLATION:
        raise InputError(f"isolation {mode!r}: one of {', '.join(ISOLATION)}")
    if mode != "auto":
        return mode == "on"
    spec = parse_target(card) if ":" in card or card in _HOST else None
    return spec is not None and not isinstance(spec, CustomSpec) and spec.device.split(":")[0] not in _HOST


@dataclass
class CardsRun:
    """What :func:`run_cards` leaves: the targets' results in the order given, the targets whose
    engine cannot be built here (name: reason), the targets a failed card never ran (name: reason),
    and each failed card's failure."""

    results: list[TargetResult] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)
    failures: list[watchdog.CardFailure] = field(default_factory=list)
    runners: list[Any] = field(default_factory=list)


def run_cards(
    session: Session,
    specs: Sequence[str],
    images: Sequence[str | Path],
    *,
    warmup: int,
    iters: int,
    deadline: float,
    isolate: str = "auto",
    weights: str = "seeded",
    reference: str = "cpu",
    say: Callable[[str], None] = print,
) -> CardsRun:
    """Run ``specs`` card by card, each card watched (see the module docstring)."""
    groups: dict[str, list[str]] = {}
    for spec in specs:
        groups.setdefault(card_of(spec), []).append(spec)
    out = CardsRun()
    by_spec: dict[str, TargetResult] = {}
    seeds = None
    for card, card_specs in groups.items():
        child = isolated(card, isolate)
        if child and seeds is None:
            watchdog.preload(["resnet34_npu.judge.cards"])
            seeds = card_seeds(session, images)
        job = CardJob(
            card,
            tuple(card_specs),
            tuple(map(str, images)),
            warmup,
            iters,
            weights,
            reference,
            session.fp64_truth,
            session.profile.name,
            seeds or (),
            tuple(session._reference_timing.items()) if child else (),
        )
        state: dict[str, Any] = {"spec": "", "described": {}}

        def on_message(message: Any, state: dict[str, Any] = state) -> None:
            tag, spec, *rest = message
            if tag == "target":
                state["spec"] = spec
            elif tag == "built":
                state["described"][spec] = rest[0]
            elif tag == "runner":
                out.runners.append(rest[0])
                state["described"][spec] = rest[0].describe()
            elif tag == "result":
                by_spec[spec] = rest[0]
            elif tag == "missing":
                out.missing[parse_target(spec).name] = rest[0]

        if not child and _host(card):
            # CPU and custom targets run in this thread, as a program runs them: a thread they leave
            # running is then non-daemon, as in their own program, and fails them (a watched daemon
            # thread would make it a daemon); the deadline watches the cards
            run_card(on_message, job, session)
            continue
        failure = watchdog.watch(
            run_card,
            (job,) if child else (job, session),
            card=card,
            deadline=deadline,
            isolate=child,
            on_message=on_message,
            target=lambda state=state: parse_target(state["spec"]).name if state["spec"] else "",
        )
        if failure is None:
            continue
        out.failures.append(failure)
        say(failure.line)
        current = state["spec"]
        for spec in card_specs:
            if spec in by_spec and spec == current:  # a device error: its result came back, failing
                by_spec[spec] = dataclasses.replace(by_spec[spec], card_failure=failure)
            if spec in by_spec or parse_target(spec).name in out.missing:
                continue
            if spec == current and current:
                by_spec[spec] = failed_target(session, spec, images, failure, state["described"].get(spec))
            else:
                out.not_run[parse_target(spec).name] = f"{failure.not_run}: {failure.line}"
    out.results = [by_spec[s] for s in specs if s in by_spec]
    return out
