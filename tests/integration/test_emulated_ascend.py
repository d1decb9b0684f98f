"""The NPU path run for real on an emulated Ascend host (``R34_EMULATE_ASCEND``): the probe,
device names, ``npu:k`` placement, synchronisation, event timing, the ACL precision mode per
SoC, HF32, fp16/bf16, and a bad card among good ones; and the stand-in's names checked against
the real torch-npu wheel's sources. Each run is a fresh process (the emulated device is
registered process-wide when the stand-in torch_npu is imported): marked ``slow``."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnet34_npu.targets.emulation import STANDIN
from tests.integration.test_broken_torch_npu import npu_site  # noqa: F401 - the real wheel, as a fixture

REPO = Path(__file__).resolve().parents[2]
CAT = str(REPO / "fixtures" / "images" / "cat.jpg")
pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "R34_EMULATE_ASCEND": "Ascend910B3:8", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "resnet34_npu", *argv],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=600,
    )


def compare_cat(tmp_path: Path, targets: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, dict]:
    """``compare`` of ``targets`` on the cat photo, untimed, on the emulated host: the process
    and its report."""
    report = tmp_path / "r.json"
    done = run("compare", "--target", *targets, "--image", CAT, "--iters", "0", "--output", str(report), env=env)
    return done, json.loads(report.read_text())


def test_eight_cards_are_probed_named_and_honour_visible_devices():
    done = run("devices", "--json")
    rows = [r for r in json.loads(done.stdout) if r["device"].startswith("npu")]
    assert [r["device"] for r in rows] == [f"npu:{k}" for k in range(8)] and all(r["available"] for r in rows)
    assert {r["name"] for r in rows} == {"Ascend910B3"}
    assert rows[0]["precision"]["ACL_PRECISION_MODE"].startswith("must_keep_origin_dtype")
    two = json.loads(run("devices", "--json", env={"ASCEND_RT_VISIBLE_DEVICES": "1,3"}).stdout)
    assert [r["device"] for r in two if r["device"].startswith("npu")] == ["npu:0", "npu:1"]


def test_every_card_and_precision_is_compared_timed_and_judged(tmp_path):
    report = tmp_path / "r.json"
    targets = [
        "npu:3/fp32",
        "npu:6/fp32/hf32=off",
        "npu:0/fp16",
        "npu:7/bf16",
        "npu:5/fp32/hf32=on",
        "npu:2/fp32/acl=allow_fp32_to_fp16/hf32=off",
    ]
    done = run("compare", "--target", *targets, "--image", CAT, "--iters", "2", "--output", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(report.read_text())
    got = {t["name"]: (t["verdict"], t["effective_precision"], t["device_name"]) for t in doc["targets"]}
    assert got == {  # CANN's default: convolutions in HF32, so a plain fp32 target is judged as hf32
        "npu:3/fp32": ("pass", "hf32", "Ascend910B3"),
        "npu:6/fp32/hf32=off": ("pass", "fp32", "Ascend910B3"),
        "npu:0/fp16": ("pass", "fp16", "Ascend910B3"),
        "npu:7/bf16": ("pass", "bf16", "Ascend910B3"),
        "npu:5/fp32/hf32=on": ("pass", "hf32", "Ascend910B3"),
        "npu:2/fp32/acl=allow_fp32_to_fp16/hf32=off": ("pass", "fp16", "Ascend910B3"),
    }
    errors = {t["name"]: t["images"][0]["metrics"]["rel_l2_error"] for t in doc["targets"]}
    assert errors["npu:6/fp32/hf32=off"] < 1e-6, "fp32 with must_keep_origin_dtype, HF32 off: what the CPU does"
    reduced = [n for n in targets if n != "npu:6/fp32/hf32=off"]
    assert all(1e-5 < errors[n] < 1e-2 for n in reduced), f"each reduced precision really is reduced: {errors}"
    assert all(t["latency_ms"]["clock"] == "device events" for t in doc["targets"])


def test_an_ascend910a_computes_fp32_in_fp16_and_is_judged_so(tmp_path):
    done, doc = compare_cat(tmp_path, ["npu:1/fp32"], {"R34_EMULATE_ASCEND": "Ascend910A:2"})
    target = doc["targets"][0]
    assert done.returncode == 0 and target["effective_precision"] == "fp16"
    assert "ACL_PRECISION_MODE=allow_fp32_to_fp16" in target["precision_reason"]


def test_one_bad_card_among_eight_fails_with_its_stage(tmp_path):
    targets = [f"npu:{k}/fp32" for k in range(8)]
    done, doc = compare_cat(tmp_path, targets, {"R34_EMULATED_FAULTS": "3"})
    verdicts = {t["name"]: t["verdict"] for t in doc["targets"]}
    assert done.returncode == 1 and verdicts == {n: ("fail" if n == "npu:3/fp32" else "pass") for n in targets}
    assert "FAIL npu:3/fp32 cat.jpg: first diverging stage: layer3.0.conv2:" in done.stdout


def test_pytest_runs_the_npu_targets_of_the_emulated_host(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["resnet34_npu.pytest_plugin"]\n')
    (tmp_path / "test_conformance.py").write_text((REPO / "tests/conformance/test_conformance.py").read_text())
    env = {**os.environ, "PYTHONPATH": str(REPO), "R34_EMULATE_ASCEND": "Ascend910B3:8", "R34_EMULATED_FAULTS": "5"}
    args = ["--r34-images=" + CAT, "--r34-iters=0", "-k", "test_verdict and batch1", "--r34-require=npu"]
    targets = [
        "npu:3/fp32/hf32=off",
        "npu:5",
        "npu:1/fp16",
        "npu:2/fp32",
        "npu:4/fp32/acl=allow_fp32_to_fp16",
        "npu:6/fp16/graph",
    ]
    targets = [f"--r34-target={t}" for t in targets]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, *targets],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout[-3000:]
    assert "resnet34-npu device npu:7: Ascend910B3" in done.stdout
    report = json.loads((tmp_path / "acceptance_report.json").read_text())
    assert {t["name"]: (t["verdict"], t["effective_precision"]) for t in report["targets"]} == {
        "npu:3/fp32/hf32=off": ("pass", "fp32"),
        "npu:5/fp32": ("fail", "hf32"),
        "npu:1/fp16": ("pass", "fp16"),
        "npu:2/fp32": ("pass", "hf32"),
        "npu:4/fp32/acl=allow_fp32_to_fp16": ("pass", "fp16"),
        "npu:6/fp16/graph": ("pass", "fp16"),
    }
    failed = next(t for t in report["targets"] if t["name"] == "npu:5/fp32")
    assert failed["images"][0]["localization"]["first_failing_stage"] == "layer3.0.conv2"


def test_the_emulation_never_replaces_a_real_torch_npu(tmp_path):
    (tmp_path / "torch_npu").mkdir()
    (tmp_path / "torch_npu" / "__init__.py").write_text("raise ImportError('a real torch_npu, without CANN')\n")
    env = {"PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"}
    done = run("devices", env=env)
    assert done.stderr.strip() == (
        "resnet34-npu: R34_EMULATE_ASCEND: a real torch_npu is installed here; the Ascend emulation never replaces it"
    )
    npu = next(line for line in done.stdout.splitlines() if line.startswith("npu"))
    assert (
        npu.split()[1:3] == ["not", "available"]
        and "import torch_npu failed: ImportError: a real torch_npu, without CANN" in npu
    )


def _definitions(root: Path) -> dict[str, list[str]]:
    """Top-level functions and classes of ``root``'s modules: name -> parameter names
    (a class: its ``__init__`` or ``__new__``, without self/cls)."""
    found: dict[str, list[str]] = {}
    for path in root.glob("*.py"):
        for node in ast.parse(path.read_text(errors="replace")).body:
            if isinstance(node, ast.FunctionDef):
                found.setdefault(node.name, [a.arg for a in node.args.args])
            elif isinstance(node, ast.ClassDef):
                init = [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name in ("__init__", "__new__")]
                found.setdefault(node.name, [a.arg for a in init[0].args.args[1:]] if init else [])
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found.setdefault(target.id, [])
    return found


@pytest.mark.npu_install
def test_every_standin_name_exists_in_the_real_wheel_with_its_signature(npu_site):  # noqa: F811
    real = _definitions(npu_site / "torch_npu" / "npu")
    ours = _definitions(STANDIN / "torch_npu" / "npu")
    public = ast.literal_eval(
        next(
            n.value
            for n in ast.parse((STANDIN / "torch_npu" / "npu" / "__init__.py").read_text()).body
            if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "__all__"
        )
    )
    missing = [name for name in public if name not in real]
    assert not missing, f"not in the real torch_npu.npu: {missing}"
    for name in public:
        if ours[name]:
            assert ours[name] == real[name][: len(ours[name])], f"{name}: {ours[name]} vs the real {real[name]}"
    # torch_npu._C is compiled: its Python sources call what the stand-in provides
    assert "torch_npu._C._npu_getOption(" in (npu_site / "torch_npu" / "npu" / "npu_config.py").read_text()


def test_minus_k_picks_one_card_and_the_npu_marker_selects_the_cards(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "R34_EMULATE_ASCEND": "Ascend910B3:8"}
    collect = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--collect-only",
        "-q",
        str(REPO / "tests/conformance"),
    ]
    one = subprocess.run([*collect, "-k", "npu:3"], capture_output=True, text=True, env=env, timeout=300)
    ids = [line for line in one.stdout.splitlines() if "::" in line]
    assert ids and all("npu:3" in i for i in ids), one.stdout[-2000:]
    marked = subprocess.run([*collect, "-m", "npu"], capture_output=True, text=True, env=env, timeout=300)
    cards = {i.split("[")[1].split("/")[0] for i in marked.stdout.splitlines() if "::" in i and "[npu:" in i}
    assert cards == {f"npu:{k}" for k in range(8)} and "[cpu" not in marked.stdout


GRAPH_REPLAY = """
import resnet34_npu, torch, torch_npu  # as on a real host, importing torch_npu registers the device
x = torch.zeros(3).to("npu:2")
graph = torch.npu.NPUGraph()
with torch.npu.graph(graph):
    y = x * 2 + 1
x.copy_(torch.tensor([1.0, 2.0, 3.0]))
print(y.cpu().tolist())
graph.replay()
print(y.cpu().tolist(), y.device)
"""


def test_an_emulated_npu_graph_replays_on_the_captured_memory():
    """Capturing computes nothing (the output holds garbage, NaN here, until the first replay);
    replay computes on whatever the static input holds now, as on a card."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "R34_EMULATE_ASCEND": "Ascend910B3:8"}
    done = subprocess.run([sys.executable, "-c", GRAPH_REPLAY], capture_output=True, text=True, env=env, timeout=300)
    assert done.stdout.splitlines() == ["[nan, nan, nan]", "[3.0, 5.0, 7.0] npu:2"], done.stderr[-2000:]
