"""Fleet reports (resnet34_npu/reports/fleet/, ``report merge``): reports of many hosts generated as
documents of the report schema, no forward pass. Each check is shown to fire on a wrong input
(a failing or slow card, a bad file) and to stay quiet on a right one."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from resnet34_npu.cli import main as cli
from resnet34_npu.core import schemas
from resnet34_npu.core.documents import dumps
from resnet34_npu.core.files import write_json_atomic
from resnet34_npu.reports import fleet
from resnet34_npu.reports.fleet import read as fleet_read
from resnet34_npu.reports.report import SCHEMA_VERSION, build_report, unfinished_report

ROW_KEYS = {
    "host",
    "card",
    "target",
    "verdict",
    "worst_metric",
    "latency_median_ms",
    "robust_z",
    "latency_outlier",
    "report",
}
WEIGHTS = {"spec": "seeded", "path": "/cache/w.pth", "sha256": "f" * 64, "tensor_sha256": "0d7f" + "0" * 60}
#: One report document of the schema (machine_info of this host), copied for every generated host.
BASE = build_report(profile="default", weights=WEIGHTS, reference={"device_name": "cpu"}, targets=[])
BASE_MS = {"fp32": 4.0, "fp16": 2.0}


def latency(ms: float) -> dict:
    stats = dict.fromkeys(("mean", "median", "p90", "min", "max"), ms)
    return {**stats, "std": 0.0, "warmup": 1, "iterations": 10, "batch_size": 1, "clock": "device events"}


def case(image: str, verdict: str, rel: float) -> dict:
    """An image of the report schema (core/schemas/compare-report.schema.json): its worst metric ``rel``."""
    measured = schemas.schema("compare-report")["$defs"]["case"]["else"]["properties"]["metrics"]["required"]
    metrics = dict.fromkeys(measured, 0.0)
    return {
        "image": image,
        "paths": [f"/data/{image}"],
        "batch_size": 1,
        "verdict": verdict,
        "failures": [] if verdict != "fail" else [f"rel_l2_error: {rel}"],
        "warnings": [],
        "metrics": {**metrics, "rel_l2_error": rel},
    }


def target(card: str, dtype: str = "fp32", *, verdict: str = "pass", ms: float | None = 4.0, rel: float = 1e-6):
    """A target of the schema: two images, the second one's error ``rel`` (the worst)."""
    return {
        "name": f"{card}/{dtype}",
        "device": card,
        "device_name": "Ascend910B3",
        "dtype": dtype,
        "mode": "eager",
        "verdict": verdict,
        "latency_ms": None if ms is None else latency(ms),
        "images": [case("cat.jpg", "pass", rel / 10), case("dog.jpg", verdict, rel)],
        "future_key": {"ignored": True},
    }


def host_report(host: str, targets: list[dict], **top) -> dict:
    document = copy.deepcopy(BASE)
    document["machine"]["host"] = host
    document["targets"] = targets
    document["verdict"] = "fail" if any(t["verdict"] == "fail" for t in targets) else "pass"
    document["dataset"] = {"rows": [{"card": "npu:0", "images": 50000}]}  # a key this reader does not know
    document.update(top)
    return document


def write(folder: Path, name: str, document: dict) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(document))
    return path


