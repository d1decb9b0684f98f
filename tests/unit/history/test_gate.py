"""The CI gate: passes an unchanged run, fails a 10 % slower one (and names it), passes a 10 %
slower one under a 15 % threshold for that series, says "no comparable history" on an empty
folder and on a series too short, and refuses to compare across methodologies."""

from __future__ import annotations

import pytest

from resnet34_npu.core.errors import InputError
from resnet34_npu.history import gate, series, synthetic

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
    assert v.status == "skipped" and "no comparable history" in v.line and not gate.failed([v])


def test_short_series_is_not_applied():
    verdicts = gate.check(synthetic.history(runs=2, seed=3, latency_step=(2, 0.5), drift=None))
    assert not gate.failed(verdicts)
    assert all(v.status == "skipped" and "no comparable history for cpu/fp32/eager" in v.line for v in verdicts)


def test_methodology_change_is_never_compared():
    records = synthetic.history(runs=10, seed=3, latency_step=(10, 0.5), drift=None)
    last = records[-1]
    records[-1] = last.__class__(
        last.run_id, last.created, last.source, last.environment, {**last.methodology, "iterations": 20}, last.targets
    )
    verdicts = gate.check(records)
    (new,) = [v for v in verdicts if v.series == series.build(records)[1].key]
    assert new.status == "skipped" and "iterations 10 -> 20" in new.line
    old = [v for v in verdicts if v.series == series.build(records)[0].key]
    assert old[0].status == "not run" and "not in this run" in old[0].line and not gate.failed(verdicts)


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
    assert v.status == "skipped" and "no raw samples" in v.line and v.p_value == 0.25
    assert not gate.failed([v])


def test_a_series_absent_from_the_newest_run_is_listed_and_judged_by_its_own_newest_run():
    cpu = synthetic.history(runs=6, seed=3, latency_step=None, drift=None)
    npu = synthetic.history(runs=5, seed=4, latency_step=None, drift=None, target="npu:0/fp16/eager")
    verdicts = gate.check([*cpu, *npu])  # the newest run (cpu's sixth) has no npu:0/fp16/eager
    (absent,) = [v for v in verdicts if v.status == "not run"]
    assert "npu:0/fp16/eager" in absent.line and "not in this run" in absent.line
    assert "judged by its own newest run" in absent.line and "gate not applied" not in absent.line
    npu_median = [v for v in verdicts if "npu:0/fp16/eager" in v.line and v.measure == "latency median (ms)"]
    assert [v.status for v in npu_median] == ["pass"]
    assert any(v.status == "pass" and "cpu/fp32/eager" in v.line for v in verdicts)


def test_a_regressed_series_fails_after_a_newest_record_of_other_series():
    """The walkthrough: cpu/fp32's newest run is 10 % slower; then a record of other series only
    (an import, or a pytest run of other targets) becomes the newest. Before: 'absent from the
    newest run: gate not applied', exit 0. Now: the series is judged by its own newest run."""
    cpu = synthetic.history(runs=30, seed=3, noise=0.01, latency_step=(30, 0.10), drift=None)
    other = synthetic.history(runs=31, seed=5, noise=0.01, latency_step=None, drift=None, target="imported")[-1:]
    verdicts = gate.check([*cpu, *other])
    assert gate.failed(verdicts)
    (fail,) = [v for v in verdicts if v.status == "fail" and v.measure == "latency median (ms)"]
    assert "cpu/fp32/eager" in fail.line and "a regression" in fail.line
    assert any(v.status == "not run" and "cpu/fp32/eager" in v.line for v in verdicts)
    assert not any("gate not applied" in v.line for v in verdicts if "cpu/fp32/eager" in v.line)


