"""Shared fixtures: real bundled images, real seeded weights (cached outside the repo)."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest

from resnet34_npu.core.constants import IMAGES_DIR
from resnet34_npu.core.errors import InputError
from resnet34_npu.targets import devices

if TYPE_CHECKING:
    import torch

ALL_IMAGES = sorted(p for p in IMAGES_DIR.iterdir() if p.is_file())
#: The suite's own tests (of its code, on the CPU), as against the conformance suite users run on
#: their hardware (conformance/, controls/, ops/): marked ``selftest``, left out of an acceptance run.
SELF_TESTS = ("unit", "integration", "benchmarks")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).resolve().parent
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(root).parts if str(item.path).startswith(str(root)) else ()
        if parts and parts[0] in SELF_TESTS:
            item.add_marker(pytest.mark.selftest)


@pytest.fixture(scope="session")
def seeded():
    """(model, WeightsInfo) for ``seeded``: built once per session from the cache."""
    from resnet34_npu.model.network import build_model_with_info

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


#: Who runs a check where file permissions bind, when this process is root (CI runs as root,
#: and root writes in a read-only folder): ``nobody``.
NOBODY = 65534


class Unprivileged:
    """A folder that any user may write in (``folder``) and :meth:`refusal`, which runs a check as a
    user whose file permissions bind: this one, or ``nobody`` when this process is root."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def refusal(self, check: Callable[[Path], object], path: Path) -> str | None:
        """The InputError message of ``check(path)``, or None when it accepts ``path``. As root,
        ``check`` runs in a forked child that drops to ``nobody`` first."""
        if os.geteuid() != 0:
            try:
                check(path)
            except InputError as exc:
                return str(exc)
            return None
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            status = 1
            try:
                os.close(read)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                try:
                    check(path)
                    answer = "accepted"
                except InputError as exc:
                    answer = f"refused {exc}"
                os.write(write, answer.encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            answer = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        assert status == 0 and answer, f"{check.__name__}({str(path)!r}) crashed as nobody"
        return None if answer == "accepted" else answer.removeprefix("refused ")


@pytest.fixture
def unprivileged() -> Unprivileged:
    folder = Path(tempfile.mkdtemp(prefix="r34-unprivileged-"))
    folder.chmod(0o777)  # nobody may enter and write in it; each test locks what it needs
    try:
        yield Unprivileged(folder)
    finally:
        for inner in folder.rglob("*"):
            if inner.is_dir():
                inner.chmod(0o755)
        shutil.rmtree(folder)


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
