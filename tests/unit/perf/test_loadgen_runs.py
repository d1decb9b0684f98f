"""Real LoadGen runs of a few-millisecond custom target (``fast_targets``): each well under two
seconds. The ResNet34 runs (cpu/fp32, the stale_output control) are slow tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from resnet34_npu.core.constants import IMAGES_DIR, PHOTOS
from resnet34_npu.core.errors import InputError
from resnet34_npu.model.network import build_model
from resnet34_npu.perf import INSTALL_HINT, Bench, Options, SampleLibrary, loadgen, parse_scenario
from resnet34_npu.targets.runners import build_runner

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed: pip install mlcommons-loadgen")

FAST = "tests.unit.perf.fast_targets:"


@pytest.fixture(scope="module")
def model():
    return build_model("seeded")


@pytest.fixture(scope="module")
def library():
    return SampleLibrary.from_images([IMAGES_DIR / p for p in PHOTOS])


def bench(model, library, tmp_path, target, scenario, *, compliance=False, **options):
    opts = Options(
        parse_scenario(scenario), duration_s=options.pop("duration_s", 0.3), compliance=compliance, **options
    )
    return Bench([build_runner(FAST + target, model)], library, opts, tmp_path)


@pytest.mark.slow  # the CLI's report test runs the same in the default selection
def test_single_stream_is_valid_with_an_early_stopping_p90_and_loadgens_logs(model, library, tmp_path):
    m = bench(model, library, tmp_path, "fast", "SingleStream", compliance=True).measure()
    r = m.result
    assert r.valid and m.passed and r.query_count >= 64
    assert r.early_stopping["met"] and r.early_stopping["estimate_ms"] == r.value > 0
    assert r.percentiles_ms["p90"] <= r.early_stopping["estimate_ms"]
    assert Path(r.logs["summary"]).read_text().count("Result is : VALID") == 1
    assert m.test01.passed and m.test04.passed
    assert m.cards[0].samples == r.sample_count  # every sample of the run went through the target's runner


def test_too_few_queries_is_invalid_with_loadgens_reason(model, library, tmp_path):
    m = bench(model, library, tmp_path, "fast", "SingleStream", min_queries=10, duration_s=0.05).measure()
    assert not m.result.valid and not m.passed
    assert any("early stopping not met" in line and "64" in line for line in m.failures)


def test_offline_one_query_of_every_sample_is_valid(model, library, tmp_path):
    m = bench(model, library, tmp_path, "fast", "Offline", duration_s=0.5).measure()
    r = m.result
    assert r.valid and r.query_count == 1 and r.sample_count >= 16 and r.value > 0
    assert m.cards[0].batches * 16 >= r.sample_count  # batches of 16, the last padded


def test_stale_outputs_fail_test01(model, library, tmp_path):
    m = bench(
        model,
        library,
        tmp_path,
        "stale",
        "SingleStream",
        compliance=True,
        compliance_duration_s=0.05,
        compliance_queries=8,
    ).measure()
    assert m.result.valid and not m.test01.passed and not m.passed
    assert any(line.startswith("TEST01: ") and "differ from the accuracy run's" in line for line in m.failures)


@pytest.mark.slow
def test_a_caching_target_fails_test04(model, library, tmp_path):
    m = bench(model, library, tmp_path, "caching", "SingleStream", compliance=True).measure()
    assert not m.test04.passed and "cached" in m.test04.line


@pytest.mark.slow
def test_multistream_states_a_p99_estimate_per_query(model, library, tmp_path):
    m = bench(model, library, tmp_path, "fast", "MultiStream").measure()
    r = m.result
    assert r.valid and r.query_count >= 662 and r.sample_count == 8 * r.query_count
    assert r.early_stopping["percentile"] == 0.99 and r.early_stopping["estimate_ms"] >= r.percentiles_ms["p90"]


@pytest.mark.slow
def test_server_bisection_lists_its_tries_and_keeps_the_best_valid_qps(model, library, tmp_path):
    m = bench(model, library, tmp_path, "fast", "Server", duration_s=0.5, latency_bound_ms=50.0, server_tries=4)
    m = m.measure()
    assert len(m.tries) >= 2 and any(t["valid"] for t in m.tries)
    best = max(t["target_qps"] for t in m.tries if t["valid"])
    assert m.result.valid and m.result.extra["target_qps"] == best


def test_a_target_that_raises_fails_named(model, library, tmp_path):
    m = bench(model, library, tmp_path, "raising", "SingleStream", min_queries=4, duration_s=0.05)
    with pytest.raises(RuntimeError, match="device lost"):
        m.measure()  # the warm-up's call raises: the target fails before LoadGen starts


def test_loadgen_missing_is_one_line_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)  # what an absent module looks like to import
    with pytest.raises(InputError) as info:
        loadgen.module()
    assert str(info.value) == INSTALL_HINT and "pip install mlcommons-loadgen" in INSTALL_HINT


def test_unknown_scenario_lists_the_choices():
    with pytest.raises(InputError, match="Unknown scenario 'Batch'. Choose one of: SingleStream, MultiStream"):
        parse_scenario("Batch")
    assert parse_scenario("offline").name == "Offline"


@pytest.mark.slow
def test_resnet34_on_the_cpu_single_stream_and_the_stale_output_control(model, library, tmp_path):
    """The real model: cpu/fp32 passes TEST01; the catalogue's stale_output control fails it."""
    opts = Options(parse_scenario("SingleStream"), duration_s=0.1, min_queries=8, compliance_queries=8)
    healthy = Bench([build_runner("cpu/fp32", model)], library, opts, tmp_path / "cpu").measure()
    assert healthy.test01.passed and healthy.result.query_count >= 8
    stale = Bench([build_runner("resnet34_npu.faults:stale_output", model)], library, opts, tmp_path / "stale")
    assert not stale.measure().test01.passed
