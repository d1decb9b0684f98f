"""The HTML page's templates (``reports/templates/report.html.j2``, autoescape on): every string a
report can carry, made hostile, reaches the page as text; and the consistency records
(run to run, card to card) get their section. Cheap: no model runs, no charts."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from resnet34_npu.judge.consistency import RunToRun, card_to_card
from resnet34_npu.reports import html as html_report
from resnet34_npu.reports.fleet import merge_reports, validate
from tests.unit.reports.test_html import Page, dataset_report, report

#: A closing script tag, an attribute break-out and a template expression, in one string.
HOSTILE = '</script><script>alert(1)</script> "><img src=x onerror=alert(1)> {{7*7}}'
#: Every element the report page is made of; a hostile string that became markup adds another.
ELEMENTS = frozenset(
    ("html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2", "h3", "h4", "p", "section")
    + ("footer", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "th", "td", "b", "span", "small", "ul", "li")
    + ("code", "div", "details", "summary")
)


def _check_text_only(text: str, hostile: str) -> None:
    page = Page(text)
    tags = {tag for tag, _ in page.elements}
    assert tags <= ELEMENTS, sorted(tags - ELEMENTS)
    assert not [a for _, a in page.elements if any(k.lower().startswith("on") for k in a)]
    # literally: neither broken into markup nor its {{7*7}} evaluated
    assert any(hostile in chunk for chunk in page.text), "the hostile string is shown, literally, as text"


def _render(doc: dict) -> str:
    return html_report.render(html_report.check_document(doc, "'r.json'"), "r.json", charts=False)


def _hostile_report() -> dict:
    h = HOSTILE
    doc = report(name=h, host=h)
    doc["note"] = h
    doc["machine"].update(platform=h, cpu=h, devices=[h])
    doc["weights"]["spec"] = h
    doc["reference"]["device_name"] = h
    target = doc["targets"][1]
    target["device_name"] = h
    target["skipped"] = None
    case = target["images"][0]
    case["image"] = h
    case["failures"].append(h)
    case["warnings"] = [h]
    case["error"], case["metrics"] = h, {}  # a case whose target raised measured nothing
    case["localization"]["stages"][1]["failure"] = h
    target["run_to_run"] = RunToRun("bitwise", h, 3, 2, 1e-6, 4, 1).to_dict()
    doc["card_to_card"] = [card_to_card(h, {h: {h: ["a"]}, "b": {h: ["b"]}, "c": {h: ["b"]}}).to_dict()]
    doc["tests"] = [{"test": h, "outcome": "failed", "message": h}]
    return doc


def test_every_string_field_of_a_report_is_shown_as_text():
    _check_text_only(_render(_hostile_report()), HOSTILE)
    _check_text_only(_render(dataset_report(name=HOSTILE)), HOSTILE)


def test_every_string_field_of_a_fleet_report_is_shown_as_text():
    hosts = []
    for h in range(3):
        doc = report(host=f"{HOSTILE} {h}", name=HOSTILE)
        doc["note"] = HOSTILE
        hosts.append(validate(json.loads(json.dumps(doc)), f"/r/{HOSTILE}-{h}.json"))
    fleet = merge_reports(hosts).to_dict()
    fleet["notes"] = [*fleet.get("notes", []), HOSTILE]
    _check_text_only(_render(fleet), HOSTILE)


@pytest.mark.parametrize(
    "naive",
    [
        f"<html><body><td>{HOSTILE}</td></body></html>",  # not escaped: an <img onerror> and a <script>
        f"<html><body><td>{HOSTILE.replace('{{7*7}}', '49')}</td></body></html>".replace("<", "&lt;"),  # evaluated
        "<html><body><td>nothing</td></body></html>",  # the string is not shown at all
    ],
)
def test_the_text_only_check_fails_on_a_page_that_is_wrong(naive):
    with pytest.raises(AssertionError):
        _check_text_only(naive, HOSTILE)


def _section(text: str, anchor: str) -> str:
    class Grab(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.inside, self.depth, self.text = False, 0, []

        def handle_starttag(self, tag, attrs):
            if tag == "section":
                self.depth += 1
                if dict(attrs).get("id") == anchor:
                    self.inside = True

        def handle_endtag(self, tag):
            if tag == "section":
                self.inside = False

        def handle_data(self, data):
            if self.inside:
                self.text.append(data)

    grab = Grab()
    grab.feed(text)
    return " ".join(grab.text)


def test_consistency_shows_distinct_outputs_policy_verdict_and_the_outlier_card():
    doc = report(verdict="pass")
    doc["targets"][0]["run_to_run"] = RunToRun("bitwise", "oneDNN repeats", 3, 1, 0.0, 0, None).to_dict()
    doc["targets"][1]["run_to_run"] = RunToRun("bitwise", "oneDNN repeats", 4, 2, 1e-6, 3, 2).to_dict()
    digests = {"h1 npu:0": {"cat.jpg": ["a"]}, "h1 npu:1": {"cat.jpg": ["a"]}, "h2 npu:3": {"cat.jpg": ["a", "z"]}}
    doc["card_to_card"] = [card_to_card("Ascend910B3 fp32", digests).to_dict()]
    text = _render(doc)
    shown = _section(text, "consistency")
    assert "Run to run" in shown and "Card to card" in shown
    assert "bitwise" in shown and "oneDNN repeats" in shown
    cells = [c["class"] for c in Page(text).all("td", "cell") if "c-fail" in c["class"] or "c-pass" in c["class"]]
    assert cells, "verdict cells"
    assert "h2 npu:3 on cat.jpg" in shown and "h1 npu:0 on" not in shown  # the outlier, and only it, is named
    assert "Ascend910B3 fp32" in shown
    page = Page(text)
    table = [a for t, a in page.elements if t == "table" and a.get("class") == "consistency"]
    assert len(table) == 1
    assert "FAIL" in shown and "PASS" in shown  # the 2-distinct bitwise target fails, the other passes
    # without the records there is no section (so the checks above read what the records put there)
    assert _section(_render(report(verdict="pass")), "consistency") == ""


def test_the_check_fails_on_the_real_page_with_autoescape_off(monkeypatch):
    import jinja2

    real = html_report._environment

    def unescaped() -> jinja2.Environment:
        return jinja2.Environment(loader=real().loader, autoescape=False, undefined=jinja2.StrictUndefined)

    monkeypatch.setattr(html_report, "_environment", unescaped)
    with pytest.raises(AssertionError):
        _check_text_only(_render(_hostile_report()), HOSTILE)
