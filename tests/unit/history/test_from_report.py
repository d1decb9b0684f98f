"""A record from a report (compare's or the suite's acceptance report), and ``--r34-history``:
refused before any work where the folder cannot hold records; a real run (slow) adds a record
with the raw samples of its timed calls, beside its acceptance report."""

from __future__ import annotations

import json

import pytest

from resnet34_npu.history import store
from resnet34_npu.history.from_report import record_of_report
from resnet34_npu.targets.timing import Timing
from tests.unit.suite import test_plugin as test_pytest_plugin

suite = test_pytest_plugin.suite
ONE_IMAGE = test_pytest_plugin.ONE_IMAGE


def image(rel: float, cos: float) -> dict:
    return {"image": "cat.jpg", "metrics": {"rel_l2_error": rel, "max_abs_error": 0.1, "cosine_similarity": cos}}


def report() -> dict:
    timing = Timing.from_samples([10.0, 11.0, 12.0], warmup=1, batch_size=1, clock="perf_counter").to_dict()
    return {
        "created": "2026-01-01T00:00:00+00:00",
        "profile": "default",
        "machine": {"host": "h", "torch": "2.4.0", "cann": "8.5.0", "cpu_count": 2, "devices": ["Ascend 910B"]},
        "weights": {"spec": "seeded", "tensor_sha256": "abc"},
        "images": ["/a/cat.jpg", "/a/dog.jpg"],
        "targets": [
            {"name": "npu:0/fp16", "device": "npu:0", "device_name": "Ascend 910B", "verdict": "pass",
             "latency_ms": timing, "images": [image(1e-3, 0.99), image(2e-3, 0.98)]},
            {"name": "mps/fp32", "device": "mps", "verdict": "skipped", "latency_ms": None, "images": []},
        ],
    }  # fmt: skip


def test_record_of_a_report():
    r = record_of_report(report(), source="compare")
    assert {"host": "h", "torch": "2.4.0", "CANN": "8.5.0", "devices": "Ascend 910B"}.items() <= r.environment.items()
    assert "cpu_count" not in r.environment and "python" in r.environment  # this host's own readings
    assert r.methodology["profile"] == "default" and r.methodology["weights"] == "abc"
    (t,) = r.targets  # the skipped target ran nothing: left out
    assert t.device == "Ascend 910B" and t.samples_ms == (10.0, 11.0, 12.0) and t.median_ms == 11.0
    assert t.accuracy == {"rel_l2": 2e-3, "max_abs": 0.1, "cosine": 0.98}  # the worst of each
    assert t.methodology == {"warmup": 1, "iterations": 3, "clock": "perf_counter"}
    assert store.from_document(json.loads(json.dumps(r.to_dict()))).to_dict() == r.to_dict()


def test_images_elsewhere_keep_the_series():
    moved = {**report(), "images": ["/b/dog.jpg", "/b/cat.jpg"]}
    assert record_of_report(moved, source="x").methodology == record_of_report(report(), source="x").methodology


def test_a_history_path_that_is_a_file_is_a_usage_error(suite):
    (suite.path / "h").write_text("x")
    result = suite.runpytest_inprocess("--r34-history=h")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "history 'h': is not a folder" in result.stderr.str()


def test_history_check_without_a_history_is_a_usage_error(suite):
    result = suite.runpytest_inprocess("--r34-history-check")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--r34-history-check needs --r34-history DIR" in result.stderr.str()


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_run_adds_its_record(suite):
    args = (ONE_IMAGE, "--r34-target=cpu/fp32", "--r34-iters=3", "-k", "test_verdict and batch1", "--r34-history=hist")
    result = suite.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["resnet34-npu: history record written to *"])
    (record,) = store.load(suite.path / "hist", strict=True).records
    (target,) = [t for t in record.targets if t.target == "cpu/fp32"]
    assert len(target.samples_ms) == 3 and "rel_l2" in target.accuracy and record.source == "pytest"
    assert (suite.path / "acceptance_report.json").exists()
    again = suite.runpytest_subprocess(*args, "--r34-history-check")  # one earlier run: the gate says so
    again.assert_outcomes(passed=1)
    assert again.ret == pytest.ExitCode.OK
    again.stdout.fnmatch_lines(["resnet34-npu: history gate: no comparable history for cpu/fp32 *: gate not applied"])


def test_images_are_keyed_by_their_bytes_so_a_re_encoded_photo_starts_a_new_series(tmp_path):
    first, second = tmp_path / "a" / "cat.jpg", tmp_path / "b" / "cat.jpg"
    for path, data in ((first, b"one encoding"), (second, b"another encoding")):
        path.parent.mkdir()
        path.write_bytes(data)
    keys = [
        record_of_report({**report(), "images": [str(p)]}, source="t").methodology["images"] for p in (first, second)
    ]
    assert keys[0] != keys[1]
    again = record_of_report({**report(), "images": [str(first)]}, source="t").methodology["images"]
    assert again == keys[0]
