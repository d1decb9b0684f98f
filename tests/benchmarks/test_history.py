"""The history's calibration and speed, measured here (marker ``benchmark``; ``pytest -m benchmark``):

- the gate replayed over real ResNet34 forward timings of this machine (``R34_CALIBRATION_RUNS``
  runs, default 40, at least 21, of 10 timed calls each, batch 1, cpu/fp32, in the order they
  ran): each run from the 4th on judged against every run before it, as measured (false alarms)
  and 3 %, 6 % and 10 % slower (detection in the first run after a step);
- 10,000 records read from a folder, each validated by its JSON Schema, and analysed (series,
  change points of every figure, the gate of every series).
The figures print to the terminal (``-s``) and are the README's "Regression tracking" figures."""

from __future__ import annotations

import os
import time

import pytest

from resnet34_npu.history import analysis, calibrate, record, store, synthetic
from resnet34_npu.targets.timing import time_call

pytestmark = pytest.mark.benchmark

#: the fewest measured runs the calibration accepts (issue: at least 21)
MIN_RUNS = 21


def test_gate_calibration_on_this_machines_runs(r34):
    count = int(os.environ.get("R34_CALIBRATION_RUNS", "40"))
    assert count >= MIN_RUNS, f"R34_CALIBRATION_RUNS={count}: at least {MIN_RUNS} runs"
    runner = r34.runner("cpu/fp32")
    call = runner.timed_call(r34.session.batch(r34.batch_images(r34.images[0], 1)))
    started = time.perf_counter()
    runs = [
        list(time_call(call, runner.device, warmup=1, iters=10, synchronize=runner.synchronize).samples)
        for _ in range(count)
    ]
    result = calibrate.calibrate(runs)
    print(
        f"\nhistory calibration ({count} measured runs of 10 forwards in {time.perf_counter() - started:.0f} s, "
        f"each judged against the runs before it): {result.to_dict()}"
    )
    assert result.judged == count - 3
    assert result.detection["10%"] >= result.detection["3%"]  # more slowdown is never caught less often


def test_ten_thousand_records_validated_and_analysed(tmp_path):
    folder = tmp_path / "h"
    folder.mkdir()
    for seed in range(10):  # 10 series (targets) of 1,000 runs
        for r in synthetic.history(runs=1000, seed=seed, target=f"t{seed}", latency_step=(500, 0.06), drift=None):
            record.write_record(folder, r)
    start = time.perf_counter()
    history = store.load(folder, strict=True)  # every record through the history-record JSON Schema
    loaded = time.perf_counter() - start
    result = analysis.analyse(history)
    seconds = time.perf_counter() - start
    print(f"\n10,000 records read and validated in {loaded:.2f} s, analysed (steps and gate) in {seconds:.2f} s in all")
    assert len(result.history.records) == 10_000 and len(result.series) == 10
    assert all(
        any(s.measure == "latency median (ms)" and abs(s.run - 500) <= 5 for s in x.steps) for x in result.series
    )
