"""The acceptance report's consistency checks: card-to-card over the verdict records (digests, as
they cross pytest-xdist), a failing run-to-run and a failing burn-in each failing their target
even when it passes against the CPU; then the same end to end, with pytester, on the emulated
Ascend host with a card that flips a bit (``5:flip``) and one that is 1 ulp off (``6:ulp``), and
``--r34-burn-in``'s bad values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet34_npu.core import schemas
from resnet34_npu.model.weights import cache_dir
from resnet34_npu.suite.acceptance import acceptance_report, card_groups
from resnet34_npu.suite.state import Suite, pack_output, unpack_output
from resnet34_npu.targets.matrix import choose_targets
from resnet34_npu.targets.timing import digest
from tests.unit.suite import test_plugin

REPO = Path(__file__).resolve().parents[3]
CAT = str(REPO / "fixtures" / "images" / "cat.jpg")
CACHE = cache_dir()
CARDS = ["npu:1/fp32", "npu:5/fp32", "npu:6/fp32", "npu:2/fp32"]
GOOD = np.linspace(-3.0, 3.0, 1000, dtype=np.float32)
OFF = GOOD.copy()
OFF[7] = np.nextafter(OFF[7], np.float32(np.inf))  # one logit 1 ulp off


@pytest.fixture(scope="module")
def real_record() -> dict:
    """A verdict record as the real ``Suite.record`` makes it: cpu/fp32 on the cat photo at
    batch 1, timed (the timed batch is the one card-to-card compares)."""
    suite = Suite(
        targets=choose_targets(["cpu"]),
        weights="seeded",
        images=[Path(CAT)],
        profile="default",
        fp64_truth=False,
        report=None,
        iters=1,
    )
    case = suite.case("cpu/fp32", (Path(CAT),))
    return suite.record("verdict", "cpu/fp32", case, batch=1)


@pytest.fixture(scope="module")
def record(real_record):
    """A verdict record on card ``target``: ``Suite.record``'s own record, with the card's name and
    the card's outputs (``logits``, then ``timed`` runs) in the form Suite.record gives them."""
    outputs = real_record["outputs"]
    assert outputs is not None, "Suite.record gives no outputs: card-to-card would compare nothing"
    (image,) = (key for key in outputs["digests"] if not key.endswith(" timed"))
    assert set(outputs["digests"]) == {image, f"{image} timed"} and set(outputs["arrays"]) == {
        key for keys in outputs["digests"].values() for key in keys
    }, outputs["digests"]

    def make(target: str, logits: np.ndarray, timed: list[np.ndarray] = (), run_to_run: dict | None = None) -> dict:
        keys = [digest(torch.from_numpy(o)) for o in (logits, *timed)]
        device = target.partition("/")[0]
        return {
            **real_record,
            "target": target,
            "target_info": {
                **real_record["target_info"],
                "name": target,
                "device": device,
                "device_name": "Ascend910B3",
            },
            "latency_ms": real_record["latency_ms"] if run_to_run is not None else None,
            "run_to_run": run_to_run,
            "outputs": {
                "digests": {image: keys[:1], **({f"{image} timed": keys[1:]} if timed else {})},
                "arrays": {key: pack_output(o) for key, o in zip(keys, (logits, *timed))},
            },
        }

    return make


def entries(*records: dict) -> list[dict]:
    return [
        {
            "test": f"t[{r['target']}]",
            "outcome": "passed",
            "params": {"r34_target": r["target"]},
            "message": "",
            "records": [r],
        }
        for r in records
    ]


def report(found: list[dict], burn_in: dict | None = None) -> dict:
    suite = Suite(targets=[], weights="seeded", images=[], profile="default", fp64_truth=False, report=None, iters=0)
    return acceptance_report(suite, found, burn_in=burn_in)


def test_outputs_travel_as_text_and_come_back_bit_for_bit():
    assert unpack_output(pack_output(OFF)).tobytes() == OFF.tobytes()
    assert json.dumps(pack_output(GOOD))  # a record is JSON


def test_healthy_cards_agree_and_give_no_alarm(record):
    found = entries(*(record(name, GOOD, [GOOD, GOOD]) for name in CARDS))
    (group,) = card_groups(found)
    assert group.passed and group.cards == ("npu:1", "npu:5", "npu:6", "npu:2")
    doc = report(found)
    assert doc["verdict"] == "pass" and not any("card_outlier" in t for t in doc["targets"])
    assert doc["card_to_card"][0]["passed"] is True


