"""The HTML report (``report html``, ``--r34-html``): the page's structure read back with an HTML
parser from documents shaped like the suite's reports (built with ``report.build_report`` and
merged with ``fleet``, so their shape is the real one), hostile names, bad inputs. Each check is
also shown failing on a page that is wrong in the way it looks for. Cheap (milliseconds): no
model runs and no charts are drawn here, except in the tests marked slow."""

from __future__ import annotations

import copy
import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from resnet34_npu.cli import main as cli
from resnet34_npu.core.errors import InputError
from resnet34_npu.judge.localize import STAGES
from resnet34_npu.reports import html as html_report
from resnet34_npu.reports.fleet import merge_reports, validate
from resnet34_npu.reports.report import SCHEMA_VERSION, build_report
from tests.unit.suite import test_plugin as test_pytest_plugin

suite = test_pytest_plugin.suite  # the plugin tests' pytester fixture (the repository's conftest, real weights)
ONE_IMAGE = test_pytest_plugin.ONE_IMAGE
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'


class Page(HTMLParser):
    """What a test reads of a page: title, verdict, text, elements with their attributes."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.title = ""
        self._stack: list[str] = []
        self._verdict: list[str] | None = None
        self.verdict = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        self._stack.append(tag)
        if attributes.get("id") == "verdict":
            self._verdict = []

    def handle_endtag(self, tag):
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()
        if self._verdict is not None and tag == "h1":
            self.verdict, self._verdict = "".join(self._verdict).strip(), None

    def handle_data(self, data):
        self.text.append(data)
        if self._stack and self._stack[-1] == "title":
            self.title += data
        if self._verdict is not None:
            self._verdict.append(data)

    def all(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and (cls is None or cls in a.get("class", "").split())]


def assert_verdict(page: Page, verdict: str) -> None:
    """The banner says ``verdict`` in the colour of that verdict, and so does the title."""
    assert page.verdict == verdict, page.verdict
    banner = page.all("header")[0]["class"].split()
    assert f"bg-{html_report.STATUS_CLASSES[verdict.lower()]}" in banner, banner
    assert f": {verdict} " in page.title, page.title


def assert_self_contained(text: str) -> None:
    """Nothing is fetched: no script, no external URL anywhere, every image a data: URL, a CSP
    that forbids fetches (so even a mistake here could not reach the network)."""
    page = Page(text)
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert not page.all("script") and not page.all("link") and not page.all("iframe")
    for img in page.all("img"):
        assert img["src"].startswith("data:image/png;base64,"), img["src"][:40]
    (csp,) = [a["content"] for a in page.all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in csp


def assert_inert(text: str, hostile: str) -> None:
    """``hostile`` shows as text and makes no element: no script, no event handler attribute,
    no image but the page's own data: charts."""
    page = Page(text)
    assert not page.all("script")
    assert not [a for _, a in page.elements if any(k.startswith("on") for k in a)]
    assert all(img["src"].startswith("data:") for img in page.all("img"))
    assert any(hostile in chunk for chunk in page.text), "the name is shown, as text"


def _case(image: str, verdict: str, rel_l2: float, stages: list[tuple[str, float, str]] | None = None) -> dict:
    failures = [] if verdict == "pass" else [f"rel_l2_error: {rel_l2:.3e} > 1.000e-05 (allowed: <= 1.000e-05 for fp32)"]
    localization = None
    if stages is not None:
        first = next((name for name, _, status in stages if status == "fail"), None)
        localization = {
            "first_failing_stage": first,
            "note": "",
            "stages": [
                {
                    "name": name,
                    "rel_l2_error": value,
                    "cosine_similarity": 1.0,
                    "max_rel_error": value,
                    "max_abs_error": value,
                    "status": status,
                    "failure": "rel_l2_error: broken" if status == "fail" else "",
                }
                for name, value, status in stages
            ],
        }
    return {
        "image": image,
        "paths": [f"/x/{image}"],
        "batch_size": 1,
        "verdict": verdict,
        "failures": failures,
        "warnings": [],
        "metrics": {
            "rel_l2_error": rel_l2,
            "cosine_similarity": 1 - rel_l2**2 / 2,
            "max_abs_error": rel_l2 * 10,
            "prob_max_rel_error": rel_l2,
            "top1_match": 1.0,
            "top5_overlap": 5.0,
            "assert_close_ratio": "nan",
        },
        "localization": localization,
        "error": None,
        "blame": None,
    }


