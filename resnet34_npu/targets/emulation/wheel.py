"""The real torch-npu wheel the emulated host runs: fetched from the package index with
``pip download --no-deps`` and installed with ``pip install --no-deps --target`` into a folder of
its own (never into the user's environment): ``python -m resnet34_npu emulation fetch``.

Its folder is ``$R34_TORCH_NPU_SITE``, else ``<cache>/torch-npu-<MODELLED>/site`` (the cache is the
weights' cache folder, ``$RESNET34_NPU_CACHE`` or ``~/.cache/resnet34_npu``). The emulation models
one release, :data:`MODELLED`; another is refused in one line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from resnet34_npu.core.errors import InputError

#: The torch_npu release whose native layer the emulation models.
MODELLED = "2.14.0"
SITE_ENV = "R34_TORCH_NPU_SITE"
FETCH = "python -m resnet34_npu emulation fetch"


def cache_root() -> Path:
    return Path(os.environ.get("RESNET34_NPU_CACHE") or "~/.cache/resnet34_npu").expanduser()


def site() -> Path:
    """The folder holding the wheel's ``torch_npu`` package."""
    given = os.environ.get(SITE_ENV)
    return Path(given).expanduser() if given else cache_root() / f"torch-npu-{MODELLED}" / "site"


def version_at(folder: Path) -> str | None:
    """The torch_npu release installed in ``folder`` (its ``version.py``), or None."""
    try:
        text = (folder / "torch_npu" / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", text, re.M)
    return found.group(1) if found else None


def check(folder: Path) -> Path:
    """``folder`` if it holds the modelled release; else one line saying what to do."""
    version = version_at(folder)
    if version is None:
        raise InputError(
            f"the emulated Ascend host runs the real torch_npu {MODELLED} Python layer, not found in {folder}: "
            f"run `{FETCH}` (or set {SITE_ENV})"
        )
    if version.split("+")[0] != MODELLED:
        raise InputError(
            f"the emulated Ascend host models torch_npu {MODELLED}'s native layer; {folder} holds torch_npu "
            f"{version}: run `{FETCH}` into another folder"
        )
    return folder


def fetch(folder: Path | None = None) -> Path:
    """Download the torch-npu wheel and install it, without dependencies, into ``folder``."""
    folder = folder or site()
    if version_at(folder) == MODELLED:
        return folder
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and version_at(folder) is None:
        raise InputError(f"{folder} exists and holds no torch_npu: give an empty or new folder to install into")
    return install_apart([f"torch-npu=={MODELLED}"], folder)


def install_apart(requirements: list[str], folder: Path) -> Path:
    """``pip download --no-deps`` each of ``requirements`` (binary wheels only) and install them with
    ``--no-deps --target`` into ``folder``, replacing it: a folder of their own, put on ``PYTHONPATH``
    by whoever runs them, never the environment's site-packages."""
    bad = [r for r in requirements if "==" not in r]
    if bad:
        raise InputError(f"install_apart takes pinned requirements (NAME==VERSION), not {', '.join(bad)}")
    wheels = folder.parent / f"{folder.name}.wheels"
    shutil.rmtree(wheels, ignore_errors=True)  # only this download's wheels: one per requirement
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    what = " ".join(requirements)
    got = subprocess.run(
        [*pip, "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(wheels), *requirements],
        capture_output=True,
        text=True,
    )
    if got.returncode != 0:
        last = (got.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise InputError(f"pip download {what} failed: {last}")
    found = [
        w for w in sorted(wheels.glob("*.whl")) if any(w.name.lower().startswith(_wheel_stem(r)) for r in requirements)
    ]
    if len(found) < len(requirements):
        raise InputError(f"pip download {what} left no wheel for each of them in {wheels}")
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "-q", "--target", str(tmp), *map(str, found)],
        capture_output=True,
        text=True,
    )
    if installed.returncode != 0:
        last = (installed.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise InputError(f"pip install of {what} into {tmp} failed: {last}")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def _wheel_stem(requirement: str) -> str:
    """``torch-npu==2.13.0`` -> ``torch_npu-2.13.0-``: how that release's wheel file name starts."""
    name, _, version = requirement.partition("==")
    return f"{name.replace('-', '_').lower()}-{version}-"