def merge_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["report", "merge", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def small_fleet(folder: Path, hosts: int = 4, **changes) -> list[Path]:
    return [
        write(folder, f"h{h}.json", host_report(f"host-{h}", [target(f"npu:{c}", **changes) for c in range(8)]))
        for h in range(hosts)
    ]


# --- the fleet of 64 hosts x 8 cards ------------------------------------------------------------


def test_64_hosts_x_8_cards_name_exactly_the_bad_and_the_slow_cards(tmp_path, capsys):
    rng = random.Random(12)
    bad = {("host-07", "npu:3", "fp32"), ("host-33", "npu:0", "fp16"), ("host-63", "npu:7", "fp32")}
    slow = {  # (host, card, dtype) -> factor on the fleet's latency
        ("host-02", "npu:5", "fp32"): 1.5,
        ("host-19", "npu:1", "fp32"): 1.3,
        ("host-40", "npu:6", "fp32"): 1.15,
        ("host-33", "npu:0", "fp16"): 1.4,  # failing and slow: named in both
        ("host-50", "npu:2", "fp16"): 1.5,  # 3.0 ms: still faster than any fp32 card, slow for an fp16 one
    }
    not_slow = {("host-11", "npu:4", "fp32"): 1.09, ("host-12", "npu:4", "fp32"): 0.6}  # under 10 %; faster
    for h in range(64):
        host, targets = f"host-{h:02d}", []
        for c in range(8):
            for dtype in ("fp32", "fp16"):
                key = (host, f"npu:{c}", dtype)
                factor = slow.get(key) or not_slow.get(key) or 1 + rng.gauss(0, 0.02)  # normal run-to-run noise
                rel = rng.uniform(1e-6, 3e-6) if key not in bad else 0.2
                targets.append(
                    target(
                        f"npu:{c}", dtype, verdict="fail" if key in bad else "pass", ms=BASE_MS[dtype] * factor, rel=rel
                    )
                )
        write(tmp_path / "reports" / host, "acceptance_report.json", host_report(host, targets))

    code, out, err = merge_cli(capsys, str(tmp_path / "reports"), "-o", str(tmp_path / "fleet.json"))
    assert code == 1 and err == ""
    document = json.loads((tmp_path / "fleet.json").read_text())
    schemas.validate(document, "fleet-report", source="fleet.json")
    assert document["kind"] == "fleet" and document["verdict"] == "fail" and len(document["groups"]) == 1
    rows = document["groups"][0]["cards"]
    assert len(rows) == 64 * 8 * 2 and all(set(r) == ROW_KEYS for r in rows)

    def named(rows):
        return {(r["host"], r["card"], r["target"].split("/")[1]) for r in rows}

    assert named(r for r in rows if r["verdict"] == "fail") == bad
    assert named(r for r in rows if r["latency_outlier"]) == set(slow)
    assert named(rows[: len(bad)]) == bad, "failing cards first"
    assert named(rows[len(bad) : len(bad) + 4]) == set(slow) - bad, "then the slow ones"
    by_key = {(r["host"], r["card"], r["target"].split("/")[1]): r for r in rows}
    assert by_key[("host-07", "npu:3", "fp32")]["worst_metric"] == {
        "name": "rel_l2_error",
        "value": 0.2,
        "image": "dog.jpg",
    }
    assert by_key[("host-11", "npu:4", "fp32")]["robust_z"] > fleet.OUTLIER_Z, "z alone would flag 9 %"
    assert by_key[("host-12", "npu:4", "fp32")]["robust_z"] < -fleet.OUTLIER_Z, "faster is never flagged"
    assert document["counts"]["verdicts"] == {"pass": 1024 - 3, "fail": 3} and document["counts"]["hosts"] == 64

    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("verdict "))
    failing = [line.split()[1:3] for line in lines[header + 1 : header + 4]]
    assert sorted(failing) == sorted([h, c] for h, c, _ in bad) and all(
        line.startswith("FAIL") for line in lines[header + 1 : header + 4]
    )
    outliers = [line for line in lines if line.startswith("latency outlier:")]
    assert len(outliers) == len(slow) and "host 'host-02' card npu:5 (npu:5/fp32)" in out and "+50%" in out
    assert lines[-1].startswith("verdict: FAIL (3 of 1024 card targets failed, 5 latency outliers; 64 report(s)")


def test_a_passing_fleet_exits_0_and_prints_only_what_needs_a_look(tmp_path, capsys):
    small_fleet(tmp_path / "r")
    code, out, _ = merge_cli(capsys, str(tmp_path / "r"), "-o", str(tmp_path / "fleet.json"))
    assert code == 0 and "verdict: PASS (0 of 32 card targets failed, 0 latency outliers" in out
    assert "32 other card target(s) pass" in out and "PASS  host-0" not in out
    code, out, _ = merge_cli(capsys, str(tmp_path / "r"), "--all", "-o", str(tmp_path / "fleet.json"))
    assert code == 0 and sum(line.startswith("PASS") for line in out.splitlines()) == 32


def test_output_dash_prints_the_document_alone(tmp_path, capsys):
    small_fleet(tmp_path / "r", hosts=1)
    code, out, err = merge_cli(capsys, str(tmp_path / "r"), "-o", "-")
    assert code == 0 and json.loads(out)["kind"] == "fleet" and "verdict: PASS" in err


