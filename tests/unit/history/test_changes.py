"""Change points on synthetic histories with known steps: the 6 % latency step at run 31 and the
3x rel L2 drift at run 45 are found (run +/- 1), exactly those, with the environment change
named; A/A histories raise no false step; a history with the step removed finds nothing (the
detector is shown not to find steps that are not there)."""

from __future__ import annotations

import dataclasses

import pytest

from resnet34_npu.core.errors import InputError
from resnet34_npu.history import analysis, changes, record, series, synthetic
from resnet34_npu.history.store import History


def found(records):
    (only,) = series.build(records)
    return changes.steps(only)


@pytest.mark.parametrize("seed", [1, 2])
def test_synthetic_history_finds_the_step_and_the_drift(seed):
    steps = found(synthetic.history(seed=seed))
    median = [s for s in steps if s.measure == "latency median (ms)"]
    rel = [s for s in steps if s.measure == "rel_l2"]
    assert len(median) == 1 and abs(median[0].run - 31) <= 1
    assert 0.03 < median[0].change < 0.09 and median[0].p_value < 0.002
    assert any("torch 2.4.0 -> 2.5.0" in e for e in median[0].environment)
    assert len(rel) == 1 and abs(rel[0].run - 45) <= 1 and rel[0].factor > 2
    assert "CANN 8.5.0 -> 8.5.1" in rel[0].environment
    assert {s.run for s in steps} <= {30, 31, 32, 44, 45, 46}  # nothing else, on any figure
    result = analysis.analyse(History("h", tuple(synthetic.history(seed=seed)), ()))
    assert [d.measure for d in result.series[0].drift] == ["1 - cosine", "rel_l2"]


def test_no_step_no_change_point():
    assert found(synthetic.history(seed=1, latency_step=None, drift=None)) == []


@pytest.mark.slow  # real runs or a pytest run in-process: CI runs -m slow
def test_a_a_histories_raise_no_false_step():
    false = sum(bool(found(synthetic.history(runs=40, seed=500 + i, latency_step=None, drift=None))) for i in range(20))
    assert false == 0


@pytest.mark.slow
def test_two_hundred_a_a_histories_at_most_one_percent_false_steps():
    false = sum(bool(found(synthetic.history(seed=1000 + i, latency_step=None, drift=None))) for i in range(200))
    assert false <= 2


def test_a_deterministic_figure_that_moves_is_a_step():
    values = [1e-6] * 20 + [2e-6] * 20
    assert changes.change_points(values) == [20]
    assert changes.change_points([1e-6] * 40) == []


def test_environment_change_is_a_label_a_methodology_change_a_new_series():
    records = synthetic.history(runs=10, latency_step=(5, 0.0), drift=None)
    assert len(series.build(records)) == 1  # torch changed at run 5: same series
    changed = [
        r.__class__(r.run_id, r.created, r.source, r.environment, {**r.methodology, "iterations": 20}, r.targets)
        for r in records[5:]
    ]
    built = series.build(records[:5] + changed)
    assert [len(s.points) for s in built] == [5, 5]


def test_a_bit_exact_figure_that_becomes_non_zero_is_a_step_named_with_its_run():
    """rel L2 exactly 0 for 20 runs, non-zero from run 21 (CANN 8.5.0 -> 8.5.1): no log of 0, so
    Pelt alone never saw it (the old ``v > 0`` filter dropped the zeros); a step of its own."""
    records = synthetic.history(runs=30, seed=1, latency_step=None, drift=None, bit_exact_until=21)
    (rel,) = [s for s in found(records) if s.measure == "rel_l2"]
    assert rel.run == 21 and rel.run_id == records[20].run_id and rel.before == 0 and rel.after > 0
    assert rel.from_zero and rel.to_dict()["change"] is None and rel.environment == ("CANN 8.5.0 -> 8.5.1",)
    assert "from exactly 0" in rel.line() and records[20].run_id in rel.line()
    assert changes.zero_steps([0.0] * 5 + [1e-7] * 2) == [5]
    assert changes.zero_steps([0.0] * 2 + [1e-7] * 5) == []  # two zero runs: no established bit-exact state
    assert changes.zero_steps([0.0] * 10) == [] and changes.zero_steps([1e-7] * 10) == []


@pytest.mark.parametrize(
    "text, why",
    [
        ("release", "expected KEY=VALUE"),
        ("=2026.12", "expected KEY=VALUE"),
        ("release=2026\x1b[2J", "control character"),
        ("release=" + "x" * 201, "longer than 200"),
        ("rel ease=1", "letters, digits"),
    ],
)
def test_a_bad_label_is_one_clear_refusal(text, why):
    with pytest.raises(InputError, match=why):
        record.parse_label(text)


def test_labels_thread_counts_and_variables_are_recorded_and_shown_at_a_step(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    env = record.environment([("release", "2026.12")])
    assert env["OMP_NUM_THREADS"] == "1" and env["ASCEND_RT_VISIBLE_DEVICES"] == "0,1"
    assert "UNRELATED_SECRET" not in env and int(env["torch threads"]) >= 1 and env["label:release"] == "2026.12"
    records = synthetic.history(runs=40, seed=2, noise=0.01, latency_step=(21, 0.3), drift=None)
    relabelled = []
    for i, r in enumerate(records):
        extra = {"label:release": "2026.11" if i < 20 else "2026.12", "OMP_NUM_THREADS": "4" if i < 20 else "1"}
        relabelled.append(dataclasses.replace(r, environment={**r.environment, **extra}))
    (step,) = [s for s in found(relabelled) if s.measure == "latency median (ms)"]
    assert step.run == 21 and step.environment[0] == "release=2026.11 -> 2026.12"
    assert "OMP_NUM_THREADS 4 -> 1" in step.environment
