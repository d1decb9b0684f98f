from __future__ import annotations

import numpy as np
import pytest
import torch

from resnet34_npu.targets.timing import Timing, time_call


def test_statistics_match_numpy():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    t = Timing.from_samples(samples, warmup=2, batch_size=8, clock="perf_counter")
    assert t.median == 3.5 and t.min == 1.0 and t.max == 10.0 and t.iterations == 6
    assert t.mean == pytest.approx(np.mean(samples)) and t.std == pytest.approx(np.std(samples, ddof=1))
    assert t.p90 == pytest.approx(np.percentile(samples, 90))
    assert t.throughput_ips == pytest.approx(8 * 1000 / 3.5)
    assert set(t.to_dict()) >= {"mean", "std", "median", "p90", "min", "max", "warmup", "iterations"}


def test_calls_warmup_plus_iters_and_synchronizes_around_each():
    log = []
    t = time_call(
        lambda: log.append("call"), torch.device("cpu"), warmup=2, iters=3, synchronize=lambda: log.append("sync")
    )
    assert log.count("call") == 5 and t.iterations == 3 and t.warmup == 2
    assert log[:3] == ["call", "call", "sync"]
    assert log[3:] == ["sync", "call", "sync"] * 3
    assert len(t.samples) == 3 and t.median == pytest.approx(float(np.median(t.samples)))


def test_raw_samples_are_kept_and_travel_as_dicts():
    t = Timing.from_samples([5.0, 1.0, 3.0], warmup=0, batch_size=1, clock="perf_counter")
    assert t.samples == (5.0, 1.0, 3.0)  # in call order, for the history's tests on raw samples
    assert Timing.from_dict(t.to_dict()) == t
    older = {k: v for k, v in t.to_dict().items() if k != "samples"}  # a report written before samples were kept
    assert Timing.from_dict(older).samples == ()


@pytest.mark.parametrize("warmup, iters", [(0, 0), (-1, 3), (2, -1)])
def test_bad_counts_are_refused_before_any_call(warmup, iters):
    calls = []
    with pytest.raises(ValueError, match=rf"^need warmup >= 0 and iters >= 1, got warmup={warmup} iters={iters}$"):
        time_call(lambda: calls.append(1), torch.device("cpu"), warmup=warmup, iters=iters)
    assert calls == []


def test_the_smallest_counts_are_accepted():
    calls = []
    t = time_call(lambda: calls.append(1), torch.device("cpu"), warmup=0, iters=1)
    assert len(calls) == 1 and t.iterations == 1 and t.warmup == 0
