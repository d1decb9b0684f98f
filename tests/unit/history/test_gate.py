"""The CI gate: passes an unchanged run, fails a 10 % slower one (and names it), passes a 10 %
slower one under a 15 % threshold for that series, says "no comparable history" on an empty
folder and on a series too short, and refuses to compare across methodologies."""

from __future__ import annotations

import pytest

from resnet34_npu.core.errors import InputError
from resnet34_npu.history import gate, synthetic

FLAT = {"latency_step": None, "drift": None}


def latency(verdicts):
    (v,) = [v for v in verdicts if v.measure == "latency median (ms)"]
    return v


def test_unchanged_run_passes():
    verdicts = gate.check(synthetic.history(runs=30, seed=3, noise=0.01, **FLAT))
    assert not gate.failed(verdicts) and latency(verdicts).status == "pass"


def test_ten_percent_slower_fails_and_is_named():
    records = synthetic.history(runs=30, seed=3, noise=0.01, latency_step=(30, 0.10), drift=None)
    verdicts = gate.check(records)
    assert gate.failed(verdicts)
    v = latency(verdicts)
    assert v.status == "fail" and "cpu/fp32/eager" in v.line and "a regression" in v.line
    assert "torch 2.4.0 -> 2.5.0" in v.line
    assert not gate.failed(gate.check(records, thresholds=[("cpu/fp32", 0.15)]))


def test_accuracy_drift_in_the_newest_run_fails():
    verdicts = gate.check(synthetic.history(runs=30, seed=3, latency_step=None, drift=(30, 3.0)))
    assert sorted(v.measure for v in verdicts if v.status == "fail") == ["1 - cosine", "rel_l2"]


def test_empty_history_is_not_applied():
    (v,) = gate.check([])
    assert v.status == "not applied" and "no comparable history" in v.line and not gate.failed([v])


def test_short_series_is_not_applied():
    verdicts = gate.check(synthetic.history(runs=2, seed=3, latency_step=(2, 0.5), drift=None))
    assert not gate.failed(verdicts)
    assert all(v.status == "not applied" and "no comparable history for cpu/fp32/eager" in v.line for v in verdicts)


def test_methodology_change_is_never_compared():
    records = synthetic.history(runs=10, seed=3, latency_step=(10, 0.5), drift=None)
    last = records[-1]
    records[-1] = last.__class__(
        last.run_id, last.created, last.source, last.environment, {**last.methodology, "iterations": 20}, last.targets
    )
    (v,) = gate.check(records)
    assert v.status == "not applied" and "iterations 10 -> 20" in v.line


@pytest.mark.parametrize("text, expected", [("5%", ("", 0.05)), ("cpu/fp32/eager=8%", ("cpu/fp32/eager", 0.08))])
def test_parse_threshold(text, expected):
    assert gate.parse_threshold(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["5x", "-3%", "nan%", "a=b", "5"])
def test_parse_threshold_refuses(text):
    with pytest.raises(InputError, match="not a percentage"):
        gate.parse_threshold(text)


def test_a_change_within_the_series_own_noise_does_not_fail():
    # 10 % slower, but runs of this series swing by 6 %: 3 x its noise is the bar, not 5 %
    records = synthetic.history(runs=30, seed=3, noise=0.06, latency_step=(30, 0.10), drift=None)
    v = latency(gate.check(records))
    assert v.status == "pass" and "x the runs' noise" in v.line


def test_aggregate_only_runs_too_few_to_be_significant_are_not_applied_never_a_fake_p_of_0():
    """Without raw samples the only test is the run's rank among the baseline runs: with three of
    them the smallest p is 1/4, so a 10 % slower run can never be called significant: 'not applied'."""
    records = synthetic.history(runs=4, seed=3, noise=0.001, samples=1, latency_step=(4, 0.10), drift=None)
    (v,) = [v for v in gate.check(records) if v.measure == "latency median (ms)"]
    assert v.status == "not applied" and "no raw samples" in v.line and v.p_value == 0.25
    assert not gate.failed([v])


def test_a_series_absent_from_the_newest_run_is_said_never_passed_silently():
    cpu = synthetic.history(runs=6, seed=3, latency_step=None, drift=None)
    npu = synthetic.history(runs=5, seed=4, latency_step=None, drift=None, target="npu:0/fp16/eager")
    verdicts = gate.check([*cpu, *npu])  # the newest run (cpu's sixth) has no npu:0/fp16/eager
    (absent,) = [v for v in verdicts if "npu:0/fp16/eager" in v.line]
    assert absent.status == "not applied" and "absent from the newest run" in absent.line
    assert any(v.status == "pass" and "cpu/fp32/eager" in v.line for v in verdicts)
