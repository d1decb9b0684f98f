"""``report history``, ``report history check`` and ``report history import`` end to end, in
process (no model, no subprocess): the synthetic history's two steps printed with their
environment change, the JSON document, the page; the gate's exit codes; pytest-benchmark's
saved runs imported with their raw samples; bad input one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet34_npu.cli import history as history_cli
from resnet34_npu.cli.main import main
from resnet34_npu.history import record, store, synthetic
from tests.unit.history.written import every_written_record_matches_the_schema  # noqa: F401 (autouse)


@pytest.fixture
def history(tmp_path) -> Path:
    folder = tmp_path / "history"
    record.check_history_dir(folder)
    for r in synthetic.history(seed=1):
        record.write_record(folder, r)
    return folder


def test_report_history_prints_the_steps(history, tmp_path, capsys):
    assert main(["report", "history", str(history), "-o", str(tmp_path / "page.html")]) == 0
    out = capsys.readouterr().out
    assert "latency median (ms): run 31:" in out and "torch 2.4.0 -> 2.5.0" in out
    assert "rel_l2: run 45:" in out and "CANN 8.5.0 -> 8.5.1" in out and "accuracy drift  rel_l2" in out
    page = (tmp_path / "page.html").read_text()
    assert "Content-Security-Policy" in page and "<svg" in page and "<script" not in page


def test_report_history_json(history, capsys):
    assert main(["report", "history", str(history), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (only,) = doc["series"]
    assert sorted(
        (s["measure"], s["run"]) for s in only["steps"] if s["measure"] in ("latency median (ms)", "rel_l2")
    ) == [
        ("latency median (ms)", 31),
        ("rel_l2", 45),
    ]


def test_a_step_from_exactly_zero_is_shown_in_text_json_and_page(tmp_path, capsys):
    folder = tmp_path / "h"
    record.check_history_dir(folder)
    records = synthetic.history(runs=30, seed=1, latency_step=None, drift=None, bit_exact_until=21)
    for r in records:
        record.write_record(folder, r)
    assert main(["report", "history", str(folder), "-o", str(tmp_path / "p.html")]) == 0
    out = capsys.readouterr().out
    assert "rel_l2: run 21: 0 -> " in out and f"from exactly 0, no longer bit-exact, run id {records[20].run_id}" in out
    assert "CANN 8.5.0 -> 8.5.1" in out and "accuracy drift  rel_l2 from exactly 0 from run 21" in out
    assert "from 0 at run 21" in (tmp_path / "p.html").read_text()
    assert main(["report", "history", str(folder), "--json"]) == 0
    (only,) = json.loads(capsys.readouterr().out)["series"]
    (rel,) = [s for s in only["steps"] if s["measure"] == "rel_l2"]
    assert (rel["run"], rel["run_id"], rel["before"], rel["change"], rel["from_zero"]) == (
        21,
        records[20].run_id,
        0,
        None,
        True,
    )
    assert main(["report", "history", "check", str(folder)]) == 0  # the newest run is not the step's


def test_check_passes_unchanged_and_fails_ten_percent_slower(tmp_path, capsys):
    flat = tmp_path / "flat"
    record.check_history_dir(flat)
    for r in synthetic.history(runs=20, seed=4, noise=0.01, latency_step=None, drift=None):
        record.write_record(flat, r)
    assert main(["report", "history", "check", str(flat)]) == 0
    slow = tmp_path / "slow"
    record.check_history_dir(slow)
    for r in synthetic.history(runs=20, seed=4, noise=0.01, latency_step=(20, 0.10), drift=None):
        record.write_record(slow, r)
    assert main(["report", "history", "check", str(slow)]) == 1
    assert "FAIL: cpu/fp32/eager" in capsys.readouterr().out
    assert main(["report", "history", "check", str(slow), "--threshold", "eager=20%"]) == 0


def test_check_on_an_empty_folder_is_not_applied(tmp_path, capsys):
    assert main(["report", "history", "check", str(tmp_path)]) == 0
    assert "no comparable history" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", "history", "check", "{missing}"], "does not exist"),
        (["report", "history", "show", "{file}"], "is not a folder"),
        (["report", "history", "check", "{dir}", "--threshold", "fast"], "not a percentage"),
        (["report", "history", "import", "{dir}"], "-o/--output"),
        (["report", "history", "import", "{dir}", "-o", "{file}"], "is not a folder"),
        (["report", "history", "show", "a", "b"], "unrecognized arguments: b"),
        (["report", "history", "check", "{dir}", "-o", "p.html"], "unrecognized arguments: -o"),  # show's option
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "f").write_text("x")
    names = {"missing": str(tmp_path / "missing"), "file": str(tmp_path / "f"), "dir": str(tmp_path)}
    try:
        code = main([a.format(**names) for a in argv])
    except SystemExit as exc:  # argparse's own refusals (a --threshold it cannot parse)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_strict_refuses_a_bad_record(history, capsys):
    (history / "torn.json").write_text('{"format": "resnet34-npu-hist')
    assert main(["report", "history", str(history)]) == 0
    assert "torn.json" in capsys.readouterr().out
    assert main(["report", "history", str(history), "--strict"]) == 2


def benchmark_run(when: str, median_s: float, data: bool) -> dict:
    stats = {"min": median_s, "max": median_s, "mean": median_s, "median": median_s, "iterations": 1, "rounds": 5}
    if data:
        stats["data"] = [median_s * (1 + 0.01 * i) for i in range(-2, 3)]
    return {
        "machine_info": {
            "node": "host1",
            "processor": "x86_64",
            "python_version": "3.11",
            "cpu": {"brand_raw": "EPYC"},
        },
        "commit_info": {"id": "abcdef1234567890"},
        "benchmarks": [
            {"name": "test_x", "fullname": "tests/b.py::test_x", "options": {"timer": "perf_counter"}, "stats": stats}
        ],
        "datetime": when,
        "version": "5.1.0",
    }


def test_import_pytest_benchmark_runs(tmp_path, capsys):
    saved = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    saved.mkdir(parents=True)
    for i in range(6):
        slower = 1.2 if i == 5 else 1.0
        doc = benchmark_run(f"2026-01-0{i + 1}T00:00:00", 0.1 * slower, data=i != 0)
        (saved / f"000{i}_abc_2026.json").write_text(json.dumps(doc))
    (saved / "0009_bad.json").write_text("{}")
    out = tmp_path / "history"
    argv = ["report", "history", "import", str(tmp_path / ".benchmarks"), "-o", str(out)]
    assert main(argv) == 2 and not out.exists()  # a file that is no saved run refuses the import by name
    assert "0009_bad.json" in capsys.readouterr().err
    assert main([*argv, "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert "6 new pytest-benchmark run(s) imported" in captured.out and "0009_bad.json" in captured.err
    loaded = store.load(out, strict=True).records
    assert len(loaded) == 6 and loaded[0].targets[0].samples_ms == () and len(loaded[1].targets[0].samples_ms) == 5
    assert loaded[1].targets[0].median_ms == pytest.approx(100.0)
    assert main(["report", "history", "check", str(out)]) == 1  # the 20 % slower newest run


def test_compare_history_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "h").write_text("x")
    code = main(["compare", "--target", "cpu/fp32", "--history", str(tmp_path / "h"), "-o", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and "is not a folder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()  # refused before the report (or any model) was touched


@pytest.mark.slow
def test_compare_adds_its_record(tmp_path, capsys):
    image = Path(__file__).resolve().parents[3] / "fixtures" / "images" / "cat.jpg"
    argv = ["compare", "--image", str(image), "--target", "cpu/fp32", "--iters", "3", "--warmup", "1"]
    assert main([*argv, "--history", str(tmp_path / "h"), "-o", str(tmp_path / "r.json")]) == 0
    assert "history record written to" in capsys.readouterr().out and (tmp_path / "r.json").exists()
    (rec,) = store.load(tmp_path / "h", strict=True).records
    (t,) = rec.targets
    assert rec.source == "compare" and len(t.samples_ms) == 3 and "rel_l2" in t.accuracy
    assert t.methodology == {"warmup": 1, "iterations": 3, "clock": "perf_counter"}


def test_a_newline_in_a_target_name_cannot_forge_a_line(tmp_path, capsys):
    import dataclasses

    folder = tmp_path / "h"
    record.check_history_dir(folder)
    for r in synthetic.history(runs=8, seed=1, latency_step=None, drift=None):
        forged = tuple(dataclasses.replace(t, target="x\nPASS: all good") for t in r.targets)
        record.write_record(folder, dataclasses.replace(r, targets=forged))
    assert main(["report", "history", str(folder)]) == 0
    assert main(["report", "history", "check", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any(line.startswith("PASS: all good") for line in lines) and any("x\\nPASS" in line for line in lines)


@pytest.mark.parametrize(
    "content, reason",
    [
        ('{"format": "something else", "rows": []}', "not a pytest-benchmark saved run"),
        ("not json at all", "f.json"),
        (json.dumps({**benchmark_run("2026-01-01T00:00:00", 0.1, True), "benchmarks": []}), "no benchmarks"),
    ],
)
def test_import_of_a_file_that_is_no_benchmark_run_is_one_line_exit_2_nothing_written(
    tmp_path, capsys, content, reason
):
    (tmp_path / "f.json").write_text(content)
    out = tmp_path / "history"
    assert main(["report", "history", "import", str(tmp_path / "f.json"), "-o", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "f.json" in err[0] and reason in err[0] and "nothing imported" in err[0]
    assert "imported into" not in captured.out and not out.exists()


def test_import_of_a_folder_with_no_benchmark_run_is_exit_2_nothing_written(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.json").write_text("{}")
    out = tmp_path / "history"
    assert main(["report", "history", "import", str(tmp_path / "src"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 file(s) refused" in err[0] and "a.json" in err[0] and not out.exists()


def _write(folder: Path, records) -> Path:
    record.check_history_dir(folder)
    for r in records:
        record.write_record(folder, r)
    return folder


def test_the_gate_fails_a_regressed_series_after_a_newest_record_of_other_series(tmp_path, capsys):
    """The walkthrough: a series regressed, then an import (other series only) is the newest record.
    Before: 'absent from the newest run: gate not applied' and exit 0."""
    cpu = synthetic.history(runs=30, seed=3, noise=0.01, latency_step=(30, 0.10), drift=None)
    other = synthetic.history(runs=31, seed=5, noise=0.01, latency_step=None, drift=None, target="imported")[-1:]
    folder = _write(tmp_path / "h", [*cpu, *other])
    assert main(["report", "history", "check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "FAIL: cpu/fp32/eager (batch 1) on synthetic host latency median (ms)" in out
    assert "not in this run: cpu/fp32/eager" in out
    assert not [line for line in out.splitlines() if "cpu/fp32/eager" in line and "gate not applied" in line]


def test_a_second_import_of_the_same_runs_adds_nothing(tmp_path, capsys):
    saved = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    saved.mkdir(parents=True)
    for i, doc in enumerate(synthetic.benchmark_runs(runs=5, step=None, seed=2)):
        (saved / f"{i:04d}_c_2026.json").write_text(json.dumps(doc))
    out = tmp_path / "history"
    argv = ["report", "history", "import", str(tmp_path / ".benchmarks"), "-o", str(out)]
    assert main(argv) == 0 and "5 new pytest-benchmark run(s) imported" in capsys.readouterr().out
    assert main(argv) == 0 and "0 new pytest-benchmark run(s) imported" in (text := capsys.readouterr().out)
    assert "5 already there" in text and len(store.load(out, strict=True).records) == 5
    (saved / "0005_c_2026.json").write_text(json.dumps(synthetic.benchmark_runs(runs=6, step=None, seed=2)[-1]))
    assert main(argv) == 0 and "1 new" in (text := capsys.readouterr().out) and "5 already there" in text
    assert len(store.load(out, strict=True).records) == 6


def test_a_short_history_step_is_found_by_analysis_and_gate_and_the_page(tmp_path, capsys):
    """The walkthrough: six runs at 44-49 ms, then three at 87-108 ms. Before: 'no step' while the
    gate failed, and the page drew the jump beside 'No step.'."""
    import numpy as np

    medians = [44, 47, 45, 49, 46, 48, 87, 108, 95]
    records = synthetic.history(
        runs=9, seed=1, base_ms=46, run_noise=np.array(medians) / 46 - 1, noise=0.02, latency_step=None, drift=None
    )
    folder = _write(tmp_path / "h", records)
    page = tmp_path / "p.html"
    assert main(["report", "history", "show", str(folder), "-o", str(page)]) == 0
    out = capsys.readouterr().out
    assert "latency median (ms): run 7: " in out and "no step" not in out
    assert main(["report", "history", "check", str(folder)]) == 1
    gate_out = capsys.readouterr().out
    assert "FAIL: cpu/fp32/eager (batch 1) on synthetic host latency median (ms)" in gate_out
    assert "the step at run 7" in gate_out  # the gate names the analysis' step
    text = page.read_text()
    assert "No step" not in text and 'class="steprow"><td>latency median (ms)</td><td>7</td>' in text


def test_a_newest_run_alone_regressed_never_says_no_step_beside_the_failure(tmp_path, capsys):
    records = synthetic.history(runs=12, seed=3, noise=0.01, latency_step=(12, 0.5), drift=None)
    folder = _write(tmp_path / "h", records)
    assert main(["report", "history", "show", str(folder), "-o", str(tmp_path / "p.html")]) == 0
    out = capsys.readouterr().out
    assert "the newest run fails the gate" in out and "\n  no step\n" not in out and "  gate  FAIL" in out
    text = (tmp_path / "p.html").read_text()
    assert "No step.</p>" not in text and "the newest run fails the gate" in text


def test_the_old_spelling_is_read_as_show_with_a_one_line_notice(history, capsys):
    assert main(["report", "history", str(history), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["series"] and captured.err.strip() == history_cli.OLD_SPELLING
    assert main(["report", "history", "check", str(history)]) in (0, 1) and not capsys.readouterr().err


def test_sixty_saved_runs_with_a_cann_change_and_a_6_percent_step_at_run_31(tmp_path, capsys):
    """pytest-benchmark saved runs whose machine_info carries "cann" (another project's hook, an
    unknown key: an environment label), 8.5.0 then 8.5.1 from run 31, 6 % slower from there."""
    saved = tmp_path / ".benchmarks"
    saved.mkdir()
    docs = synthetic.benchmark_runs(seed=0, noise=0.015, machine={"cann": lambda i: "8.5.0" if i < 31 else "8.5.1"})
    for i, doc in enumerate(docs):
        (saved / f"{i:04d}_x.json").write_text(json.dumps(doc))
    out = tmp_path / "h"
    assert main(["report", "history", "import", str(saved), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["report", "history", "show", str(out), "--json"]) == 0
    (only,) = json.loads(capsys.readouterr().out)["series"]
    assert {s["run"] for s in only["steps"]} == {31} and only["steps"]
    assert all(s["environment"] == ["cann 8.5.0 -> 8.5.1"] for s in only["steps"])
    (median,) = [s for s in only["steps"] if s["measure"] == "latency median (ms)"]
    assert 0.03 < median["change"] < 0.09
    assert main(["report", "history", "show", str(out)]) == 0
    assert "run 31: " in (text := capsys.readouterr().out) and "cann 8.5.0 -> 8.5.1" in text


@pytest.mark.parametrize("text", ["release", "r=a\x07b", "r=" + "x" * 201])
def test_compare_refuses_a_bad_label_in_one_line_before_any_work(tmp_path, capsys, text):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--target", "cpu/fp32", "--label", text, "-o", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--label" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()