def _target(name: str, verdict: str, median: float, cases: list[dict], device: str = "cpu") -> dict:
    return {
        "name": name,
        "device": device,
        "device_name": "AMD EPYC",
        "dtype": "fp32",
        "mode": "eager",
        "effective_precision": "fp32",
        "precision_reason": "fp32 end to end",
        "precision_settings": {},
        "engine": None,
        "verdict": verdict,
        "latency_ms": {
            "median": median,
            "p90": median,
            "mean": median,
            "std": 0.1,
            "warmup": 1,
            "iterations": 3,
            "batch_size": 1,
            "clock": "perf_counter",
        },
        "throughput_ips": 1000 / median,
        "speedup_vs_reference": 50.0 / median,
        "images": cases,
    }


STAGED = [("conv1", 0.0, "pass"), ("layer2.0.bn2", 1e-2, "fail"), ("fc", 5e-3, "fail")]


def report(name: str = "fault:bn-stats-2pct", verdict: str = "fail", host: str = "vm") -> dict:
    """A compare report (build_report's shape) with a passing and a failing (or passing) target."""
    bad = "fail" if verdict == "fail" else "pass"
    targets = [
        _target("cpu/fp32", "pass", 49.0, [_case("cat.jpg", "pass", 0.0), _case("coffee.jpg", "pass", 0.0)]),
        _target(
            name,
            bad,
            49.5,
            [_case("cat.jpg", bad, 4.7e-3 if bad == "fail" else 0.0, STAGED), _case("coffee.jpg", "pass", 0.0)],
            device="custom",
        ),
    ]
    reference = {
        "name": "cpu/fp32",
        "device": "cpu",
        "device_name": "AMD EPYC",
        "effective_precision": "fp32",
        "latency_ms": {
            "median": 50.0,
            "p90": 51.0,
            "mean": 50.0,
            "std": 0.2,
            "warmup": 1,
            "iterations": 3,
            "batch_size": 1,
            "clock": "perf_counter",
        },
    }
    doc = build_report(
        profile="default",
        weights={"spec": "seeded", "path": "/w.pth", "sha256": "ab" * 32, "tensor_sha256": "cd" * 32},
        reference=reference,
        targets=targets,
        extra={"fp64_truth": False, "images": ["/x/cat.jpg", "/x/coffee.jpg"]},
    )
    doc["machine"]["host"] = host
    return doc


def render(doc: dict, **kwargs) -> str:
    return html_report.render(html_report.check_document(doc, "'r.json'"), "r.json", charts=False, **kwargs)


def test_the_verdict_is_at_the_top_in_its_colour():
    page = Page(render(report()))
    assert_verdict(page, "FAIL")
    assert_verdict(Page(render(report(verdict="pass"))), "PASS")
    text = " ".join(page.text)
    for shown in ("vm", "ab" * 32, "default", "cpu/fp32 on AMD EPYC", "fault:bn-stats-2pct"):
        assert shown in text, shown
    with pytest.raises(AssertionError):
        assert_verdict(Page(render(report(verdict="pass"))), "FAIL")
    with pytest.raises(AssertionError):  # a page without a verdict
        assert_verdict(Page("<html><head><title>x: FAIL y</title></head><body></body></html>"), "FAIL")


def test_matrix_metrics_bounds_latency_and_where_it_breaks():
    text = render(report())
    page = Page(text)
    cells = page.all("td", "cell")
    assert len([c for c in cells if "c-fail" in c["class"]]) == 1 + 2, "one failing case; two failing stages"
    assert len([c for c in cells if "c-pass" in c["class"]]) == 3 + 1
    bad = page.all("td", "bad")
    assert len(bad) == 1, "the one failing case's rel_l2_error breaks its bound"
    assert "allowed &lt;= 1.000e-05" in text and "allowed &gt;= 0.999" in text
    assert "1.02\u00d7" in text and "1.01\u00d7" in text, "speedup = 50 / 49 and 50 / 49.5"
    assert "first diverging stage: <b>layer2.0.bn2</b>" in text
    assert [s for s in STAGES if s in ("conv1", "layer2.0.bn2", "fc")] == ["conv1", "layer2.0.bn2", "fc"]
    healthy = Page(render(report(verdict="pass")))
    assert not healthy.all("td", "bad") and "first diverging stage" not in " ".join(healthy.text)


