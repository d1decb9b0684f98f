"""Burn-in: every card at once, in a loop, for a set time, each output checked bit for bit
against the card's first.

One thread per card (on a device with streams, its own stream), so the cards are loaded
together; per card: iterations, mismatches and when the first came, throughput in the first and
the last window (a minute, or half the run when shorter: throttling shows as a drop), and a card
that raised or stopped answering is named while the others go on. Ctrl-C or SIGTERM ends it early
with what it had, as ``interrupted``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from resnet34_npu.core.errors import InputError, Terminated
from resnet34_npu.judge.consistency import CardToCard, card_to_card
from resnet34_npu.targets import knobs
from resnet34_npu.targets.runners import ModelRunner, Runner
from resnet34_npu.targets.timing import digest

#: A card with no finished iteration for this long (and 10 times its median) is named as hung.
HANG_SECONDS = 30.0
#: Distinct outputs kept per card, to measure how far apart they are.
KEPT_OUTPUTS = 4
#: The throughput windows: the first and the last minute (half the run when it is shorter).
WINDOW_SECONDS = 60.0


def parse_seconds(text: str | float, option: str = "--burn-in") -> float:
    """A burn-in length: a positive finite number of seconds, or an :class:`InputError` naming it."""
    try:
        seconds = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{option} {text!r}: not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"{option} {text!r}: the burn-in needs a positive number of seconds")
    return seconds


def shared_knobs(runners: Sequence[Runner]) -> dict[str, str]:
    """The knobs every target of a burn-in shares. Knobs are process-wide switches (HF32, TF32, the
    ACL mode): targets running at once in threads must agree on them, else one target's runs
    would change another's settings mid-run. An :class:`InputError` when they differ."""
    sets = {tuple(sorted(r.spec.knobs)) for r in runners if isinstance(r, ModelRunner)}
    if len(sets) > 1:
        shown = "; ".join(", ".join(f"{k}={v}" for k, v in s) or "none" for s in sorted(sets))
        raise InputError(f"--burn-in: the targets run at once and must share their knobs, got {shown}")
    return dict(next(iter(sets), ()))


@dataclass(frozen=True)
class CardBurnIn:
    """One card's burn-in."""

    card: str
    status: str  # ok, mismatch, error, hung
    iterations: int
    mismatches: int
    first_mismatch_s: float | None
    throughput_first_ips: float | None
    throughput_last_ips: float | None
    error: str = ""

    def line(self) -> str:
        speed = (
            f", {self.throughput_first_ips:.1f} -> {self.throughput_last_ips:.1f} img/s (first vs last window)"
            if self.throughput_first_ips is not None and self.throughput_last_ips is not None
            else ""
        )
        first = f", first at {self.first_mismatch_s:.2f} s" if self.first_mismatch_s is not None else ""
        tail = f": {self.error}" if self.error else ""
        return (
            f"burn-in {'FAIL ' if self.status != 'ok' else ''}{self.card}: {self.status}, "
            f"{self.iterations} iterations, {self.mismatches} mismatches{first}{speed}{tail}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BurnIn:
    """The burn-in of every card."""

    seconds: float
    elapsed_s: float
    interrupted: bool
    cards: tuple[CardBurnIn, ...]
    #: every card's first output against the other cards' of the same target (a card that is
    #: wrong the same way every time passes its own loop)
    card_to_card: tuple[CardToCard, ...] = ()

    @property
    def passed(self) -> bool:
        agree = all(g.passed for g in self.card_to_card)
        return not self.interrupted and agree and all(c.status == "ok" for c in self.cards)

    @property
    def status(self) -> str:
        return "interrupted" if self.interrupted else "pass" if self.passed else "fail"

    def lines(self) -> list[str]:
        head = f"burn-in: {self.status} after {self.elapsed_s:.1f} s of {self.seconds:g} s, {len(self.cards)} cards"
        return [head, *(c.line() for c in self.cards), *(line for g in self.card_to_card for line in g.lines())]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "elapsed_s": self.elapsed_s,
            "status": self.status,
            "cards": [c.to_dict() for c in self.cards],
            "card_to_card": [g.to_dict() for g in self.card_to_card],
        }


@dataclass
class _Card:
    runner: Runner
    times: list[float] = field(default_factory=list)
    first: str | None = None
    #: how often each distinct output came, and one copy of each (the first few)
    counts: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    mismatches: int = 0
    first_mismatch: float | None = None
    error: str = ""
    done: bool = False


def _stream(runner: Runner) -> Any:
    """The card's own stream, where its device has streams (CUDA, NPU); else no context."""
    if isinstance(runner, ModelRunner):
        module = getattr(torch, runner.device.type, None)
        if module is not None and hasattr(module, "Stream") and hasattr(module, "stream"):
            with contextlib.suppress(Exception):
                return module.stream(module.Stream(runner.device))
    return contextlib.nullcontext()


