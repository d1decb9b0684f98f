"""The history page without a browser: self-contained (CSP, no script, no external fetch), one
chart per figure with the steps marked and the environment changes labelled; hostile names
(a target called ``<script>...``) are text, never markup."""

from __future__ import annotations

import dataclasses
import re

from markupsafe import escape

from resnet34_npu.history import analysis, page, synthetic
from resnet34_npu.history.store import History

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def rendered(records) -> str:
    return page.render(analysis.analyse(History("folder", tuple(records), ())))


def test_steps_marked_and_environment_labelled():
    text = rendered(synthetic.history(seed=1))
    assert (
        f'content="{escape(page.CSP)}"' in text
        and "<script" not in text
        and "http" not in text.replace("http-equiv", "")
    )
    assert text.count("<svg") == 3  # latency, 1 - cosine, rel_l2
    steps = re.findall(r'<line class="step"', text)
    assert len(steps) == 3  # latency median at run 31, 1 - cosine and rel_l2 at run 45
    assert "torch 2.4.0 -&gt; 2.5.0" in text and "CANN 8.5.0 -&gt; 8.5.1" in text
    assert "at run 31" in text and "Accuracy drift" in text


def test_no_step_no_marker():
    text = rendered(synthetic.history(seed=1, latency_step=None, drift=None))
    assert '<line class="step"' not in text and "No step." in text


def test_hostile_names_are_text():
    records = synthetic.history(runs=8, seed=1, latency_step=None, drift=None)
    hostile = [
        dataclasses.replace(r, targets=tuple(dataclasses.replace(t, target=HOSTILE) for t in r.targets),
                            environment={**r.environment, "torch": HOSTILE})
        for r in records
    ]  # fmt: skip
    text = rendered(hostile)
    assert "<script" not in text and "<img" not in text and "&lt;script&gt;" in text


def test_a_step_from_exactly_zero_is_marked_and_tabled():
    records = synthetic.history(runs=30, seed=1, latency_step=None, drift=None, bit_exact_until=21)
    text = rendered(records)
    assert "from 0 at run 21" in text and f"from exactly 0 (run id {records[20].run_id})" in text


def test_dates_on_the_x_axis_every_accuracy_figure_charted_or_said_why():
    records = synthetic.history(runs=12, seed=1, latency_step=None, drift=None, bit_exact_until=99)
    text = rendered(records)  # rel_l2 exactly 0 in every run: no log-scale chart, and the page says why
    assert "2026-01-02 (run 1)" in text and "2026-01-13 (run 12)" in text
    assert "rel_l2 (log scale) (exactly 0 in all 12 run(s) that have it (bit-exact)" in text
    assert text.count("<figure>") == 3 and text.count("<svg") == 1


def test_two_series_of_one_target_are_titled_by_what_tells_them_apart():
    a = synthetic.history(runs=6, seed=1, latency_step=None, drift=None)
    b = [
        dataclasses.replace(r, source="pytest-benchmark", methodology={**r.methodology, "iterations": 20})
        for r in synthetic.history(runs=6, seed=2, latency_step=None, drift=None)
    ]
    text = rendered([*a, *b])
    assert "<h2>cpu/fp32/eager (batch 1) on synthetic host: from synthetic; 10 timed run(s)</h2>" in text
    assert "<h2>cpu/fp32/eager (batch 1) on synthetic host: from pytest-benchmark; 20 timed run(s)</h2>" in text
