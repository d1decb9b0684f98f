"""The history's calibration and speed, measured here (marker ``benchmark``; ``pytest -m benchmark``):

- the gate on A/A histories built from real ResNet34 forward timings of this machine (12 runs of
  5 timed calls each, batch 1, cpu/fp32): false alarms, change points found, and detection of
  injected 3 %, 6 % and 10 % steps in the newest run;
- 10,000 records read from a folder and analysed (series, change points of every figure).
The figures print to the terminal (``-s``) and are the README's "Regression tracking" figures."""

from __future__ import annotations

import time

import pytest

from resnet34_npu.history import analysis, calibrate, record, store, synthetic
from resnet34_npu.targets.timing import time_call

pytestmark = pytest.mark.benchmark


def test_gate_calibration_on_this_machines_noise(r34):
    runner = r34.runner("cpu/fp32")
    call = runner.timed_call(r34.session.batch(r34.batch_images(r34.images[0], 1)))
    runs = [
        list(time_call(call, runner.device, warmup=1, iters=5, synchronize=runner.synchronize).samples)
        for _ in range(12)
    ]
    result = calibrate.calibrate(runs, histories=200, length=20)
    print(f"\nhistory calibration (200 A/A histories of 20 runs from 12 measured runs): {result.to_dict()}")
    assert result.gate_false_alarms <= 0.05  # the gate's contract: a practical threshold above the noise
    assert result.detection["10%"] >= result.detection["3%"]


def test_ten_thousand_records_analysed(tmp_path):
    folder = tmp_path / "h"
    folder.mkdir()
    for seed in range(10):  # 10 series (targets) of 1,000 runs
        for r in synthetic.history(runs=1000, seed=seed, target=f"t{seed}", latency_step=(500, 0.06), drift=None):
            record.write_record(folder, r)
    start = time.perf_counter()
    result = analysis.analyse(store.load(folder))
    seconds = time.perf_counter() - start
    print(f"\n10,000 records read and analysed in {seconds:.2f} s")
    assert len(result.history.records) == 10_000 and len(result.series) == 10
    assert all(
        any(s.measure == "latency median (ms)" and abs(s.run - 500) <= 5 for s in x.steps) for x in result.series
    )
