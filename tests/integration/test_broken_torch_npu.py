"""A host with the real torch-npu wheel but no CANN: torch's backend auto-loading makes
``import torch`` itself fail there. The CLI and pytest must still start, report the NPU as
unavailable with the real cause, and run everything else. Marked ``slow`` (six subprocesses
that import torch): ``pytest -m slow`` runs them, and CI does.

The wheel (about 43 MB) is fetched once by ``python -m resnet34_npu emulation fetch`` (pip
download and install ``--no-deps`` into a folder of its own); without the package index the
tests skip with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnet34_npu.core.errors import InputError
from resnet34_npu.targets.emulation import wheel

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.npu_install, pytest.mark.subprocess, pytest.mark.slow]


@pytest.fixture(scope="module")
def npu_site() -> Path:
    """The real torch-npu wheel in its own folder (``emulation fetch``; skipped with the reason
    where the package index cannot be reached)."""
    try:
        return wheel.fetch()
    except InputError as exc:
        pytest.skip(f"the torch-npu {wheel.MODELLED} wheel is not available here: {exc}")


def _run(site: Path, *argv: str, autoload: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TORCH_DEVICE_BACKEND_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    if autoload is not None:
        env["TORCH_DEVICE_BACKEND_AUTOLOAD"] = autoload
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_the_wheel_really_breaks_import_torch_here(npu_site):
    plain = _run(npu_site, "-c", "import torch", autoload="1")
    if plain.returncode == 0:
        pytest.skip("this torch does not auto-load torch_npu (torch < 2.5) or CANN is installed")
    assert "torch_npu" in plain.stderr


def test_devices_reports_the_real_cause(npu_site):
    result = _run(npu_site, "-m", "resnet34_npu", "devices")
    assert result.returncode == 0, result.stderr
    npu_line = next(line for line in result.stdout.splitlines() if line.startswith("npu"))
    cause = _run(npu_site, "-c", "import torch_npu", autoload="0").stderr.strip().splitlines()[-1]
    assert "not available" in npu_line and f"import torch_npu failed: {cause}" in npu_line
    assert result.stdout.splitlines()[0].startswith("cpu ") and "available" in result.stdout.splitlines()[0]
    # the cause (CANN missing) with its fix, and the release that is installed though it did not import
    assert "libhccl.so" in npu_line and "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in npu_line
    assert f"torch_npu {wheel.MODELLED} installed" in npu_line


def test_a_report_names_the_installed_torch_npu_that_failed_to_import(npu_site, tmp_path):
    image = REPO / "fixtures" / "images" / "cat.jpg"
    report = tmp_path / "r.json"
    argv = ["-m", "resnet34_npu", "compare", "--target", "cpu/fp32", "--image", str(image), "--iters", "0"]
    result = _run(npu_site, *argv, "--output", str(report))
    assert result.returncode == 0, result.stderr
    machine = __import__("json").loads(report.read_text())["machine"]
    assert machine["torch_npu"] == wheel.MODELLED and machine["emulated"] is None


def test_infer_on_cpu_still_runs_and_npu_is_refused_in_one_line(npu_site):
    ok = _run(npu_site, "-m", "resnet34_npu", "infer", "--device", "cpu", "--warmup", "0", "--iters", "1")
    assert ok.returncode == 0 and "[134]" in ok.stdout, ok.stderr
    refused = _run(npu_site, "-m", "resnet34_npu", "infer", "--device", "npu")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith(
        "resnet34-npu infer: error: device 'npu' is not available: import torch_npu failed"
    )


def test_pytest_still_starts(npu_site):
    result = _run(npu_site, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/model/test_labels.py")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "2 passed" in result.stdout


def test_autoload_forced_on_is_one_line_and_exit_2(npu_site):
    """With TORCH_DEVICE_BACKEND_AUTOLOAD=1 set by the user, `import torch` itself fails here:
    one line naming the cause (libhccl.so), the variable as the user set it (torch_npu rewrites it
    to 0 while it imports) and the fix; exit 2 from the CLI, a usage error from pytest."""
    result = _run(npu_site, "-m", "resnet34_npu", "devices", autoload="1")
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.count("\n") == 1 and "importing torch failed" in result.stderr
    assert "TORCH_DEVICE_BACKEND_AUTOLOAD=1 makes torch load torch_npu" in result.stderr
    assert "libhccl.so" in result.stderr and "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in result.stderr
    tests = _run(
        npu_site, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/model/test_labels.py", autoload="1"
    )
    assert tests.returncode == 4 and "importing torch failed" in tests.stderr, tests.stdout[-2000:] + tests.stderr
    assert "Traceback" not in tests.stderr