def test_the_fleet_document_in_its_folder_is_not_merged_again(tmp_path, capsys):
    small_fleet(tmp_path, hosts=2)
    for _ in range(2):
        code, _, err = merge_cli(capsys, str(tmp_path), "-o", str(tmp_path / "fleet.json"))
        assert code == 0, err
    document = json.loads((tmp_path / "fleet.json").read_text())
    assert document["counts"]["reports"] == 2
    code, _, err = merge_cli(capsys, str(tmp_path / "fleet.json"), "-o", str(tmp_path / "again.json"))
    assert code == 2 and "is a fleet report" in err


# --- the outlier rule ------------------------------------------------------------------------------


def test_robust_z_and_its_fallbacks():
    zs, median, mad, scale = fleet.robust_z([10.0, 10.2, 9.8, 10.1, 9.9, 15.0])
    assert (median, scale) == (10.05, "MAD") and mad == pytest.approx(0.15)
    assert zs[-1] == pytest.approx(0.6745 * 4.95 / 0.15) and max(abs(z) for z in zs[:-1]) < 1.2
    zs, _, mad, scale = fleet.robust_z([10.0] * 9 + [20.0])  # more than half equal: MAD 0
    assert mad == 0 and scale == "mean absolute deviation" and zs[-1] == pytest.approx(10 / (1.253314 * 1.0))
    assert fleet.robust_z([7.0] * 5)[0] == [0.0] * 5 and fleet.robust_z([7.0] * 5)[3] == "none"


def test_the_outlier_rule_needs_both_the_z_score_and_ten_percent():
    assert fleet.is_outlier(12.0, 5.0, 10.0)
    assert not fleet.is_outlier(10.5, 50.0, 10.0), "a tight fleet: huge z, 5 % slower"
    assert not fleet.is_outlier(13.0, 2.0, 10.0), "a noisy fleet: 30 % slower, within its spread"
    assert not fleet.is_outlier(5.0, -50.0, 10.0), "faster"


def test_too_few_cards_to_compare_have_no_z(tmp_path):
    paths = [write(tmp_path, "a.json", host_report("a", [target("npu:0", ms=4.0), target("npu:1", ms=9.0)]))]
    row = fleet.merge(paths).groups[0].cards[0]
    assert row.robust_z is None and not row.latency_outlier


def test_like_is_compared_with_like(tmp_path):
    """An fp16 card is compared with fp16 cards, a 910A with 910As: pooled with fp32 cards on a
    910B3, the slow fp16 card would hide and the slower 910A model would be flagged."""
    fp32 = [target(f"npu:{c}", ms=4.0 + c * 0.01) for c in range(8)]
    fp16 = [target(f"npu:{c}", "fp16", ms=2.0 + c * 0.01) for c in range(7)] + [target("npu:7", "fp16", ms=3.0)]
    other_model = [dict(target(f"npu:{c}", ms=8.0 + c * 0.01), device_name="Ascend910A") for c in range(3)]
    merged = fleet.merge(
        [
            write(tmp_path, "a.json", host_report("a", fp32 + fp16)),
            write(tmp_path, "b.json", host_report("b", other_model)),
        ]
    )
    assert [(r.card, r.target) for r in merged.groups[0].cards if r.latency_outlier] == [("npu:7", "npu:7/fp16")]
    labels = sorted(p.label for p in merged.groups[0].populations)
    assert labels == ["npu/fp16 on Ascend910B3", "npu/fp32 on Ascend910A", "npu/fp32 on Ascend910B3"]

    def flagged(targets):
        values = [t["latency_ms"]["median"] for t in targets]
        zs, median, _, _ = fleet.robust_z(values)
        return [v for v, z in zip(values, zs) if fleet.is_outlier(v, z, median)]

    assert flagged(fp32 + fp16) == [], "pooled with fp32, the slow fp16 card hides"
    assert len(flagged(fp32 + other_model)) == 3, "pooled with the 910B3, the 910A cards are flagged"


# --- groups kept apart -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"weights": {**WEIGHTS, "tensor_sha256": "1a2b" + "0" * 60}}, "weights '1a2b"),
        ({"profile": "strict"}, "profile 'strict' (not 'default')"),
        ({"machine": {**BASE["machine"], "host": "x", "resnet34_npu": "0.2.0"}}, "resnet34-npu '0.2.0' (not '0.1.0')"),
        ({"schema_version": 1}, "schema_version 1 (not 2)"),
    ],
)
def test_reports_that_differ_are_kept_apart_and_every_group_counts(tmp_path, capsys, change, words):
    small_fleet(tmp_path / "r", hosts=4)
    slow_and_failing = [target(f"npu:{c}", ms=8.0, verdict="fail" if c == 0 else "pass") for c in range(8)]
    write(tmp_path / "r", "other.json", host_report("x", slow_and_failing, **change))
    code, out, _ = merge_cli(capsys, str(tmp_path / "r"), "-o", str(tmp_path / "fleet.json"))
    document = json.loads((tmp_path / "fleet.json").read_text())
    first, second = document["groups"]
    assert (first["counts"]["reports"], second["counts"]["reports"]) == (4, 1)
    assert words in second["apart"] and words in out and "2 groups kept apart" in out
    assert not any(r["latency_outlier"] for g in document["groups"] for r in g["cards"]), (
        "8 ms is not compared with 4 ms"
    )
    assert (first["verdict"], second["verdict"], document["verdict"], code) == ("pass", "fail", "fail", 1)


