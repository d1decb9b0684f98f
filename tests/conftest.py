"""Shared fixtures: real bundled images, real seeded weights (cached outside the repo)."""

from __future__ import annotations

import gc
import subprocess
from pathlib import Path

import pytest
import torch

from resnet34_npu.core.constants import IMAGES_DIR
from resnet34_npu.model.network import build_model_with_info
from resnet34_npu.targets import devices

ALL_IMAGES = sorted(p for p in IMAGES_DIR.iterdir() if p.is_file())


@pytest.fixture(scope="session")
def seeded():
    """(model, WeightsInfo) for ``seeded``: built once per session from the cache."""
    return build_model_with_info("seeded")


@pytest.fixture(scope="session")
def seeded_model(seeded) -> torch.nn.Module:
    return seeded[0]


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    """An empty weights cache, so generation itself is exercised."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNET34_NPU_CACHE", str(cache))
    return cache


@pytest.fixture
def avx2_only(monkeypatch):
    """This host judged as a CPU without native bf16 and fp16 kernels: AVX2 only, what
    ``ATEN_CPU_CAPABILITY=avx2`` makes torch report."""
    monkeypatch.setattr(devices, "cpu_capability", lambda: "AVX2")
    devices.cpu_native_kernels.cache_clear()
    yield
    devices.cpu_native_kernels.cache_clear()


@pytest.fixture
def full_disk(tmp_path):
    """A real, full filesystem: a 64 KiB tmpfs filled to the last byte (needs root and mount)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here to fill it: {done.stderr.decode().strip()[:120]}")
    try:
        (mount / "old.json").write_text('{"verdict": "pass", "old": true}')
        with open(mount / "filler", "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"x" * 4096)
                    handle.flush()
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def pytest_collection_finish(session):
    """What is imported by now (torch, torchvision, the suite, the test modules) lives until
    the process ends: taking it out of the garbage collector's view makes every full
    collection cheap, including the five pytest runs at exit (about 1 s otherwise)."""
    gc.freeze()