def test_a_card_off_by_one_ulp_is_named_and_fails_though_it_passes_against_the_cpu(record):
    found = entries(record("npu:1/fp32", GOOD), record("npu:6/fp32", OFF), record("npu:2/fp32", GOOD))
    (group,) = card_groups(found)
    assert [(o.card, o.images, o.max_ulp) for o in group.outliers] == [("npu:6", ("cat.jpg",), 1)]
    doc = report(found)
    by = {t["name"]: t for t in doc["targets"]}
    assert doc["verdict"] == "fail" and by["npu:6/fp32"]["verdict"] == "fail"
    assert by["npu:6/fp32"]["card_outlier"]["max_ulp"] == 1
    assert by["npu:1/fp32"]["verdict"] == by["npu:2/fp32"]["verdict"] == "pass"
    assert all(c["verdict"] == "pass" for c in by["npu:6/fp32"]["images"])  # the tolerance passed


def test_a_card_wrong_once_in_its_timed_runs_is_named(record):
    found = entries(
        record("npu:1/fp32", GOOD, [GOOD, GOOD]),
        record("npu:5/fp32", GOOD, [OFF, GOOD]),
        record("npu:2/fp32", GOOD, [GOOD]),
    )
    (group,) = card_groups(found)
    assert [(o.card, o.images) for o in group.outliers] == [("npu:5", ("cat.jpg timed",))]


def test_cpu_targets_and_lone_cards_are_not_compared(record):
    found = entries(record("cpu/fp32", GOOD), record("npu:1/fp32", GOOD), record("npu:1/fp16", OFF))
    assert card_groups(found) == []


def test_a_failing_run_to_run_fails_its_target(record):
    failing = {"policy": "bitwise", "reason": "r", "outputs": 3, "distinct": 2, "max_abs": 1e-7, "max_ulp": 1}
    found = entries(
        record("npu:1/fp32", GOOD, run_to_run={**failing, "distinct": 1, "passed": True}),
        record("npu:5/fp32", GOOD, run_to_run={**failing, "first_mismatch": 1, "passed": False}),
    )
    by = {t["name"]: t["verdict"] for t in report(found)["targets"]}
    assert by == {"npu:1/fp32": "pass", "npu:5/fp32": "fail"}
    tolerated = {**failing, "policy": "tolerance", "first_mismatch": 1, "passed": True}
    assert report(entries(record("npu:5/fp32", GOOD, run_to_run=tolerated)))["verdict"] == "pass"


def burn(status: str, card: str = "npu:5/fp32", outliers: list | None = None) -> dict:
    row = {"iterations": 6, "first_mismatch_s": None, "throughput_first_ips": 1.0, "throughput_last_ips": 1.0}
    return {
        "seconds": 3.0,
        "elapsed_s": 3.0,
        "status": status,
        "cards": [
            {"card": "npu:1/fp32", "status": "ok", "mismatches": 0, "error": "", **row},
            {"card": card, "status": "ok" if status == "pass" else "mismatch", "mismatches": 5, "error": "", **row},
        ],
        "card_to_card": [
            {
                "group": "Ascend910B3 fp32",
                "cards": ["npu:1", "npu:5"],
                "passed": not outliers,
                "outliers": outliers or [],
                "no_majority": [],
            }
        ],
    }


def test_the_burn_in_fails_the_card_it_names_and_no_other(record):
    found = entries(record("npu:1/fp32", GOOD), record("npu:5/fp32", GOOD))
    assert report(found, burn("pass"))["verdict"] == "pass"
    doc = report(found, burn("fail"))
    by = {t["name"]: t for t in doc["targets"]}
    assert doc["verdict"] == "fail" and by["npu:5/fp32"]["burn_in"]["status"] == "mismatch"
    assert by["npu:1/fp32"]["verdict"] == "pass"
    wrong = [{"card": "npu:5", "images": ["batch of 1"], "max_ulp": 1, "max_abs": 1e-7}]
    same_way = report(found, burn("fail", card="npu:1/fp32", outliers=wrong))  # its own loop agrees
    assert {t["name"]: t["verdict"] for t in same_way["targets"]}["npu:5/fp32"] == "fail"
    assert report(found, {**burn("pass"), "status": "interrupted"})["verdict"] == "interrupted"


