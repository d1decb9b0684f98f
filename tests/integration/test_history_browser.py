"""The history page in headless Chromium (as the report page, ``test_html_browser.py``): the
page ``report history show DIR -o page.html`` makes from the synthetic history renders its charts,
the steps and the environment labels, and logs nothing to the console; a hostile history runs
nothing; the same checks fail on the page with a script added. Skipped where Chromium is absent."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from resnet34_npu.history import record, synthetic
from tests.integration.test_html_browser import REPO, load

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.subprocess]


def make_page(tmp_path, records) -> str:
    folder = tmp_path / "history"
    record.check_history_dir(folder)
    for r in records:
        record.write_record(folder, r)
    page = tmp_path / "page.html"
    done = subprocess.run(
        [sys.executable, "-m", "resnet34_npu", "report", "history", "show", str(folder), "-o", str(page)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return page


def test_the_history_page_renders_in_chromium(tmp_path):
    page = make_page(tmp_path, synthetic.history(seed=1))
    shot = load(page, tmp_path / "shot.png", height=2400)
    assert shot.console == [], shot.console
    assert shot.dom.count("<svg") == 3 and len(re.findall(r'class="step"', shot.dom)) == 3
    assert "CANN 8.5.0 -&gt; 8.5.1" in shot.dom
    assert "2026-01-02 (run 1)" in shot.dom and "2026-03-02 (run 60)" in shot.dom  # dates under the x-axis
    shutil.copy(shot.screenshot, page.with_suffix(".png"))


def test_the_checks_fail_on_a_page_with_a_script(tmp_path):
    page = make_page(tmp_path, synthetic.history(runs=10, seed=1))
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page.read_text())
    page.write_text(text.replace("</body>", "<script>undefinedFunction();</script></body>"))
    assert load(page, tmp_path / "shot.png").console != []
