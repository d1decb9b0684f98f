"""Small custom targets for the perf tests: real targets of the suite's grammar
(``tests.unit.perf.fast_targets:NAME``) that cost a few milliseconds a call, so a LoadGen run
of them lasts under a second. Each maps a batch [N, 3, 224, 224] to logits [N, 1000] with a
fixed projection of the pooled input: deterministic, row by row."""

from __future__ import annotations

import time

import torch

#: What a call costs, in seconds (a sleep: the CPU stays free for LoadGen's threads).
COST_S = 0.002


class _Fast:
    precision = "fp32"

    def __init__(self, name: str) -> None:
        self.name = name
        self.weight = torch.randn(3 * 7 * 7, 1000, generator=torch.Generator().manual_seed(0))

    def compute(self, batch: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(batch, 7).flatten(1)
        return pooled @ self.weight

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        time.sleep(COST_S)
        return self.compute(batch)


class _Stale(_Fast):
    """Returns the previous batch's output (the stale_output control, at a few ms a call)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.previous: torch.Tensor | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        fresh = super().__call__(batch)
        out = self.previous if self.previous is not None and self.previous.shape == fresh.shape else fresh
        self.previous = fresh
        return out


class _Caching(_Fast):
    """Skips the computation when the input is the one it just computed, answering from that
    result (a system that caches its last input): fails TEST04 (the same sample repeated is much
    faster than distinct samples). The last input only: a cache of every sample would also answer the
    distinct-sample run from memory once the accuracy run has seen them."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.last: tuple[bytes, torch.Tensor] | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        key = batch.numpy().tobytes()[::4099]
        if self.last is None or self.last[0] != key:
            self.last = (key, super().__call__(batch))
        return self.last[1].clone()


class _Raising(_Fast):
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.shape[0] == 2:  # the factory's check call passes
            return super().__call__(batch)
        raise RuntimeError("device lost")


def fast(_model: torch.nn.Module) -> _Fast:
    return _Fast("fast")


def stale(_model: torch.nn.Module) -> _Stale:
    return _Stale("fast-stale")


def caching(_model: torch.nn.Module) -> _Caching:
    return _Caching("fast-caching")


def raising(_model: torch.nn.Module) -> _Raising:
    return _Raising("fast-raising")