suite = test_plugin.suite  # the plugin tests' pytester fixture (the repository's plugin, real weights)


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--r34-burn-in=0"], {}), (["--r34-burn-in=soon"], {}), (["--r34-burn-in=-5"], {}), ([], {"R34_BURN_IN": "nan"})],
)
def test_bad_burn_in_lengths_are_usage_errors(suite, monkeypatch, args, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = suite.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--r34-burn-in" in result.stderr.str() and "Traceback" not in result.stderr.str()


def emulated(suite, monkeypatch, faults: str, *args: str):
    """The four cards' batch-1 verdicts on the emulated 8-card host (a fresh process: the
    emulation is process-wide), and the acceptance report."""
    monkeypatch.setenv("R34_EMULATE_ASCEND", "Ascend910B3:8")
    monkeypatch.setenv("R34_EMULATED_FAULTS", faults)
    targets = [f"--r34-target={t}" for t in CARDS]
    result = suite.runpytest_subprocess(
        *targets, f"--r34-images={CAT}", "-k", "test_verdict and batch1", "--r34-report=r.json", *args
    )
    return result, json.loads((suite.path / "r.json").read_text())


@pytest.mark.slow
@pytest.mark.subprocess
def test_pytest_names_both_silent_faults_run_to_run_and_card_to_card(suite, monkeypatch):
    result, doc = emulated(suite, monkeypatch, "5:flip,6:ulp", "--r34-iters=2")
    result.assert_outcomes(passed=4)  # every tolerance passes ...
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # ... and the run fails
    result.stdout.fnmatch_lines(
        [
            "resnet34-npu: run-to-run FAIL npu:5/fp32: 2 distinct outputs in 3 runs*",
            "resnet34-npu: card-to-card FAIL Ascend910B3 fp32: npu:5 differs * on cat.jpg timed*",
            "resnet34-npu: card-to-card FAIL Ascend910B3 fp32: npu:6 differs * on cat.jpg, cat.jpg timed*",
        ]
    )
    schemas.validate(doc, "acceptance-report", source="r.json")
    by = {t["name"]: t for t in doc["targets"]}
    assert doc["verdict"] == "fail"
    assert {n: t["verdict"] for n, t in by.items()} == {
        "npu:1/fp32": "pass",
        "npu:5/fp32": "fail",
        "npu:6/fp32": "fail",
        "npu:2/fp32": "pass",
    }
    assert [o["card"] for o in doc["card_to_card"][0]["outliers"]] == ["npu:5", "npu:6"]


@pytest.mark.slow
@pytest.mark.subprocess
def test_pytest_burn_in_names_both_faulty_cards_and_passes_healthy_ones(suite, monkeypatch):
    result, doc = emulated(suite, monkeypatch, "5:flip,6:ulp", "--r34-iters=0", "--r34-burn-in=3")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*resnet34-npu burn-in*", "burn-in: fail after *, 4 cards", "burn-in FAIL npu:5/fp32: mismatch*"]
    )
    schemas.validate(doc, "acceptance-report", source="r.json")
    cards = {c["card"]: c["status"] for c in doc["burn_in"]["cards"]}
    assert cards == {"npu:1/fp32": "ok", "npu:5/fp32": "mismatch", "npu:6/fp32": "ok", "npu:2/fp32": "ok"}
    assert [o["card"] for g in doc["burn_in"]["card_to_card"] for o in g["outliers"]] == ["npu:6"]
    assert {t["name"]: t["verdict"] for t in doc["targets"]} == {
        "npu:1/fp32": "pass",
        "npu:5/fp32": "fail",
        "npu:6/fp32": "fail",
        "npu:2/fp32": "pass",
    }
    healthy, doc = emulated(suite, monkeypatch, "", "--r34-iters=0", "--r34-burn-in=2")
    assert healthy.ret == pytest.ExitCode.OK, healthy.stdout.str()
    assert doc["verdict"] == "pass" and doc["burn_in"]["status"] == "pass"
    assert all(c["status"] == "ok" and c["iterations"] >= 2 for c in doc["burn_in"]["cards"])


@pytest.mark.slow
def test_burn_in_on_a_cpu_only_run_loads_the_cpu_target(suite):
    result = suite.runpytest_inprocess(
        "--r34-target=cpu", f"--r34-images={CAT}", "--r34-iters=0", "-k", "test_verdict and batch1", "--r34-burn-in=1"
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["burn-in: pass after *, 1 cards", "burn-in cpu/fp32: ok, * iterations, 0 mismatches*"])
    doc = json.loads((suite.path / "acceptance_report.json").read_text())
    assert doc["burn_in"]["cards"][0]["card"] == "cpu/fp32" and doc["card_to_card"] == []


def test_two_cards_that_disagree_fail_both_unless_one_already_fails_against_the_cpu(record):
    """No majority between two cards: which is wrong is unknown, so both fail; but where one of
    them fails against the CPU that failure explains the disagreement, and the other card stands."""
    both_pass = report(entries(record("npu:1/fp32", GOOD), record("npu:2/fp32", OFF)))
    assert {t["name"]: t["verdict"] for t in both_pass["targets"]} == {"npu:1/fp32": "fail", "npu:2/fp32": "fail"}
    bad = record("npu:2/fp32", OFF)
    bad["case"] = {**bad["case"], "verdict": "fail"}
    explained = report(entries(record("npu:1/fp32", GOOD), bad))
    assert {t["name"]: t["verdict"] for t in explained["targets"]} == {"npu:1/fp32": "pass", "npu:2/fp32": "fail"}
