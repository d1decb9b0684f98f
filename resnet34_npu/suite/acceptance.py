"""The acceptance report: the compare report's schema built from the records of every test of a
pytest run (from every xdist worker), plus each test's outcome."""

from __future__ import annotations

from typing import Any

from resnet34_npu.judge.consistency import CardToCard, compare_groups, fail_cards, group_of, is_card
from resnet34_npu.judge.criteria import Status, worst_status
from resnet34_npu.judge.nextsteps import add_next_steps
from resnet34_npu.reports.report import build_report
from resnet34_npu.suite.state import Suite, unpack_output
from resnet34_npu.targets import determinism
from resnet34_npu.targets.timing import Timing, speedup


def acceptance_report(
    suite: Suite,
    entries: list[dict[str, Any]],
    *,
    interrupted: bool = False,
    left_threads: dict[str, str] | None = None,
    burn_in: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The compare report's schema, built from the records of every test (from every xdist
    worker), plus each test's outcome. A target nothing was compared on is "not run" (or
    "skipped", with the reason); a run that compared nothing is "not run" as a whole; any
    failed test makes the whole report "fail"; a session that did not finish (interrupted, or
    stopped by an internal error) is "interrupted" whatever ran, with what ran. A target in
    ``left_threads`` (name -> line) left non-daemon threads running: it fails, with the line.
    A target whose run-to-run check failed (``bitwise``, distinct outputs), or a card whose
    outputs differ from its group's majority (:func:`card_groups`), fails even when it passes
    against the CPU; so does a card that failed the ``burn_in`` (``BurnIn.to_dict()``)."""
    targets: dict[str, dict[str, Any]] = {
        choice.name: {
            "name": choice.name,
            "skipped": suite.skip_reason(choice) or None,
            "images": [],
            "checks": [],
        }
        for choice in suite.targets
    }
    reference: dict[str, Any] = {}
    weights: dict[str, Any] = {"spec": suite.weights}
    reference_latency: dict[str, Any] | None = None
    for entry in entries:
        for record in entry["records"]:
            target = targets.setdefault(
                record["target"], {"name": record["target"], "skipped": None, "images": [], "checks": []}
            )
            for key, value in record["target_info"].items():
                target.setdefault(key, value)
            reference = reference or record["reference"]
            weights = record["weights"]
            if record["kind"] == "dataset":
                target["dataset"] = record["dataset"]
                target.setdefault("dataset_info", record.get("dataset_info"))
            elif record["kind"] == "verdict":
                target["images"].append(record["case"])
                if record["case"]["batch_size"] == 1 and record["latency_ms"] and "latency_ms" not in target:
                    target["latency_ms"] = record["latency_ms"]
                    target["run_to_run"] = record.get("run_to_run")
                    reference_latency = reference_latency or record["reference_latency_ms"]
            else:
                target["checks"].append(
                    {
                        "kind": record["kind"],
                        "test": entry["test"],
                        **record["case"],
                        **({"nondeterministic": record["nondeterministic"]} if "nondeterministic" in record else {}),
                    }
                )
    skipped_at_run_time: dict[str, str] = {}  # a backend this host cannot run skips a target's tests: say why
    for entry in entries:
        name = entry["params"].get("r34_target")
        if name and entry["outcome"] == "skipped":
            skipped_at_run_time.setdefault(name, entry["message"] or "skipped")
        elif name:
            skipped_at_run_time[name] = ""  # some test of it did not skip: not "skipped" as a whole
    for target in targets.values():
        statuses = [c["verdict"] for c in target["images"] + target["checks"]]
        if target.get("dataset"):
            statuses.append(target["dataset"]["verdict"])
        if not statuses and not target["skipped"] and skipped_at_run_time.get(target["name"]):
            target["skipped"] = skipped_at_run_time[target["name"]]
        target["verdict"] = (
            worst_status(statuses) if statuses else (Status.SKIPPED if target["skipped"] else Status.NOT_RUN)
        )
        unfinished = (target.get("dataset") or {}).get("verdict")
        if unfinished in (Status.INTERRUPTED, Status.NOT_RUN) and target["verdict"] != Status.FAIL:
            target["verdict"] = unfinished  # a dataset not compared to its end is not a pass
        choice = suite.choice(target["name"])
        if choice is not None and suite.missing_required(choice):
            target["verdict"], target["required_missing"] = Status.FAIL, suite.missing_required(choice)
        elif choice is not None and suite.missing_named(choice):
            target["verdict"], target["named_missing"] = Status.FAIL, suite.missing_named(choice)
        latency = target.setdefault("latency_ms", None)
        timing = None if not latency else Timing.from_dict(latency)
        target["throughput_ips"] = None if timing is None or timing.median <= 0 else timing.throughput_ips
        target["speedup_vs_reference"] = speedup(
            Timing.from_dict(reference_latency) if reference_latency else None, timing
        )
    if reference_latency is not None:
        reference["latency_ms"] = reference_latency
    for entry in entries:  # a card that hung, crashed or raised a device error fails its target, named
        failure, name = entry.get("card_failure"), entry["params"].get("r34_target")
        if failure and name in targets:
            targets[name].setdefault("card_failure", failure)
            targets[name]["verdict"] = Status.FAIL
    cards = card_groups(entries)
    fail_cards(targets, cards, burn_in)
    for name, line in (left_threads or {}).items():  # its threads would have kept the process from exiting
        if name in targets:
            targets[name]["verdict"], targets[name]["left_threads"] = Status.FAIL, line
    tested = {
        c.kind
        for c in suite.targets
        if targets[c.name]["images"] or targets[c.name]["checks"] or targets[c.name].get("dataset")
    }
    for choice in suite.targets:  # a required kind must have been tested at least once
        target = targets[choice.name]
        if choice.kind in suite.required and choice.kind not in tested and target["verdict"] != Status.FAIL:
            target["verdict"] = Status.FAIL
            target["required_missing"] = f"required (--r34-require={choice.kind}) but not tested in this run"
    add_next_steps(targets.values())
    tests = [{k: v for k, v in e.items() if k not in ("records", "card_failure")} for e in entries]
    document = build_report(
        profile=suite.profile,
        weights=weights,
        reference=reference,
        targets=list(targets.values()),
        extra={
            "fp64_truth": suite.fp64_truth,
            "images": [str(p) for p in suite.images],
            "tests": tests,
            "determinism": determinism.recorded(),
            "card_to_card": [g.to_dict() for g in cards],
            "burn_in": burn_in,
        },
    )
    interrupted = interrupted or (burn_in or {}).get("status") == "interrupted"
    document["interrupted"] = interrupted
    if interrupted:
        document["verdict"] = Status.INTERRUPTED
    elif any(t["outcome"] == "failed" for t in tests):
        document["verdict"] = Status.FAIL
    elif document["verdict"] != Status.FAIL and not any(
        t["images"] or t["checks"] or t.get("dataset") for t in targets.values()
    ):
        document["verdict"] = Status.NOT_RUN
    return document


def card_groups(entries: list[dict[str, Any]]) -> list[CardToCard]:
    """Card-to-card over the verdict records of every test, as ``compare`` does
    (:func:`~resnet34_npu.judge.consistency.card_groups`): the cards of one device model and
    target, their output digests compared input by input (``Suite.outputs``)."""
    groups: dict[str, dict[str, dict[str, list[str]]]] = {}
    arrays = {}
    for entry in entries:
        for record in entry["records"]:
            found, info = record.get("outputs"), record["target_info"]
            if record["kind"] != "verdict" or not found or not is_card(str(info.get("device", "custom"))):
                continue
            group = group_of(record["target"], str(info.get("device_name", "")), str(info.get("dtype", "")))
            card = groups.setdefault(group, {}).setdefault(str(info["device"]), {})
            for image, digests in found["digests"].items():
                if "(batch " in image:
                    continue  # batch 1 and the timed runs: what test_card_to_card and compare judge
                card.setdefault(image, []).extend(digests)
            arrays.update({key: unpack_output(text) for key, text in found["arrays"].items()})
    return compare_groups(groups, arrays)