def test_the_same_reports_are_one_group(tmp_path):
    merged = fleet.merge(small_fleet(tmp_path, hosts=3))
    assert len(merged.groups) == 1 and merged.notes == () and merged.groups[0].apart is None


# --- interrupted and not-run runs ---------------------------------------------------------------


def test_an_interrupted_run_is_never_a_pass(tmp_path, capsys):
    small_fleet(tmp_path / "r", hosts=3)
    write(tmp_path / "r", "unfinished.json", unfinished_report("pytest"))
    code, out, _ = merge_cli(capsys, str(tmp_path / "r"), "-o", str(tmp_path / "fleet.json"))
    document = json.loads((tmp_path / "fleet.json").read_text())
    assert code == 1 and document["verdict"] == "interrupted" and "INTERRUPTED" in out
    assert [r["verdict"] for g in document["groups"] for r in g["cards"] if r["card"] is None] == ["interrupted"]

    half = host_report("h", [target("npu:0"), target("npu:1", verdict="fail")], verdict="interrupted", interrupted=True)
    rows = fleet.merge([write(tmp_path, "half.json", half)]).groups[0].cards
    assert [(r.card, r.verdict) for r in rows] == [("npu:1", "fail"), ("npu:0", "interrupted")]


def test_a_run_that_compared_nothing_is_not_run(tmp_path, capsys):
    small_fleet(tmp_path / "r", hosts=2)
    skipped = host_report("n", [{"name": "npu:0/fp32", "skipped": "no NPU", "verdict": "skipped", "images": []}])
    write(tmp_path / "r", "n.json", {**skipped, "verdict": "not run"})
    code, out, _ = merge_cli(capsys, str(tmp_path / "r"), "-o", str(tmp_path / "fleet.json"))
    assert code == 1 and json.loads((tmp_path / "fleet.json").read_text())["verdict"] == "not run"
    assert "is NOT RUN: the run compared nothing" in out
    row = fleet.merge([tmp_path / "r" / "n.json"]).groups[0].cards[0]
    assert (row.card, row.verdict, row.worst_metric, row.latency_median_ms) == ("npu:0", "skipped", None, None)


def test_a_report_failing_outside_its_cards_fails_the_fleet(tmp_path):
    document = host_report("t", [target("npu:0")], verdict="fail", tests=[{"test": "t::x", "outcome": "failed"}])
    merged = fleet.merge([write(tmp_path, "t.json", document)])
    assert merged.verdict == "fail" and "1 test(s) failed" in merged.notes[0]


def test_nan_is_the_worst_metric(tmp_path):
    bad = target("npu:0", verdict="fail")
    bad["images"][0]["metrics"]["rel_l2_error"] = "nan"
    worst = fleet.merge([write(tmp_path, "a.json", host_report("a", [bad]))]).groups[0].cards[0].worst_metric
    assert worst.image == "cat.jpg" and worst.value != worst.value


