"""Burn-in logic on targets that are plain callables (no forward pass): a steady card, one that
changes its output once, one that raises and one that hangs; and the seconds' parser."""

from __future__ import annotations

import threading

import pytest
import torch

from resnet34_npu.core.errors import InputError
from resnet34_npu.judge.burnin import burn_in, parse_seconds


class Card:
    """A target whose ``n``-th output is ``fn(n)``."""

    def __init__(self, name, fn):
        self.name, self.fn, self.calls = name, fn, 0

    def timed_call(self, batch):
        def call():
            self.calls += 1
            return self.fn(self.calls)

        return call

    def synchronize(self):
        pass


STEADY = torch.arange(1000, dtype=torch.float32).reshape(1, 1000)


def flipped_at(k):
    def fn(n):
        out = STEADY.clone()
        if n == k:
            out.view(torch.int32)[0, 3] ^= 1
        return out

    return fn


def raises_at(n):
    if n > 3:
        raise RuntimeError("device lost")
    return STEADY.clone()


RELEASE = threading.Event()


def hangs_at(n):
    if n > 2:
        RELEASE.wait(30)
    return STEADY.clone()


@pytest.mark.slow  # real runs or a pytest run in-process: CI runs -m slow
def test_each_card_is_named_with_what_went_wrong_and_the_others_go_on():
    cards = [Card("good", lambda n: STEADY.clone()), Card("flip", flipped_at(5)), Card("lost", raises_at)]
    cards.append(Card("stuck", hangs_at))
    try:
        result = burn_in(cards, torch.zeros(1, 3, 224, 224), 1.0, hang_s=0.3)
    finally:
        RELEASE.set()
    by = {c.card: c for c in result.cards}
    assert by["good"].status == "ok" and by["good"].iterations > 10 and by["good"].mismatches == 0
    assert by["flip"].status == "mismatch" and by["flip"].mismatches == 1 and by["flip"].first_mismatch_s is not None
    assert by["lost"].status == "error" and "device lost" in by["lost"].error and by["lost"].iterations == 3
    assert by["stuck"].status == "hung" and by["stuck"].iterations == 2
    assert not result.passed and result.status == "fail"
    assert by["good"].throughput_first_ips and by["good"].throughput_last_ips
    assert any(line.startswith("burn-in FAIL flip: mismatch") for line in result.lines())


@pytest.mark.slow  # real runs or a pytest run in-process: CI runs -m slow
def test_a_steady_burn_in_passes():
    result = burn_in([Card("a", lambda n: STEADY.clone())], torch.zeros(1, 3, 224, 224), 0.3)
    assert result.passed and result.status == "pass" and result.cards[0].mismatches == 0


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "nan", "inf", ""])
def test_bad_lengths_are_one_line(bad):
    with pytest.raises(InputError, match="--burn-in"):
        parse_seconds(bad)
    assert parse_seconds("2.5") == 2.5


@pytest.mark.slow  # real runs or a pytest run in-process: CI runs -m slow
def test_ctrl_c_ends_it_with_what_it_had_as_interrupted():
    import _thread

    timer = threading.Timer(0.4, _thread.interrupt_main)
    timer.start()
    result = burn_in([Card("a", lambda n: STEADY.clone())], torch.zeros(1, 3, 224, 224), 30.0)
    assert result.interrupted and result.status == "interrupted" and not result.passed
    assert result.elapsed_s < 5 and result.cards[0].iterations > 0
