"""A host with the real torch-npu wheel but no CANN: torch's backend auto-loading makes
``import torch`` itself fail there. The CLI and pytest must still start, report the NPU as
unavailable with the real cause, and run everything else. Marked ``slow`` (six subprocesses
that import torch): ``pytest -m slow`` runs them, and CI does.

The wheel (about 43 MB) is fetched once from PyPI with ``pip download --no-deps`` into the
cache folder and installed with ``--no-deps`` into a folder of its own; without network or
without a torch-npu release for this torch, the tests skip with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet34_npu.model.weights import cache_dir

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.npu_install, pytest.mark.subprocess, pytest.mark.slow]


@pytest.fixture(scope="module")
def npu_site() -> Path:
    major_minor = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    root = cache_dir() / f"torch-npu-{major_minor}"
    site = root / "site"
    if not (site / "torch_npu").is_dir():
        wheels = root / "wheels"
        got = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-q",
                "-d",
                str(wheels),
                f"torch-npu=={major_minor}.*",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if got.returncode != 0:
            pytest.skip(
                f"torch-npu {major_minor}.* wheel not available from the package index: "
                f"{got.stderr.strip().splitlines()[-1:]}"
            )
        tmp = root / "site.tmp"
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
        installed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--no-compile",
                "-q",
                "--target",
                str(tmp),
                *map(str, wheels.glob("*.whl")),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if installed.returncode != 0:
            pytest.skip(f"torch-npu wheel did not install: {installed.stderr.strip().splitlines()[-1:]}")
        os.replace(tmp, site)
    return site


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


def test_autoload_forced_on_is_one_line_and_exit_3(npu_site):
    """With TORCH_DEVICE_BACKEND_AUTOLOAD=1 set by the user, `import torch` itself fails here:
    one line naming the cause and the fix, exit 3 (never 1, "a target failed")."""
    result = _run(npu_site, "-m", "resnet34_npu", "devices", autoload="1")
    assert result.returncode == 3 and result.stdout == "", result.stderr
    assert result.stderr.count("\n") == 1 and "importing torch failed" in result.stderr
    assert "unset the variable, or fix the torch_npu install" in result.stderr
