"""pytest-benchmark's saved runs as records: the suite's own machine_info block and extra_info read
(target, device, batch, methodology), another project's machine_info keys as environment labels,
a saved run's identity (the same file twice is one run), and its series joining the series of the
same target, device, batch and methodology that ``compare --history`` writes."""

from __future__ import annotations

import copy
import json

import pytest

from resnet34_npu.history import importer, series, synthetic
from resnet34_npu.history.from_report import record_of_report, run_methodology
from resnet34_npu.history.store import BadRecord
from resnet34_npu.targets.timing import Timing

IMAGE = "fixtures/images/cat.jpg"


def suite_run(batch: int = 8, **info) -> dict:
    """A saved run as the suite's benchmarks write it (conftest hook + test_forward's extra_info)."""
    method = {**run_methodology("default", "abc", [IMAGE]), "warmup": 3, "iterations": 8, "clock": "perf_counter"}
    extra = {"target": "cpu/fp32", "device_name": "AMD EPYC", "batch_size": batch, "methodology": method, **info}
    (doc,) = synthetic.benchmark_runs(runs=1, step=None, samples=8, extra_info=extra)
    doc["machine_info"]["resnet34_npu"] = {"environment": {"torch": "2.14.1", "torch threads": "2", "label:rel": "a"}}
    return doc


def convert(doc: dict):
    return importer.convert(json.dumps(doc).encode())


def test_the_suites_block_and_extra_info_are_read():
    rec = convert(suite_run(batch=8))
    (t,) = rec.targets
    assert (t.target, t.device, t.batch, len(t.samples_ms)) == ("cpu/fp32", "AMD EPYC", 8, 8)
    assert rec.environment["torch"] == "2.14.1" and rec.environment["torch threads"] == "2"
    assert rec.environment["label:rel"] == "a" and rec.environment["os"] == "Linux 6.1.0"
    assert t.methodology["iterations"] == 8 and t.methodology["images"] == run_methodology("x", "y", [IMAGE])["images"]


def test_other_projects_machine_info_keys_are_environment_labels_and_nested_ones_ignored():
    (doc,) = synthetic.benchmark_runs(runs=1, step=None, machine={"cann": lambda i: "8.5.1", "gpu": lambda i: {"x": 1}})
    rec = convert(doc)
    assert rec.environment["cann"] == "8.5.1" and "gpu" not in rec.environment
    (t,) = rec.targets
    assert (
        t.batch == 1
        and t.target.endswith("test_forward[cpu/fp32-1]")
        and t.methodology["benchmark"] == "pytest-benchmark"
    )


def test_a_saved_run_is_identified_by_machine_datetime_commit_and_bytes():
    doc = suite_run()
    assert convert(doc).run_id == convert(copy.deepcopy(doc)).run_id
    later = {**doc, "datetime": "2027-01-01T00:00:00"}
    assert convert(later).run_id != convert(doc).run_id


def test_an_imported_series_joins_compares_series_of_the_same_target_batch_and_methodology():
    timing = Timing.from_samples([50.0 + i for i in range(8)], warmup=3, batch_size=8, clock="perf_counter").to_dict()
    report = {
        "created": "2026-01-01T00:00:00+00:00",
        "profile": "default",
        "machine": {"host": "h"},
        "weights": {"spec": "seeded", "tensor_sha256": "abc"},
        "images": [IMAGE],
        "targets": [{"name": "cpu/fp32", "device": "cpu", "device_name": "AMD EPYC", "verdict": "pass",
                     "latency_ms": timing, "images": []}],
    }  # fmt: skip
    compared = record_of_report(report, source="compare")
    assert compared.targets[0].methodology == {"warmup": 3, "iterations": 8, "clock": "perf_counter"}
    (joined,) = series.build([compared, convert(suite_run(batch=8))])
    assert len(joined.points) == 2 and joined.sources == ["compare", "pytest-benchmark"]
    assert len(series.build([compared, convert(suite_run(batch=1))])) == 2  # batch 1 is another series


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d["benchmarks"][0]["extra_info"].update(batch_size="8"), "batch is '8'"),
        (lambda d: d["benchmarks"][0]["extra_info"].update(batch_size=-1), "batch is -1"),
        (lambda d: d["benchmarks"][0]["stats"].update(median=-1.0), "negative or non-finite"),
        (lambda d: d["benchmarks"][0]["stats"].update(data=["x"]), "no numeric median"),
        (lambda d: d.update(datetime=5), "no datetime"),
        (lambda d: d["benchmarks"].__setitem__(0, "x"), "has no stats"),
    ],
)
def test_a_hostile_saved_run_is_refused_with_its_reason(change, reason):
    doc = suite_run()
    change(doc)
    with pytest.raises(BadRecord, match=reason):
        convert(doc)


def test_a_long_label_from_another_project_is_cut_never_refused():
    (doc,) = synthetic.benchmark_runs(runs=1, step=None, machine={"build": lambda i: "x" * 5000})
    assert len(convert(doc).environment["build"]) == importer.MAX_LABEL