def _tail_slower(records, factor=1.3, share=0.3):
    """The newest run with its slowest ``share`` of samples ``factor`` times slower: median unmoved."""
    import dataclasses

    import numpy as np

    last = records[-1]
    (t,) = last.targets
    s = np.sort(t.samples_ms)
    cut = len(s) - int(len(s) * share)
    s[cut:] *= factor
    slow = dataclasses.replace(t, samples_ms=tuple(float(v) for v in s), median_ms=float(np.median(s)))
    return [*records[:-1], dataclasses.replace(last, targets=(slow,))]


def p90(verdicts):
    (v,) = [v for v in verdicts if v.measure == "latency p90 (ms)"]
    return v


def test_a_slower_tail_with_a_steady_median_fails_on_the_p90():
    records = synthetic.history(runs=30, seed=3, noise=0.01, samples=50, latency_step=None, drift=None)
    verdicts = gate.check(_tail_slower(records))
    assert (
        latency(verdicts).status == "pass" and abs(latency(verdicts).change) < gate.DEFAULT_THRESHOLD
    )  # median: steady
    v = p90(verdicts)
    assert v.status == "fail" and v.change > 0.2 and v.p_value < gate.ALPHA and "tail test" in v.line
    assert gate.failed(verdicts)
    assert p90(gate.check(_tail_slower(records, factor=1.01))).status == "pass"  # +3 % in all: under 5 %


@pytest.mark.parametrize("samples", [10, 50])
def test_a_a_histories_raise_no_p90_alarm(samples):
    for seed in range(10):
        verdicts = gate.check(
            synthetic.history(runs=25, seed=40 + seed, noise=0.03, samples=samples, latency_step=None, drift=None)
        )
        assert p90(verdicts).status == "pass" and not gate.failed(verdicts), p90(verdicts).line


def test_tail_p_counts_new_samples_above_the_baseline_p90():
    baseline = [float(v) for v in range(100)]  # p90 89.1
    assert gate.tail_p([10.0] * 10, baseline) == 1.0
    assert gate.tail_p([95.0] * 5 + [10.0] * 5, baseline) == pytest.approx(0.00163, rel=0.01)  # P(Bin(10,.1) >= 5)
    assert gate.tail_p([1.0] * 4, [1.0] * 8) == 1.0


def _bit_exact(records, cosine=1.0000000000000002):
    """Every run bit-exact, as compare writes it on the CPU: rel_l2 and max_abs exactly 0, the
    cosine of identical vectors 1 + 1 ulp (so 1 - cosine is -2.22e-16)."""
    import dataclasses

    out = []
    for r in records:
        (t,) = r.targets
        figures = {"rel_l2": 0.0, "max_abs": 0.0, "cosine": cosine}
        t = dataclasses.replace(t, accuracy=figures, images=(dict(figures), dict(figures)))
        out.append(dataclasses.replace(r, targets=(t,)))
    return out


def test_bit_exact_figures_give_sensible_lines_no_inf_no_warning():
    """The walkthrough: '1 - cosine: -2.22e-16 -> -2.22e-16 (+inf%; drift from +100.0%)',
    'max_abs: 0 -> 0 (+inf%...)' and a RuntimeWarning from log(0). Now a bit-exact line, no inf."""
    import warnings

    records = _bit_exact(synthetic.history(runs=10, seed=3, latency_step=None, drift=None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verdicts = gate.check(records)
        from resnet34_npu.history import analysis, store

        found = analysis.analyse(store.History("h", tuple(records), ()))
    lines = [v.line for v in verdicts] + analysis.summary_lines(found)
    assert not any("inf" in line or "e-16" in line for line in lines), lines
    by = {v.measure: v for v in verdicts}
    for name in ("rel_l2", "max_abs", "1 - cosine"):
        assert by[name].status == "pass" and "exactly 0" in by[name].line and "bit-exact" in by[name].line
    broken = _bit_exact(records[:-1]) + [_bit_exact(records[-1:], cosine=0.999)[0]]
    (cos,) = [v for v in gate.check(broken) if v.measure == "1 - cosine"]
    assert cos.status == "fail" and "0 -> 0.001" in cos.line and "no longer bit-exact" in cos.line
