"""``report history``, ``report history check`` and ``report history import`` end to end, in
process (no model, no subprocess): the synthetic history's two steps printed with their
environment change, the JSON document, the page; the gate's exit codes; pytest-benchmark's
saved runs imported with their raw samples; bad input one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
        (["report", "history", "{file}"], "is not a folder"),
        (["report", "history", "check", "{dir}", "--threshold", "fast"], "not a percentage"),
        (["report", "history", "import", "{dir}"], "-o DIR"),
        (["report", "history", "import", "{dir}", "-o", "{file}"], "is not a folder"),
        (["report", "history", "a", "b"], "expected one folder"),
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
    assert main(["report", "history", "import", str(tmp_path / ".benchmarks"), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "6 pytest-benchmark run(s) imported" in captured.out and "0009_bad.json" in captured.err
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