def _loop(card: _Card, batch: torch.Tensor, start: float, stop: threading.Event) -> None:
    try:
        call = card.runner.timed_call(batch)
        with _stream(card.runner):
            while not stop.is_set():
                out = call()
                card.runner.synchronize()
                key = digest(out)
                now = time.perf_counter() - start
                card.times.append(now)
                card.counts[key] = card.counts.get(key, 0) + 1
                if key not in card.outputs and len(card.outputs) < KEPT_OUTPUTS:
                    card.outputs[key] = out.detach().cpu().float().numpy().copy()
                if card.first is None:
                    card.first = key
                elif key != card.first:
                    card.mismatches += 1
                    if card.first_mismatch is None:
                        card.first_mismatch = now
    except Exception as exc:
        card.error = f"raised {type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        card.done = True


def _windows(times: Sequence[float], elapsed: float, batch_size: int) -> tuple[float | None, float | None]:
    window = min(WINDOW_SECONDS, elapsed / 2)
    if window <= 0 or len(times) < 2:
        return None, None
    first = sum(1 for t in times if t <= window)
    last = sum(1 for t in times if t > elapsed - window)
    return first * batch_size / window, last * batch_size / window


@contextlib.contextmanager
def _progress(seconds: float, cards: int) -> Iterator[Any]:
    """A tqdm bar on a terminal; elsewhere one line on stderr as it starts (a log shows that the
    silence that follows is the burn-in, and how to end it)."""
    if not sys.stderr.isatty():
        print(f"burn-in: started, {cards} cards for {seconds:g} s (Ctrl-C ends it early)", file=sys.stderr, flush=True)
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=round(seconds), unit="s", desc="burn-in", leave=False) as bar:
        yield bar


def burn_in(runners: Sequence[Runner], batch: torch.Tensor, seconds: float, *, hang_s: float = HANG_SECONDS) -> BurnIn:
    """Run every runner on ``batch`` at once for ``seconds``; see the module's docstring."""
    held = knobs.applied(shared_knobs(runners))  # held for the whole run: no thread restores them mid-run
    held.__enter__()
    try:
        return _burn_in(runners, batch, seconds, hang_s)
    finally:
        held.__exit__(None, None, None)


def _burn_in(runners: Sequence[Runner], batch: torch.Tensor, seconds: float, hang_s: float) -> BurnIn:
    cards = [_Card(r) for r in runners]
    stop = threading.Event()
    start = time.perf_counter()
    threads = [
        threading.Thread(target=_loop, args=(c, batch, start, stop), name=f"burn-in {c.runner.name}", daemon=True)
        for c in cards
    ]
    for t in threads:
        t.start()
    interrupted = False
    shown = 0
    try:
        with _progress(seconds, len(cards)) as bar:
            while time.perf_counter() - start < seconds and not all(c.done for c in cards):
                time.sleep(min(0.1, seconds / 20))
                if bar is not None:
                    now = min(round(time.perf_counter() - start), round(seconds))
                    bar.update(now - shown)
                    shown = now
    except (KeyboardInterrupt, Terminated):
        interrupted = True
    stop.set()
    elapsed = time.perf_counter() - start
    deadline = time.perf_counter() + (1.0 if interrupted else hang_s)  # a hung card is left, named, not waited for
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.perf_counter()))
    results = []
    for c in cards:
        gaps = [b - a for a, b in zip(c.times, c.times[1:])]
        typical = sorted(gaps)[len(gaps) // 2] if gaps else 0.0
        last = c.times[-1] if c.times else 0.0
        hung = not c.done and not interrupted and elapsed - last > max(hang_s, 10 * typical)
        status = "error" if c.error else "hung" if hung else "mismatch" if c.mismatches else "ok"
        error = c.error or (f"no output for {elapsed - last:.1f} s" if hung else "")
        first, final = _windows(c.times, elapsed, batch.shape[0])
        results.append(
            CardBurnIn(c.runner.name, status, len(c.times), c.mismatches, c.first_mismatch, first, final, error)
        )
    return BurnIn(seconds, elapsed, interrupted, tuple(results), _agreement(cards, batch.shape[0]))


def _agreement(cards: Sequence[_Card], batch_size: int) -> tuple[CardToCard, ...]:
    """Card-to-card on each card's most frequent output, per target (the name without its device):
    a card that is wrong the same way every time is the one its own loop cannot see."""
    groups: dict[str, dict[str, dict[str, list[str]]]] = {}
    outputs = {}
    for c in cards:
        if not c.counts or not isinstance(c.runner, ModelRunner) or c.runner.device.type == "cpu":
            continue
        usual = max(c.counts, key=lambda d: c.counts[d])
        key = f"{c.runner.describe()['device_name']} {c.runner.name.partition('/')[2] or c.runner.spec.dtype}"
        groups.setdefault(key, {})[str(c.runner.device)] = {f"batch of {batch_size}": [usual]}
        outputs.update(c.outputs)
    return tuple(card_to_card(key, per, outputs) for key, per in groups.items() if len(per) > 1)
