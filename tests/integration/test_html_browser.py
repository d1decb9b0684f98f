"""The HTML report in a real browser: headless Chromium loads the page ``report html`` made from a
real ``compare`` report with failing targets, dumps the rendered DOM and takes a screenshot; the
page must render its title and verdict, paint the verdict's colour, and log nothing to the
console (the page has no script: any console line is an error, a Content-Security-Policy
violation included). The same checks are shown failing on a page with a JavaScript error and
on a page without a verdict. Skipped, with the reason, where Chromium is not installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from resnet34_npu.reports import html as html_report
from resnet34_npu.reports.chart import have_matplotlib
from tests.unit.reports.test_html import HOSTILE, Page, report

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.subprocess]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
NO_CHROMIUM = "Chromium is not installed (Debian: apt-get install chromium); the browser checks need it"
#: Chromium's log line for a console message (console.log/error, an uncaught exception, a CSP
#: violation): ``[pid:tid:date:INFO:CONSOLE:1] "message", source: ...`` (older: ``CONSOLE(1)``).
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]?\s*(.*)")
BANNER = {"FAIL": (0xC0, 0x39, 0x2B), "PASS": (0x1E, 0x84, 0x49)}


@dataclass(frozen=True)
class Rendered:
    dom: str
    console: list[str]
    screenshot: Path


def chromium(*args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    flags = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run")
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def load(page: Path, shot: Path, height: int = 1600) -> Rendered:
    """The rendered DOM with the console messages of that load, then a screenshot."""
    done = chromium("--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    console = [m.group(1) for m in map(CONSOLE.search, done.stderr.splitlines()) if m]
    dom = done.stdout
    done = chromium(f"--screenshot={shot}", f"--window-size=1300,{height}", page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    return Rendered(dom, console, shot)


def assert_rendered(rendered: Rendered, verdict: str) -> None:
    """Title, the verdict in the rendered DOM, its colour painted at the top, a silent console."""
    dom = Page(rendered.dom)
    assert dom.title.startswith("resnet34-npu "), dom.title
    assert dom.verdict == verdict, dom.verdict
    assert rendered.console == [], rendered.console
    image = Image.open(rendered.screenshot).convert("RGB")
    assert image.size[0] == 1300
    painted = image.getpixel((image.size[0] // 2, 10))
    assert all(abs(a - b) <= 8 for a, b in zip(painted, BANNER[verdict])), painted


@pytest.fixture(scope="module")
def real_report(tmp_path_factory) -> Path:
    """``compare`` on a healthy target and two faults (failing, localised), then ``report html``,
    both through ``python -m resnet34_npu`` as a user runs them."""
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    folder = tmp_path_factory.mktemp("browser")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    targets = ["cpu", "resnet34_npu.faults:bn_stats_off", "resnet34_npu.faults:residual_dropped"]
    command = [sys.executable, "-m", "resnet34_npu", "compare", "--iters", "1", "--warmup", "0", "--target", *targets]
    done = subprocess.run([*command, "--output", str(folder / "r.json")], capture_output=True, text=True, env=env)
    assert done.returncode == 1, done.stderr  # the faults fail
    done = subprocess.run(
        [sys.executable, "-m", "resnet34_npu", "report", "html", str(folder / "r.json"), "-o", str(folder / "r.html")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return folder / "r.html"


def test_a_real_report_renders_in_chromium(real_report, tmp_path):
    rendered = load(real_report, tmp_path / "shot.png", height=4000)
    assert_rendered(rendered, "FAIL")
    dom = Page(rendered.dom)
    assert "fault:bn-stats-2pct" in dom.text and "fault:residual-dropped" in " ".join(dom.text)
    if have_matplotlib():
        assert len(dom.all("img", "chart")) == 2, "one chart per failing target"
    shutil.copy(rendered.screenshot, real_report.with_suffix(".png"))  # beside the page, to look at


def test_a_hostile_report_runs_nothing_in_chromium(tmp_path):
    doc = report(name=HOSTILE.replace("alert", "console.error"), host=HOSTILE.replace("alert", "console.error"))
    page = tmp_path / "hostile.html"
    html_report.write_html(doc, page, "hostile.json", charts=False)
    assert_rendered(load(page, tmp_path / "shot.png"), "FAIL")


def test_the_checks_fail_on_a_broken_page(real_report, tmp_path):
    text = real_report.read_text()
    scripted = tmp_path / "js-error.html"  # the same page, without its CSP, plus a script that throws
    scripted.write_text(
        re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text).replace(
            "</main>", "<script>undefinedFunction();</script></main>"
        )
    )
    with pytest.raises(AssertionError, match="undefinedFunction is not defined"):
        assert_rendered(load(scripted, tmp_path / "a.png"), "FAIL")
    blocked = tmp_path / "csp.html"  # with its CSP the script is refused: a console line too
    blocked.write_text(text.replace("</main>", "<script>1</script></main>"))
    with pytest.raises(AssertionError, match="Content Security Policy"):
        assert_rendered(load(blocked, tmp_path / "b.png"), "FAIL")
    unnamed = tmp_path / "no-verdict.html"
    unnamed.write_text(text.replace('id="verdict"', 'id="nothing"'))
    with pytest.raises(AssertionError, match="None"):
        assert_rendered(load(unnamed, tmp_path / "c.png"), "FAIL")
    with pytest.raises(AssertionError):  # the banner is painted red, not green
        assert_rendered(load(real_report, tmp_path / "d.png"), "PASS")
