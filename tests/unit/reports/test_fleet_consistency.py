"""Card-to-card across hosts in ``report merge`` (resnet34_npu/reports/fleet.py): cards of one
device model, software environment and target compared on their timed image's digests; an
outlier's row fails and is named, healthy cards and other software stacks give no alarm."""

from __future__ import annotations

import copy

from resnet34_npu.core import schemas
from resnet34_npu.judge.criteria import Status
from resnet34_npu.reports import fleet
from tests.unit.reports.test_fleet import host_report, target

GOOD, BAD = "a" * 32, "b" * 32


def timed(card: str, digests: list[str]) -> dict:
    found = target(card)
    found["latency_ms"]["digests"] = digests
    return found


def merged(*documents: dict):
    reports = [fleet.validate(copy.deepcopy(d), f"{i}.json") for i, d in enumerate(documents)]
    return fleet.merge_reports(reports)


def test_a_card_of_another_host_whose_digests_differ_is_named_and_fails():
    found = merged(
        host_report("h1", [timed("npu:0", [GOOD, GOOD]), timed("npu:1", [GOOD, GOOD])]),
        host_report("h2", [timed("npu:0", [GOOD, BAD])]),
    )
    (group,) = found.groups
    (cards,) = group.card_to_card
    assert [(o.card, o.images, o.max_ulp) for o in cards.outliers] == [("h2 npu:0", ("cat.jpg",), None)]
    rows = {(r.host, r.card): r.verdict for r in group.cards}
    assert rows == {("h1", "npu:0"): Status.PASS, ("h1", "npu:1"): Status.PASS, ("h2", "npu:0"): Status.FAIL}
    assert found.verdict == Status.FAIL
    assert any("h2 npu:0 differs from the majority of 3 cards" in line for line in fleet.summary_lines(found))
    schemas.validate(found.to_dict(), "fleet-report", source="fleet.json")


def test_healthy_cards_and_other_software_stacks_give_no_alarm():
    other = host_report("h3", [timed("npu:0", [BAD, BAD])])
    other["machine"]["torch"] = "0.0.1"  # another stack may round differently: its own group
    found = merged(
        host_report("h1", [timed("npu:0", [GOOD, GOOD]), timed("npu:1", [GOOD])]),
        host_report("h2", [timed("npu:0", [GOOD])]),
        other,
    )
    (group,) = found.groups
    assert [c.passed for c in group.card_to_card] == [True]
    assert found.verdict == Status.PASS
    assert not any("card-to-card" in line for line in fleet.summary_lines(found))
