"""The NPU path run for real on an emulated Ascend host (``R34_EMULATE_ASCEND``): the real
torch_npu 2.14.0 Python layer over the emulated native layer. The probe, device names,
``npu:k`` placement, synchronisation, event timing, the ACL precision mode per SoC, HF32,
fp16/bf16, the overflow mode, a bad card among good ones, one verdict through compare and
pytest, bad input; and every name of the emulated ``torch_npu._C`` checked against the real
compiled modules. Each run is a fresh process: marked ``slow``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnet34_npu.targets.emulation import wheel
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
    assert all(r["emulated"] for r in rows) and rows[0]["precision"]["npu.overflow_mode"] == "INF_NAN"
    banner = run("devices").stdout.splitlines()[0]
    assert banner.startswith("EMULATED Ascend host") and f"torch_npu {wheel.MODELLED}" in banner


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


@pytest.mark.npu_install
def test_the_real_torch_npu_runs_over_the_emulated_native_layer(npu_site):  # noqa: F811
    """Everything above torch_npu._C is Huawei's code from the wheel; every name the emulated
    native layer provides is one the wheel's compiled modules define (their symbol strings)."""
    probe = (
        "import resnet34_npu, torch, torch_npu, json; "
        "print(json.dumps([torch_npu.__file__, torch_npu.__version__, torch_npu.npu.__file__, "
        "torch_npu._C.__file__ if hasattr(torch_npu._C, '__file__') else None, sorted(vars(torch_npu._C))]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "R34_EMULATE_ASCEND": "Ascend910B3:8"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    package, version, npu_module, compiled, names = json.loads(done.stdout.strip().splitlines()[-1])
    assert package.startswith(str(npu_site)) and npu_module.startswith(str(npu_site))
    assert version == wheel.MODELLED and compiled is None  # the compiled module is not what was loaded
    binary = b"".join(p.read_bytes() for p in (npu_site / "torch_npu").glob("_C.*.so"))
    binary += (npu_site / "torch_npu" / "lib" / "libtorch_npu.so").read_bytes()
    provided = [n for n in names if n.startswith("_") and not n.startswith("__")]
    assert len(provided) > 60
    unknown = [n for n in provided if n.encode() not in binary]
    assert not unknown, f"the emulated torch_npu._C provides names the real one does not: {unknown}"


def test_visible_devices_follow_torch_npus_own_parser():
    """ASCEND_RT_VISIBLE_DEVICES as torch_npu reads it: ids must ascend ("3,1": no device at all)."""
    got = {}
    for value in ("3,1", "0,2,9", "5"):
        done = run("devices", "--json", env={"ASCEND_RT_VISIBLE_DEVICES": value})
        got[value] = [r["device"] for r in json.loads(done.stdout) if r["device"].startswith("npu") and r["available"]]
    assert got == {"3,1": [], "0,2,9": ["npu:0", "npu:1"], "5": ["npu:0"]}


@pytest.mark.parametrize(
    "env, says",
    [
        ({"R34_EMULATE_ASCEND": "Ascend910C:8"}, "Unsupported soc version: 'Ascend910C'"),
        ({"R34_EMULATE_ASCEND": "Ascend910B3:40"}, "the number of cards must be 1 to 16"),
        ({"R34_EMULATED_FAULTS": "8:ulp"}, "card 8 is not there; this emulated host has cards 0-7"),
        ({"R34_EMULATED_FAULTS": "3:wobble"}, "'3:wobble' is not a fault"),
        ({"ASCEND_RT_VISIBLE_DEVICES": "0;1"}, "ASCEND_RT_VISIBLE_DEVICES='0;1'"),
    ],
)
def test_a_wrong_emulated_host_is_one_line_and_exit_2(env, says, tmp_path):
    done = run("devices", env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and says in done.stderr
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["resnet34_npu.pytest_plugin"]\n')
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    environment = {**os.environ, "PYTHONPATH": str(REPO), "R34_EMULATE_ASCEND": "Ascend910B3:8", **env}
    pytest_run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=300,
    )
    assert pytest_run.returncode == 4 and says in pytest_run.stderr and "Traceback" not in pytest_run.stderr


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
with torch.npu.device(2), torch.npu.graph(graph, stream=torch.npu.Stream(device="npu:2")):
    y = x * 2 + 1
x.copy_(torch.tensor([1.0, 2.0, 3.0]))
print(y.cpu().tolist())
graph.replay()
print(y.cpu().tolist(), y.device)
"""
#: the same capture on torch.npu.graph's default stream, made on npu:0: the work on npu:2 is refused
WRONG_CARD = GRAPH_REPLAY.replace(
    'torch.npu.device(2), torch.npu.graph(graph, stream=torch.npu.Stream(device="npu:2"))', "torch.npu.graph(graph)"
)


def test_an_emulated_npu_graph_replays_on_the_captured_memory():
    """Capturing computes nothing (the output holds garbage, NaN here, until the first replay);
    replay computes on whatever the static input holds now, as on a card; torch.npu.graph is the
    real torch_npu's (it captures on its own side stream)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "R34_EMULATE_ASCEND": "Ascend910B3:8"}
    done = subprocess.run([sys.executable, "-c", GRAPH_REPLAY], capture_output=True, text=True, env=env, timeout=300)
    assert done.stdout.splitlines()[-2:] == ["[nan, nan, nan]", "[3.0, 5.0, 7.0] npu:2"], done.stderr[-2000:]
    wrong = subprocess.run([sys.executable, "-c", WRONG_CARD], capture_output=True, text=True, env=env, timeout=300)
    assert wrong.returncode != 0 and "aten::mul on npu:2 while npu:0's stream is capturing a graph" in wrong.stderr


def test_compare_and_pytest_give_every_target_the_same_verdict(tmp_path):
    """One verdict through both doors: the same targets on the same emulated host, with a card
    that fails against the CPU (npu:1) and one that only card-to-card sees (npu:3, 1 ulp off)."""
    faults = {"R34_EMULATED_FAULTS": "1,3:ulp"}
    targets = ["npu:0/fp32", "npu:1/fp32", "npu:2/fp32", "npu:3/fp32", "npu:4/fp32", "npu:2/fp16"]
    done, doc = compare_cat(tmp_path, targets, faults)
    assert done.returncode == 1, done.stdout[-3000:]
    through_compare = {t["name"]: t["verdict"] for t in doc["targets"]}
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["resnet34_npu.pytest_plugin"]\n')
    (tmp_path / "test_conformance.py").write_text((REPO / "tests/conformance/test_conformance.py").read_text())
    env = {**os.environ, "PYTHONPATH": str(REPO), "R34_EMULATE_ASCEND": "Ascend910B3:8", **faults}
    args = ["--r34-images=" + CAT, "--r34-iters=0", "-k", "test_verdict and batch1 or test_card_to_card"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, *(f"--r34-target={t}" for t in targets)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert done.returncode == 1, done.stdout[-3000:]
    report = json.loads((tmp_path / "acceptance_report.json").read_text())
    through_pytest = {t["name"]: t["verdict"] for t in report["targets"]}
    assert through_compare == through_pytest
    assert through_pytest == {  # three healthy fp32 cards of five: the majority names the other two
        "npu:0/fp32": "pass",
        "npu:1/fp32": "fail",
        "npu:2/fp32": "pass",
        "npu:3/fp32": "fail",
        "npu:4/fp32": "pass",
        "npu:2/fp16": "pass",
    }
    assert (
        "test_card_to_card[npu:3/fp32-cat.jpg] FAILED" in done.stdout
        or "FAILED test_conformance.py::test_card_to_card[npu:3/fp32-cat.jpg]" in done.stdout
    )


OVERFLOW = """
import resnet34_npu, torch, torch_npu
x = torch.tensor([1e38, -1e38, float("nan")]).to("npu:0")
print((x * 10).cpu().tolist(), torch_npu.npu.utils.is_support_inf_nan())
"""


@pytest.mark.parametrize(
    "soc, out",
    [
        ("Ascend910B3", "[inf, -inf, nan] True"),  # INF_NAN mode (A2/A3)
        ("Ascend910A", "[3.4028234663852886e+38, -3.4028234663852886e+38, 0.0] False"),  # saturation only
    ],
)
def test_the_overflow_mode_follows_the_soc(soc, out):
    env = {**os.environ, "PYTHONPATH": str(REPO), "R34_EMULATE_ASCEND": f"{soc}:1"}
    done = subprocess.run([sys.executable, "-c", OVERFLOW], capture_output=True, text=True, env=env, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == out, done.stderr[-2000:]
