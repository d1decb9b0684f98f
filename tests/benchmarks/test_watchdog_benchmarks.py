"""The watchdog's cost (issue 31): every device call a card makes runs on a watched thread with a
deadline (``watchdog.watched_call``); a healthy run must not pay more than 5 % for it. Measured
here on ResNet34's forward pass at batch 1 on the CPU (a card's call costs the same bracket), the
watched and the bare call interleaved in rounds so that drift lands on both (``-m benchmark``)."""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from resnet34_npu.model.network import build_model
from resnet34_npu.targets import watchdog

pytestmark = pytest.mark.benchmark

ROUNDS = 40


def test_a_watched_forward_costs_at_most_5_percent_more_than_a_bare_one(benchmark):
    model = build_model("seeded").eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))

    def forward():
        with torch.inference_mode(), watchdog.device_call("forward"):
            return model(x)

    failures: dict = {}
    forward()
    figures = {}

    def measure():
        bare, watched = [], []
        for _ in range(ROUNDS):  # ABAB...: the host's drift lands on both
            start = time.perf_counter()
            forward()
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            watchdog.watched_call(forward, card="npu:0", target="npu:0/fp32", deadline=60.0, failures=failures)
            watched.append(time.perf_counter() - start)
        figures.update(bare_ms=statistics.median(bare) * 1e3, watched_ms=statistics.median(watched) * 1e3)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    ratio = figures["watched_ms"] / figures["bare_ms"]
    benchmark.extra_info.update(figures, ratio=ratio)
    print(f"\nwatchdog: bare {figures['bare_ms']:.2f} ms, watched {figures['watched_ms']:.2f} ms, ratio {ratio:.3f}")
    assert not failures and ratio <= 1.05, figures
