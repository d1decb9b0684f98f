"""pytest-benchmark timings (marker ``benchmark``; run with ``pytest -m benchmark``).

Every forward benchmark synchronises the device inside the timed function (pytest-benchmark
times on the host clock), after warm-up rounds. ``extra_info`` records what the number means:
device name, dtype, precision settings, images per second and achieved GFLOP/s (ResNet34:
3.66 GMAC = 7.33 GFLOP per 224 x 224 image). Save, compare and gate as the README shows.
"""

from __future__ import annotations

import pytest

from resnet34_npu import load_image, preprocess
from resnet34_npu.core.constants import DEFAULT_IMAGE, RESNET34_GMACS
from resnet34_npu.history.from_report import run_methodology

pytestmark = pytest.mark.benchmark

ROUNDS = {1: 20, 8: 8}


def test_preprocess_one_photo(benchmark):
    image = load_image(DEFAULT_IMAGE)
    out = benchmark.pedantic(preprocess, args=(image,), rounds=30, warmup_rounds=3, iterations=1)
    assert out.shape == (3, 224, 224)
    benchmark.extra_info.update({"image": DEFAULT_IMAGE.name, "size": list(image.size)})


def test_forward(benchmark, r34, r34_target, r34_batch):
    runner = r34.runner(r34_target)
    batch = r34.session.batch(r34.batch_images(r34.images[0], r34_batch))
    call = runner.timed_call(batch)  # built-in targets: the forward pass on device-resident input; custom: end to end

    def forward():
        out = call()
        runner.synchronize()
        return out

    out = benchmark.pedantic(forward, rounds=ROUNDS[r34_batch], warmup_rounds=3, iterations=1)
    assert tuple(out.shape) == (r34_batch, 1000)
    if benchmark.stats is None:
        pytest.skip("pytest-benchmark is disabled (--benchmark-disable, or under pytest-xdist): nothing was timed")
    median_s = benchmark.stats.stats.median
    info = runner.describe()
    benchmark.extra_info.update(
        {
            "target": info["name"],
            "device": info["device"],
            "device_name": info["device_name"],
            "dtype": info["dtype"],
            "effective_precision": info["effective_precision"],
            "precision_settings": info["precision_settings"],
            "batch_size": r34_batch,
            # the history's series key: the same methodology compare --history records for this target
            "methodology": {
                **run_methodology(r34.profile, r34.session.weights.tensor_sha256, [r34.images[0]]),
                "warmup": 3,
                "iterations": ROUNDS[r34_batch],
                "clock": getattr(getattr(benchmark, "_timer", None), "__name__", "perf_counter"),  # --benchmark-timer
            },
            "images_per_second": r34_batch / median_s,
            "gflops_per_second": 2 * RESNET34_GMACS * r34_batch / median_s,
        }
    )
