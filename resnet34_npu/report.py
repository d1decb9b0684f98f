"""The JSON report of ``compare`` and of the pytest suite (docs/report-schema.md).

Written atomically: a temporary file in the same folder, then a rename, so a reader never
sees half a report. Non-finite floats are written as the strings "nan", "inf", "-inf" (JSON
has no NaN).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch
import torchvision

from . import __version__, devices
from .errors import InputError

SCHEMA_VERSION = 1


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _cann_version() -> str | None:
    home = os.environ.get("ASCEND_TOOLKIT_HOME") or "/usr/local/Ascend/ascend-toolkit/latest"
    for candidate in (Path(home) / "version.cfg", *Path(home).glob("*/ascend_toolkit_install.info")):
        try:
            for line in candidate.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip().lower() in ("version", "toolkit_version", "runtime_running_version"):
                    return value.strip().strip('"[]').split(":")[0] or None
        except OSError:
            continue
    return None


def machine_info(device_names: Iterable[str] = ()) -> dict[str, Any]:
    """Host, CPU, Python, torch, torchvision, torch_npu and CANN (where present), device names."""
    torch_npu = sys.modules.get("torch_npu")
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": devices.cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_npu": getattr(torch_npu, "__version__", None) if torch_npu else None,
        "cann": _cann_version(),
        "cuda_runtime": torch.version.cuda,
        "resnet34_npu": __version__,
        "devices": sorted(set(device_names)),
    }


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(_clean(document), indent=2, allow_nan=False) + "\n"


def write_json_atomic(path: str | Path, document: dict[str, Any]) -> Path:
    """Write ``document`` to ``path`` via a temporary file and a rename."""
    path = Path(path)
    text = dumps(document)
    if path.is_dir():
        raise InputError(f"report '{path}': is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"report '{path}': cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_writable(path: str | Path) -> Path:
    """Fail early, before any work, when the report cannot be written at ``path``: its folder
    is created if missing, then a probe file is created and removed there."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"report '{path}': is a directory")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"report '{path}': cannot write in '{parent}' ({exc.strerror or exc})") from None
    return path


def build_report(*, profile: str, weights: dict[str, Any], reference: dict[str, Any], targets: list[dict[str, Any]],
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report document: verdict "fail" when any target failed, else "pass"."""
    names = [reference.get("device_name", "")] + [t.get("device_name", "") for t in targets]
    return {
        "schema_version": SCHEMA_VERSION,
        "created": utc_now(),
        "verdict": "fail" if any(t["verdict"] == "fail" for t in targets) else "pass",
        "profile": profile,
        "machine": machine_info(n for n in names if n),
        "weights": weights,
        "reference": reference,
        "targets": targets,
        **(extra or {}),
    }
