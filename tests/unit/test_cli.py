"""The command line, in process (fast) and once through ``python -m`` (the real entry)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from resnet34_npu import cli
from resnet34_npu.constants import IMAGES_DIR, SEED_TOP5
from resnet34_npu.devices import KINDS, probe
from resnet34_npu.labels import class_name

REPO = Path(__file__).resolve().parents[2]
FAST = ["--warmup", "0", "--iters", "1"]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_infer_prints_the_model_cards_top5_with_names(capsys, seeded):
    code, out, err = run(capsys, "infer", "--device", "cpu", *FAST)
    assert code == 0 and err == ""
    for index in SEED_TOP5:
        assert f"[{index}] {class_name(index)}" in out
    assert f"sha256:    {seeded[1].sha256}" in out
    assert "latency:" in out and "cat.jpg" in out and "cpu (" in out


def test_infer_json(capsys):
    code, out, _ = run(capsys, "infer", "--device", "cpu", "--json", "--topk", "3", *FAST)
    doc = json.loads(out)
    assert code == 0 and [t["index"] for t in doc["top"]] == list(SEED_TOP5[:3])
    assert doc["weights"]["sha256"] and doc["latency_ms"]["iterations"] == 1 and doc["device_name"]


def test_devices_lists_every_kind(capsys):
    code, out, _ = run(capsys, "devices")
    assert code == 0
    assert [line.split()[0].partition(":")[0] for line in out.splitlines()][0] == "cpu"
    assert {line.split()[0].partition(":")[0] for line in out.splitlines()} == set(KINDS)
    code, out, _ = run(capsys, "devices", "--json")
    assert {row["device"].partition(":")[0] for row in json.loads(out)} == set(KINDS)


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "dir.jpg").mkdir()
    (tmp_path / "empty.jpg").write_bytes(b"")
    data = (IMAGES_DIR / "cat.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "text.jpg").write_text("hello")
    Image.new("1", (10_000, 10_000)).save(tmp_path / "bomb.png")
    (tmp_path / "bad.pth").write_text("not weights")
    absent = next((k for k in ("npu", "cuda", "xpu") if not probe(k).available), None)
    cases = {
        "missing path": (["--image", str(tmp_path / "nope.jpg")], "no such file"),
        "directory": (["--image", str(tmp_path / "dir.jpg")], "is a directory"),
        "zero-byte file": (["--image", str(tmp_path / "empty.jpg")], "is empty"),
        "truncated JPEG": (["--image", str(tmp_path / "truncated.jpg")], "truncated"),
        "text named .jpg": (["--image", str(tmp_path / "text.jpg")], "not an image"),
        "decompression bomb": (["--image", str(tmp_path / "bomb.png")], "decompression-bomb"),
        "unknown device": (["--device", "npx"], "Unknown device 'npx'"),
        "bad weights spec": (["--weights", "seeded:abc"], "weights 'seeded:abc'"),
        "bad weights file": (["--weights", str(tmp_path / "bad.pth")], "bad.pth"),
        "bad dtype": (["--dtype", "fp8"], "invalid choice: 'fp8'"),
        "bad topk": (["--topk", "0"], "must be >= 1"),
    }
    if absent:
        cases["device not available"] = (["--device", absent], "is not available")
    return cases


def test_every_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    for label, (argv, words) in _bad_inputs(tmp_path).items():
        try:
            code = cli.main(["infer", *argv, *FAST])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        out, err = capsys.readouterr()
        assert code == 2, label
        assert words in err, (label, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (label, err)
        assert out == "", label


def _python_m(*argv, env=None):
    return subprocess.run(
        [sys.executable, "-m", "resnet34_npu", *argv], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, **(env or {})}, timeout=300,
    )


def test_python_dash_m_end_to_end(tmp_path):
    ok = _python_m("infer", "--device", "cpu", *FAST)
    assert ok.returncode == 0 and "[134]" in ok.stdout
    bad = _python_m("infer", "--image", str(tmp_path / "missing.jpg"))
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == f"resnet34-npu infer: error: image '{tmp_path / 'missing.jpg'}': no such file"


def test_console_script_points_at_main():
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["resnet34-npu"].partition(":")
    assert module == "resnet34_npu.cli" and getattr(cli, attr) is cli.main


@pytest.mark.parametrize("argv", [["--version"], ["infer", "--help"]])
def test_help_and_version_exit_0(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
