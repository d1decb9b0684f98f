"""The command line, in process (fast) and once through ``python -m`` (the real entry)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from PIL import Image

from resnet34_npu.cli import compare as compare_command
from resnet34_npu.cli import launch
from resnet34_npu.cli import main as cli
from resnet34_npu.core import schemas
from resnet34_npu.core.constants import IMAGES_DIR, SEED_TOP5
from resnet34_npu.judge.compare import Session
from resnet34_npu.model.labels import class_name
from resnet34_npu.targets.devices import KINDS, probe

REPO = Path(__file__).resolve().parents[3]
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
        [sys.executable, "-m", "resnet34_npu", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.subprocess
def test_python_dash_m_end_to_end(tmp_path):
    """The real entry point, once: ``python -m resnet34_npu`` exits with main()'s code and prints
    one line (a successful ``infer`` runs in process above)."""
    bad = _python_m("infer", "--image", str(tmp_path / "missing.jpg"))
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == f"resnet34-npu infer: error: image '{tmp_path / 'missing.jpg'}': no such file"


def test_console_script_points_at_main():
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["resnet34-npu"].partition(":")
    assert module == "resnet34_npu.cli.launch" and getattr(launch, attr) is launch.main


def test_version_is_the_packages_and_exits_0(capsys):
    """The version printed is the one the package is built with (pyproject.toml)."""
    built = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"resnet34-npu {built}\n"


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["infer", "--help"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("usage: resnet34-npu infer ")


@pytest.mark.parametrize(
    "argv, unrecognized, hint",
    [
        (["compare", "--targets", "cpu"], "--targets cpu", " (did you mean --target?)"),
        (["compare", "--allow-mising"], "--allow-mising", " (did you mean --allow-missing?)"),
        (["infer", "--imagee=cat.jpg"], "--imagee=cat.jpg", " (did you mean --image?)"),
        (["infer", "--colour"], "--colour", ""),  # nothing close: argparse's line alone
    ],
)
def test_a_misspelt_option_gets_the_nearest_spelling(argv, unrecognized, hint, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err == f"resnet34-npu: error: unrecognized arguments: {unrecognized}{hint}\n"


def test_an_unknown_r34_variable_is_named_with_the_right_spelling(monkeypatch, capsys):
    for name in [k for k in os.environ if k.startswith("R34_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("R34_TARGET", "cpu")
    monkeypatch.setenv("R34_COLOUR", "1")
    assert cli.main(["devices"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "resnet34-npu: warning: environment variable R34_COLOUR is not one of the suite's and is ignored: "
        "`pytest --help` lists the suite's own",
        "resnet34-npu: warning: environment variable R34_TARGET is not one of the suite's and is ignored: "
        "did you mean R34_TARGETS?",
    ]
    monkeypatch.delenv("R34_TARGET")
    monkeypatch.delenv("R34_COLOUR")
    monkeypatch.setenv("R34_TARGETS", "cpu")  # the right spelling: nothing said
    assert cli.main(["devices"]) == 0 and capsys.readouterr().err == ""


# --- compare --------------------------------------------------------------------------------

REPORT_KEYS = {"schema_version", "created", "verdict", "profile", "machine", "weights", "reference", "targets"}
TARGET_KEYS = {
    "name",
    "device",
    "dtype",
    "effective_precision",
    "precision_settings",
    "verdict",
    "latency_ms",
    "throughput_ips",
    "speedup_vs_reference",
    "images",
}
LATENCY_KEYS = {"mean", "std", "median", "p90", "min", "max", "warmup", "iterations"}
METRIC_KEYS = {
    "max_abs_error",
    "mean_abs_error",
    "l2_error",
    "rel_l2_error",
    "cosine_similarity",
    "rmse",
    "max_rel_error",
    "mean_rel_error",
    "error_balance",
    "rel_err_ratio_1e-2",
    "rel_err_ratio_1e-3",
    "rel_err_ratio_1e-4",
    "nonfinite_mismatch",
    "prob_max_abs_error",
    "prob_mean_abs_error",
    "prob_max_rel_error",
    "kl_divergence",
    "top1_match",
    "top5_overlap",
    "top5_order_match",
}


@pytest.mark.slow
def test_compare_with_no_options_passes_and_writes_every_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "compare", "--iters", "2", "--warmup", "1")
    assert code == 0, out + err
    if not any(probe(k).available for k in ("npu", "cuda", "mps", "xpu")):
        assert out.startswith("No accelerator found")
        assert "cpu/fp32/channels_last" in out
    doc = json.loads((tmp_path / "compare_results.json").read_text())
    schemas.validate(doc, "compare-report", source="compare_results.json")
    assert set(doc) >= REPORT_KEYS and doc["verdict"] == "pass"
    assert {"spec", "sha256"} <= set(doc["weights"]) and {"device", "dtype"} <= set(doc["reference"])
    assert {"host", "cpu", "python", "torch", "torchvision", "devices"} <= set(doc["machine"])
    skipped = [t for t in doc["targets"] if t["verdict"] == "skipped"]
    for target in skipped:  # an absent accelerator of the default matrix: listed with its reason, nothing run
        assert target["skipped"] and target["images"] == [] and target["latency_ms"] is None
    assert len(skipped) < len(doc["targets"])
    for target in (t for t in doc["targets"] if t["verdict"] != "skipped"):
        assert set(target) >= TARGET_KEYS
        assert set(target["latency_ms"]) >= LATENCY_KEYS and target["latency_ms"]["iterations"] == 2
        assert [i["image"] for i in target["images"]] == ["cat.jpg", "coffee.jpg"]
        for image in target["images"]:
            assert {"image", "verdict", "failures", "metrics"} <= set(image)
            assert set(image["metrics"]) >= METRIC_KEYS
            # a passing report: no failure, as lines and as findings; warnings the same both ways
            assert image["verdict"] in ("pass", "warn") and image["failures"] == [] == image["findings"]["failures"]
            assert image["warnings"] == [f["line"] for f in image["findings"]["warnings"]]
            assert (image["verdict"] == "warn") == bool(image["warnings"])
    assert f"[134] {class_name(134)}" in out and "verdict: PASS" in out


@pytest.mark.slow
def test_compare_that_should_fail_exits_1_with_readable_lines(tmp_path, capsys):
    report = tmp_path / "r.json"
    code, out, _ = run(
        capsys,
        "compare",
        "--target",
        "resnet34_npu.faults:logits_swapped",
        "--iters",
        "0",
        "--image",
        str(IMAGES_DIR / "cat.jpg"),
        "--output",
        str(report),
    )
    assert code == 1
    assert "FAIL fault:logits-swapped cat.jpg: rel_l2_error: " in out
    assert "(allowed: <= 1.000e-05 for fp32); worst element: sample 0, class" in out
    doc = json.loads(report.read_text())
    assert doc["verdict"] == "fail" and doc["targets"][0]["images"][0]["failures"]
    assert doc["targets"][0]["latency_ms"] is None


@pytest.mark.slow
def test_compare_fp64_truth_reports_the_ratio(tmp_path, capsys):
    report = tmp_path / "r.json"
    code, _, _ = run(
        capsys,
        "compare",
        "--fp64-truth",
        "--target",
        "cpu/channels_last",
        "--iters",
        "0",
        "--image",
        str(IMAGES_DIR / "cat.jpg"),
        "--output",
        str(report),
    )
    metrics = json.loads(report.read_text())["targets"][0]["images"][0]["metrics"]
    assert code == 0 and {"truth_rel_l2_error", "reference_truth_rel_l2_error", "error_ratio_vs_cpu"} <= set(metrics)


@pytest.mark.slow
def test_compare_takes_a_folder_of_images(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("cat.jpg", "gray.png"):
        (folder / name).write_bytes((IMAGES_DIR / name).read_bytes())
    code, out, _ = run(
        capsys,
        "compare",
        "--image",
        str(folder),
        "--target",
        "cpu",
        "--iters",
        "0",
        "--output",
        str(tmp_path / "r.json"),
    )
    assert code == 0 and "gray.png" in out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--target", "cpu/fp8"], "unknown or repeated part 'fp8'"),
        (["--target", "tpu"], "Unknown device 'tpu'"),
        (["--profile", "lenient"], "invalid choice: 'lenient'"),
        (["--reference", "cpu/fp9"], "unknown or repeated part 'fp9'"),
        (["--iters", "-1"], "must be >= 0"),
        (["--image", "nope.jpg"], "image 'nope.jpg': no such file"),
        (["--weights", "seeded:x"], "weights 'seeded:x'"),
    ],
)
def test_compare_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, words):
    report = tmp_path / "r.json"
    try:
        code = cli.main(["compare", "--iters", "0", "--output", str(report), *argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not report.exists()


def test_compare_unavailable_target_fails_with_the_reason_before_any_work(tmp_path, capsys):
    """A named target whose device is absent fails (exit 1) with the skip reason, nothing run;
    --allow-missing makes it a skip (exit 0, a report saying "not run", never "pass")."""
    absent = next((k for k in ("npu", "cuda", "xpu") if not probe(k).available), None)
    if absent is None:
        pytest.skip("every accelerator kind is available here")
    report = tmp_path / "r.json"
    code, out, err = run(capsys, "compare", "--target", f"{absent}:0/fp16", "--iters", "0", "--output", str(report))
    reason = f"{absent.upper()}: {probe(absent).reason}"
    assert code == 1 and f"FAIL {absent}:0/fp16: not run: {reason}" in out and "Traceback" not in err
    assert json.loads(report.read_text())["verdict"] == "fail"
    allowed = ("compare", "--target", f"{absent}:0/fp16", "--iters", "0", "-o", str(report), "--allow-missing")
    code, out, _ = run(capsys, *allowed)
    document = json.loads(report.read_text())
    assert code == 0 and f"skip {absent}:0/fp16: not run: {reason}" in out and document["verdict"] == "not run"
    assert document["targets"][0]["verdict"] == "skipped" and document["targets"][0]["skipped"] == reason
    code, _, err = run(capsys, "compare", "--output", str(tmp_path))
    assert code == 2 and "is a directory" in err


@pytest.mark.slow
@pytest.mark.parametrize(
    "crash",
    [
        "raise ZeroDivisionError('kernel bug')",
        "sys.exit(7)",
        "raise SystemExit",
        "raise type('EngineAbort', (BaseException,), {})()",
        "raise type('Unprintable', (Exception,), {'__str__': lambda self: 1 / 0})()",
    ],
)
def test_target_code_that_raises_is_that_targets_failure(tmp_path, monkeypatch, capsys, crash):
    """A target whose code raises mid-run, sys.exit() included, fails, named; the other targets
    are still judged, the report is written and the exit code is 1."""
    module = f"crash_engine_{abs(hash(crash))}"
    (tmp_path / f"{module}.py").write_text(
        "import sys, torch\n"
        "class E:\n"
        "    calls = 0\n"
        "    def __call__(self, batch):\n"
        "        E.calls += 1\n"
        "        if E.calls > 1:\n"
        f"            {crash}\n"
        "        return torch.zeros(batch.shape[0], 1000)\n"
        "def build(model):\n"
        "    return E()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    report = tmp_path / "r.json"
    argv = ["compare", "--target", f"{module}:build", "cpu", "--iters", "2", "--warmup", "0", "--output", str(report)]
    code, out, err = run(capsys, *argv, "--image", str(IMAGES_DIR / "cat.jpg"))
    assert code == 1 and err == ""
    assert f"FAIL {module}:build cat.jpg: target '{module}:build' raised " in out
    doc = json.loads(report.read_text())
    assert [t["verdict"] for t in doc["targets"]] == ["fail", "pass"] and doc["verdict"] == "fail"
    assert doc["targets"][0]["images"][0]["error"].startswith(f"target '{module}:build' raised ")
    assert doc["targets"][0]["latency_ms"] is None, "a target that raised is not timed"


def test_an_internal_error_is_one_line_and_exit_3(tmp_path, monkeypatch, capsys):
    """A crash in the suite's own code is not a verdict: exit 3, one line (the traceback with
    RESNET34_NPU_DEBUG=1)."""

    def bug(*args, **kwargs):
        raise ZeroDivisionError("suite bug")

    monkeypatch.setattr(compare_command, "_print_compare_table", bug)
    monkeypatch.delenv("RESNET34_NPU_DEBUG", raising=False)
    argv = ["compare", "--target", "cpu", "--iters", "0", "--image", str(IMAGES_DIR / "cat.jpg")]
    code = cli.main([*argv, "--output", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 3 and err.strip() == (
        "resnet34-npu compare: internal error: ZeroDivisionError: suite bug "
        "(set RESNET34_NPU_DEBUG=1 for the traceback)"
    )
    monkeypatch.setenv("RESNET34_NPU_DEBUG", "1")
    code = cli.main([*argv, "--output", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback (most recent call last)" in err and "ZeroDivisionError: suite bug" in err


def test_an_interrupted_compare_leaves_no_old_verdict(tmp_path, capsys, monkeypatch):
    report = tmp_path / "r.json"
    report.write_text('{"verdict": "pass", "stale": true}')

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Session, "evaluate", interrupted)
    code = cli.main(["compare", "--target", "cpu", "--iters", "0", "--output", str(report)])
    assert code == 130 and capsys.readouterr().err.strip() == "resnet34-npu: interrupted"
    doc = json.loads(report.read_text())
    assert doc["verdict"] == "interrupted" and "stale" not in doc and "has not finished" in doc["note"]


def test_a_command_whose_module_cannot_import_breaks_only_itself(monkeypatch, capsys):
    """Polygraphy's try_register_tool: a command module that fails to import becomes a stand-in
    that says so in one line (exit 3); every other command still works."""
    import importlib

    real = importlib.import_module

    def broken(name, *args, **kwargs):
        if name == "resnet34_npu.cli.controls":
            raise ImportError("No module named 'broken_backend'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", broken)
    assert cli.main(["controls"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("resnet34-npu controls: internal error: RuntimeError: the controls command cannot be loaded:")
    assert "broken_backend" in err and "\n" not in err
    assert cli.main(["devices", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["device"] == "cpu"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["infer"],
        ["compare"],
        ["localize"],
        ["controls"],
        ["devices"],
        ["reference", "build"],
        ["report", "merge"],
        ["report", "html"],
        ["report", "validate"],
        ["report", "history"],
        ["report", "history", "check"],
        ["report", "history", "import"],
    ],
    ids=lambda a: " ".join(a) or "top",
)
def test_every_help_page_renders(argv, capsys):
    """argparse formats help with %: a stray '%' in one option's help crashes that whole page."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0 and "usage: resnet34-npu" in capsys.readouterr().out


def test_pytest_help_renders_every_r34_option(pytester):
    pytester.makeconftest('pytest_plugins = ["resnet34_npu.pytest_plugin"]\n')
    result = pytester.runpytest_inprocess("--help")
    assert result.ret == 0
    from resnet34_npu.suite.options import OPTIONS

    text = result.stdout.str()
    assert all(option.flag in text for option in OPTIONS)
