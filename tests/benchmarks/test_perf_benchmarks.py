"""Benchmarks of the speed figures themselves (``-m benchmark``; measured, never asserted in timed
tests elsewhere):

* honest speedups (issue 30, point 5): ``compare`` of ``cpu/fp32`` against the ``cpu/fp32``
  reference, the same computation, 10 times: every 95 % interval holds 1.00 and every speedup
  printed as a number (not "about 1x") lies within 0.9-1.1;
* LoadGen's overhead (point 7): samples a second of the system under test inside LoadGen
  (Offline, batch 16) against a bare loop of the same runner in the same process: >= 0.95.
"""

from __future__ import annotations

import time

import pytest

from resnet34_npu.core.constants import IMAGES_DIR, PHOTOS
from resnet34_npu.judge.compare import Session

pytestmark = pytest.mark.benchmark

RUNS = 10


def test_speedup_of_the_reference_against_itself_is_about_1x(benchmark):
    session = Session("seeded", "cpu")
    images = [IMAGES_DIR / PHOTOS[0]]
    results = []

    def one_compare():
        results.append(session.evaluate(session.runner("cpu/fp32"), images))

    benchmark.pedantic(one_compare, rounds=RUNS, iterations=1)
    speedups = [r.speedup_vs_reference for r in results]
    intervals = [r.speedup_interval for r in results]
    benchmark.extra_info.update(speedups=speedups, intervals=intervals, texts=[r.speedup_text for r in results])
    assert all(low <= 1.0 <= high for low, high in intervals), intervals
    printed = [r.speedup_vs_reference for r in results if r.speedup_text != "about 1x"]
    assert all(0.9 <= s <= 1.1 for s in printed), [r.speedup_text for r in results]


def test_loadgen_overhead_offline_batch_16(benchmark, tmp_path):
    pytest.importorskip("mlperf_loadgen")
    from resnet34_npu.model.network import build_model
    from resnet34_npu.perf import Bench, Options, SampleLibrary, parse_scenario
    from resnet34_npu.targets.runners import build_runner

    runner = build_runner("cpu/fp32", build_model("seeded"))
    library = SampleLibrary.from_images([IMAGES_DIR / p for p in PHOTOS])
    batch = library.batch([0, 1], 16)
    figures = {}

    def measure():
        runner.run(batch)  # warm
        begin, n = time.perf_counter(), 0
        while time.perf_counter() - begin < 10.0:
            runner.run(batch)
            n += 16
        bare = n / (time.perf_counter() - begin)
        options = Options(parse_scenario("Offline"), duration_s=10.0, compliance=False, warmup=1)
        m = Bench([runner], library, options, tmp_path).measure()
        figures.update(bare=bare, loadgen=m.result.value, valid=m.result.valid)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    ratio = figures["loadgen"] / figures["bare"]
    benchmark.extra_info.update(figures, ratio=ratio)
    assert figures["valid"] and ratio >= 0.95, figures