def test_a_hostile_name_is_text_not_markup():
    doc = report(name=HOSTILE, host=HOSTILE)
    doc["targets"][1]["images"][0]["failures"].append(HOSTILE)
    doc["targets"][1]["images"][0]["image"] = HOSTILE
    doc["profile"] = HOSTILE
    text = render(doc)
    assert_inert(text, HOSTILE)
    assert_self_contained(text)
    doc["verdict"] = HOSTILE  # refused by the schema check; the page itself would show it as text, in grey
    with pytest.raises(InputError, match="verdict is"):
        html_report.check_document(doc, "'r.json'")
    text = html_report.render(doc, "r.json", charts=False)
    assert_inert(text, HOSTILE)
    assert "bg-unknown" in Page(text).all("header")[0]["class"]
    naive = f"<html><body><td>{HOSTILE}</td></body></html>"
    with pytest.raises(AssertionError):
        assert_inert(naive, HOSTILE)


def test_the_page_is_self_contained():
    assert_self_contained(render(report()))
    base = render(report())
    for wrong in (
        '<img src="https://cdn.example/x.png">',
        '<link rel="stylesheet" href="http://x/y.css">',
        "<script>1</script>",
    ):
        with pytest.raises(AssertionError):
            assert_self_contained(base.replace("<main>", "<main>" + wrong))