# --- refused files ----------------------------------------------------------------------------------


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    good = dumps(host_report("g", [target("npu:0")]))
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "truncated": ("truncated.json", good[: len(good) // 2], "is truncated"),
        "truncated in a literal": ("literal.json", '{"schema_version": 2, "interrupted": tru', "is truncated"),
        "not JSON": ("text.json", "hello, world\n", "is not JSON (line 1, column 1"),
        "empty": ("empty.json", "", "is empty"),
        "not UTF-8": ("latin.json", b'{"a": "\xe9"}', "not UTF-8"),
        "NaN token": ("nan.json", good.replace('"rel_l2_error": 1e-06', '"rel_l2_error": NaN'), "token NaN"),
        "foreign JSON": ("benchmark.json", '{"machine_info": {}, "benchmarks": []}', "not a resnet34-npu report"),
        "a list": ("list.json", "[1, 2]", "the JSON is list, not an object"),
        "future version": (
            "future.json",
            good.replace(f'"schema_version": {SCHEMA_VERSION}', f'"schema_version": {SCHEMA_VERSION + 1}'),
            f"schema_version {SCHEMA_VERSION + 1}; this one reads up to {SCHEMA_VERSION}",
        ),
        "bad verdict": (
            "verdict.json",
            dumps(host_report("g", [dict(target("npu:0"), verdict="maybe")])),
            "$.targets[0].verdict is 'maybe', expected one of \"pass\"",
        ),
        "bad latency": (
            "latency.json",
            good.replace('"median": 4.0', '"median": "fast"'),
            "$.targets[0].latency_ms.median is 'fast', expected a number",
        ),
        "no host": (
            "nohost.json",
            good.replace('"host": "g"', '"host": 7'),
            "$.machine.host is 7, expected string or null",
        ),
        "too deep": ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    }
    out = {}
    for label, (name, text, words) in files.items():
        path = folder / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        out[label] = (path, words)
    return out


def test_every_bad_file_is_refused_with_one_line_and_exit_2(tmp_path, capsys):
    good = write(tmp_path, "good.json", host_report("g", [target("npu:0")]))
    for label, (path, words) in _bad_files(tmp_path / "bad").items():
        code, out, err = merge_cli(capsys, str(good), str(path), "-o", str(tmp_path / "fleet.json"))
        lines = err.strip().splitlines()
        assert code == 2 and out == "", label
        assert len(lines) == 2 and str(path) in lines[0] and words in lines[0], (label, err)
        assert "Traceback" not in err and "--skip-invalid" in lines[1], label
        assert not (tmp_path / "fleet.json").exists(), f"{label}: nothing is written"


def test_skip_invalid_merges_the_others_and_lists_the_refused(tmp_path, capsys):
    small_fleet(tmp_path / "r", hosts=2)
    bad = _bad_files(tmp_path / "r" / "bad")
    code, out, err = merge_cli(capsys, str(tmp_path / "r"), "--skip-invalid", "-o", str(tmp_path / "fleet.json"))
    document = json.loads((tmp_path / "fleet.json").read_text())
    assert code == 0 and err == "" and document["verdict"] == "pass" and document["counts"]["reports"] == 2
    refused = {r["path"]: r["reason"] for r in document["refused"]}
    assert refused.keys() == {str(p) for p, _ in bad.values()}
    assert all(words in refused[str(p)] for p, words in bad.values())
    assert out.count("refused report ") == len(bad) and f"{len(bad)} refused)" in out


def test_skip_invalid_with_nothing_valid_is_still_bad_input(tmp_path, capsys):
    _bad_files(tmp_path)
    code, _, err = merge_cli(capsys, str(tmp_path), "--skip-invalid", "-o", str(tmp_path / "out" / "fleet.json"))
    assert code == 2 and "none of the" in err and not (tmp_path / "out").exists()


def test_a_size_cap_and_missing_paths(tmp_path, capsys, monkeypatch):
    path = small_fleet(tmp_path, hosts=1)[0]
    monkeypatch.setattr(fleet_read, "MAX_REPORT_BYTES", 100)  # the cap read_text reads
    code, _, err = merge_cli(capsys, str(path), "-o", str(tmp_path / "f.json"))
    assert code == 2 and "is larger than" in err
    for argv, words in [
        ([str(tmp_path / "absent.json")], "no such file or folder"),
        ([str(tmp_path / "empty_dir")], "holds no *.json file"),
    ]:
        (tmp_path / "empty_dir").mkdir(exist_ok=True)
        code, _, err = merge_cli(capsys, *argv, "--skip-invalid", "-o", str(tmp_path / "f.json"))
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.json")
    with pytest.raises(fleet.RefusedReports, match="is not a regular file"):
        fleet.merge([tmp_path / "pipe.json"])


def test_the_document_is_written_atomically(tmp_path, capsys):
    small_fleet(tmp_path / "r", hosts=1)
    write_json_atomic(tmp_path / "fleet.json", {"old": 1})
    code, _, _ = merge_cli(capsys, str(tmp_path / "r"), "-o", str(tmp_path / "fleet.json"))
    assert code == 0 and json.loads((tmp_path / "fleet.json").read_text())["kind"] == "fleet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.json", "r"], "no temporary file is left"
