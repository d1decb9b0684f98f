"""What ``compare``'s table shows for a target that did not compute: no top-1 and no metrics (a
made-up class from all-NaN logits would read as a result)."""

from __future__ import annotations

import sys

from resnet34_npu.cli import main as cli
from resnet34_npu.core.constants import IMAGES_DIR

TARGET_MODULE = '''
import torch

class Flaky:
    """Passes the suite's one check call on zeros, then raises on every image."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        if float(x.abs().sum()) == 0.0:
            return self.model(x)
        raise RuntimeError("the device went away")


def factory(model):
    return Flaky(model)
'''


def test_a_target_that_raised_shows_no_top1_and_no_metrics(tmp_path, monkeypatch, capsys):
    (tmp_path / "flaky_target.py").write_text(TARGET_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("flaky_target", None)
    image = str(IMAGES_DIR / "cat.jpg")
    argv = ["compare", "--target", "flaky_target:factory", "cpu/fp32", "--image", image, "--iters", "0"]
    code = cli.main([*argv, "--output", str(tmp_path / "r.json")])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    (flaky,) = [line for line in out if line.startswith("flaky_target:factory ")]
    (healthy,) = [line for line in out if line.startswith("cpu/fp32 ")]
    cells = flaky.split()
    assert cells[2] == "FAIL" and cells[-8:] == ["-"] * 8, flaky  # top-1, top-5, 4 metrics, median, speedup
    assert "[134]" in healthy and healthy.split()[2] == "PASS"


def test_the_report_of_a_target_that_raised_ranks_no_class(tmp_path, monkeypatch, capsys):
    import json

    (tmp_path / "flaky_target.py").write_text(TARGET_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("flaky_target", None)
    report = tmp_path / "r.json"
    argv = ["compare", "--target", "flaky_target:factory", "--image", str(IMAGES_DIR / "cat.jpg"), "--iters", "0"]
    assert cli.main([*argv, "--output", str(report)]) == 1
    (case,) = json.loads(report.read_text())["targets"][0]["images"]
    assert case["error"] and case["samples"] == [{"reference_top5": case["samples"][0]["reference_top5"]}]