def test_without_matplotlib_tables_and_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` meets where it is not installed
    doc = html_report.check_document(report(), "'r.json'")
    page = Page(html_report.render(doc, "r.json", charts=True))
    assert not page.all("img")
    assert "Charts are not drawn: matplotlib is not installed" in " ".join(page.text)
    assert len(page.all("table", "stages")) == 1 and page.all("details")[0].get("open") == ""
    plain = Page(render(report()))  # --no-charts: tables, no note
    assert "Charts are not drawn" not in " ".join(plain.text) and len(plain.all("table", "stages")) == 1


def fleet_document() -> dict:
    """``report merge`` of four hosts; host-3's cards run 1.5x slower (latency outliers)."""
    hosts = []
    for h in range(4):
        doc = report(host=f"host-{h}", verdict="fail" if h == 1 else "pass")
        for target in doc["targets"]:
            target["latency_ms"]["median"] *= 1.5 if h == 3 else 1 + 0.01 * h
        hosts.append(validate(json.loads(json.dumps(doc)), f"/r/host-{h}.json"))
    return merge_reports(hosts).to_dict()


def test_a_fleet_report_is_a_host_by_card_grid():
    doc = fleet_document()
    text = render(doc)
    page = Page(text)
    assert_verdict(page, "FAIL")
    (grid,) = page.all("table", "grid")
    assert {"host-0", "host-1", "host-2", "host-3"} <= set(page.text)
    cells = page.all("td", "cell")
    assert len(cells) == 4 * 2, "four hosts x two cards (cpu, custom)"
    assert len([c for c in cells if "c-fail" in c["class"]]) == 1, "host-1's custom card"
    assert len([c for c in cells if "slow" in c["class"].split()]) == 2, "host-3's two cards are slow"
    assert text.count('class="outlier">SLOW<') == 2 + 2 + 1, "two grid cells, two table rows, the legend"
    assert_self_contained(text)
    with pytest.raises(ValueError):  # a host's report has no grid
        (grid,) = Page(render(report())).all("table", "grid")


def _cli(capsys, *argv):
    code = cli.main(["report", "html", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _bad_reports(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = report()
    cases = {
        "missing file": ("nope.json", None, "cannot be read (No such file or directory)"),
        "not JSON": ("text.json", "<html>hello</html>", "is not JSON"),
        "truncated": ("cut.json", json.dumps(good)[:500], "is truncated"),
        "a JSON list": ("list.json", "[1, 2]", "not an object"),
        "no schema_version": ("foreign.json", '{"verdict": "pass", "targets": []}', "no schema_version"),
        "future schema": (
            "future.json",
            json.dumps({**good, "schema_version": SCHEMA_VERSION + 1}),
            f"schema_version {SCHEMA_VERSION + 1}; this one reads up to {SCHEMA_VERSION}",
        ),
        "a target not an object": ("t.json", json.dumps({**good, "targets": ["x"]}), "targets[0]"),
        "stages not a list": ("s.json", "", "localization.stages is not a list"),
        "fleet groups not a list": ("f.json", json.dumps({**fleet_document(), "groups": {}}), "groups is not a list"),
        "NaN token": ("nan.json", json.dumps(good).replace('"nan"', "NaN"), "holds the token NaN"),
    }
    broken = copy.deepcopy(good)
    broken["targets"][1]["images"][0]["localization"]["stages"] = "x"
    out = {}
    for what, (name, content, words) in cases.items():
        path = tmp_path / name
        if what == "stages not a list":
            content = json.dumps(broken)
        if content is not None:
            path.write_text(content)
        out[what] = (path, words)
    (tmp_path / "folder.json").mkdir()
    out["a folder"] = (tmp_path / "folder.json", "is a directory")
    return out


def test_bad_inputs_are_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    out = tmp_path / "out" / "page.html"
    out.parent.mkdir()
    out.write_text("old")
    for what, (path, words) in _bad_reports(tmp_path).items():
        code, stdout, err = _cli(capsys, str(path), "-o", str(out))
        assert code == 2, (what, err)
        assert len(err.strip().splitlines()) == 1 and words in err and str(path) in err, (what, err)
        assert (
            stdout == "" and out.read_text() == "old" and sorted(p.name for p in out.parent.iterdir()) == ["page.html"]
        )
    good = tmp_path / "good.json"
    good.write_text(json.dumps(report()))
    code, stdout, err = _cli(capsys, str(good), "-o", str(tmp_path))  # the output is a folder
    assert code == 2 and f"HTML report '{tmp_path}': is a directory" in err and len(err.strip().splitlines()) == 1
    code, stdout, err = _cli(capsys, str(good), "-o", str(good))
    assert code == 2 and "is the report being read" in err and json.loads(good.read_text())["verdict"] == "fail"
    # the check passes a good report: it is written, atomically, beside the report by default
    code, stdout, err = _cli(capsys, str(good), "--no-charts")
    assert code == 0 and err == "" and stdout == f"HTML report written to {tmp_path / 'good.html'}\n"
    assert_verdict(Page((tmp_path / "good.html").read_text()), "FAIL")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_check_document_names_the_path_inside_the_report():
    doc = report()
    doc["targets"][1]["images"][0]["metrics"] = []
    with pytest.raises(InputError, match=r"^report 'r.json': does not match the report schema: \$\.targets\[1\]"):
        html_report.check_document(doc, "'r.json'")
    html_report.check_document(report(), "'r.json'")  # the same report, whole, passes


def test_an_unfinished_run_shows_as_interrupted(tmp_path, capsys):
    from resnet34_npu.reports.report import unfinished_report

    path = tmp_path / "r.json"
    path.write_text(json.dumps(unfinished_report("compare")))
    code, _, err = _cli(capsys, str(path), "-o", str(tmp_path / "r.html"))
    assert code == 0, err
    page = Page((tmp_path / "r.html").read_text())
    assert_verdict(page, "INTERRUPTED")
    assert any("compare started and has not finished" in t for t in page.text)


def test_a_bad_html_path_is_a_usage_error_in_pytest(suite):
    result = suite.runpytest_inprocess(f"--r34-html={suite.path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"report '{suite.path}': is a directory" in result.stderr.str()


@pytest.mark.slow
@pytest.mark.subprocess
def test_pytest_writes_the_page_beside_the_acceptance_report(suite):
    # In a subprocess: pytester's in-process run would import matplotlib's modules inside and
    # drop them afterwards, leaving matplotlib half stale for later tests of this process.
    pytest.importorskip("matplotlib")
    args = (
        "--r34-iters=0",
        ONE_IMAGE,
        "--r34-target=resnet34_npu.faults:bn_stats_off",
        "-k",
        "test_verdict and batch1",
    )
    result = suite.runpytest_subprocess(*args, "--r34-html=page.html")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["resnet34-npu: acceptance report written to *", "resnet34-npu: HTML report written to *"]
    )
    text = (suite.path / "page.html").read_text()
    page = Page(text)
    assert_verdict(page, "FAIL")
    assert_self_contained(text)
    assert len(page.all("img", "chart")) == 1 and "layer2.0.bn2" in text
    document = json.loads((suite.path / "acceptance_report.json").read_text())
    assert document["targets"][0]["name"] in page.text
    (suite.path / "acceptance_report.json").unlink()
    suite.runpytest_subprocess(*args, "--r34-report=none", "--r34-html=alone.html")  # the page without the JSON
    assert_verdict(Page((suite.path / "alone.html").read_text()), "FAIL")
    assert not (suite.path / "acceptance_report.json").exists()


@pytest.mark.slow
def test_charts_are_embedded_pngs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report()))
    code, _, err = _cli(capsys, str(path))
    assert code == 0, err
    text = (tmp_path / "r.html").read_text()
    (img,) = Page(text).all("img", "chart")
    import base64

    assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert_self_contained(text)


def dataset_report(verdict: str = "fail", name: str = "npu/fp32") -> dict:
    """A compare --dataset report: a target per dataset run, its summary, a row per card."""
    cards = [
        {
            "rank": r,
            "card": f"npu:{r}",
            "verdict": "pass",
            "error": None,
            "images": 4,
            "worst_image": f"i{r}.jpg",
            "worst_rel_l2": 1.7e-4,
            "images_per_s": 250.0,
        }
        for r in range(8)
    ]
    if verdict == "fail":
        cards[3].update(verdict="fail", error="RuntimeError: ACL error 507011")
    summary = {
        "verdict": verdict,
        "failures": ["rank 3 (npu:3) failed: RuntimeError: ACL error 507011"] if verdict == "fail" else [],
        "images": 32,
        "compared": 32,
        "missing": 0,
        "nonfinite": 0,
        "statuses": {"pass": 32},
        "unreadable": [],
        "rel_l2": {"median": 1.7e-4, "p99": 1.9e-4, "max": 1.9e-4},
        "cosine": {"median": 0.99999999, "p1": 0.99999998, "min": 0.99999998},
        "top1_agreement": 1.0,
        "accuracy": {
            "images": 32,
            "reference_top1": 0.0,
            "reference_top5": 0.0,
            "target_top1": 0.0,
            "target_top5": 0.0,
            "mlperf_fraction": 0.99,
            "mlperf_pass": None,
            "mlperf_note": "n/a",
        },
        "worst": [
            {
                "path": "i3.jpg",
                "card": "npu:3",
                "status": "pass",
                "rel_l2": 1.9e-4,
                "cosine": 0.99999998,
                "localize": f"python -m resnet34_npu localize --target {name} --image /d/i3.jpg",
            }
        ],
        "cards": cards,
        "results": "/r.images",
    }
    target = {
        "name": name,
        "device": "npu:0",
        "device_name": "Ascend910B3",
        "dtype": "fp32",
        "mode": "eager",
        "verdict": verdict,
        "latency_ms": None,
        "images": [],
        "dataset": summary,
    }
    doc = build_report(
        profile="default",
        weights={"spec": "seeded", "path": "/w.pth", "sha256": "ab" * 32, "tensor_sha256": "cd" * 32},
        reference={"path": "/val.r34", "created": "2026-11-28T00:00:00+00:00", "images": 32},
        targets=[target],
        extra={"fp64_truth": False, "dataset": {"root": "/d", "layout": "val_map", "images": 32, "labelled": True}},
    )
    doc["verdict"] = verdict
    return doc


def test_a_dataset_report_shows_its_summary_cards_and_worst_images():
    page = Page(render(dataset_report()))
    text = " ".join(page.text)
    assert_verdict(page, "FAIL")
    assert "Dataset agreement" in text and "No comparison ran" not in text
    assert "rank 3 (npu:3) failed: RuntimeError: ACL error 507011" in text
    failing = [c for c in page.all("td", "cell") if "c-fail" in c["class"]]
    assert len(failing) == 1 and len([c for c in page.all("td", "cell") if "c-pass" in c["class"]]) == 7
    assert "MLPerf rule (>= 0.99 x the reference's top-1): not applicable" in text
    assert "localize --target npu/fp32 --image /d/i3.jpg" in text and "stored reference file /val.r34" in text
    healthy = Page(render(dataset_report("pass")))
    assert not [c for c in healthy.all("td", "cell") if "c-fail" in c["class"]]
    assert_inert(render(dataset_report(name=HOSTILE)), HOSTILE)
