"""The JSON reports of ``compare`` and of the pytest suite (docs/report-schema.md), and the one
text-table layout both print.

Written atomically: a temporary file in the same folder, then a rename, so a reader never
sees half a report. Non-finite floats are written as the strings "nan", "inf", "-inf" (JSON
has no NaN).
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torchvision

from resnet34_npu.core.constants import __version__
from resnet34_npu.core.documents import utc_now
from resnet34_npu.judge.criteria import Status
from resnet34_npu.targets import devices, emulation

#: 2: "localisation" became "localization" (one spelling across the suite).
SCHEMA_VERSION = 2


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
        "torch_npu": getattr(torch_npu, "__version__", None) if torch_npu else devices.installed_torch_npu(),
        "emulated": None if emulation.active() is None else emulation.active().to_dict(),
        "cann": _cann_version(),
        "cuda_runtime": torch.version.cuda,
        "resnet34_npu": __version__,
        "devices": sorted(set(device_names)),
    }


def unfinished_report(command: str) -> dict[str, Any]:
    """What stands at a report's path while a run is under way: a run that never finishes
    (killed, interrupted) leaves this, never the previous run's verdict."""
    return {
        "schema_version": SCHEMA_VERSION,
        "created": utc_now(),
        "verdict": Status.INTERRUPTED,
        "interrupted": True,
        "note": f"{command} started and has not finished; a finished run replaces this file",
    }


def build_report(
    *,
    profile: str,
    weights: dict[str, Any],
    reference: dict[str, Any],
    targets: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report document: verdict "fail" when any target failed, else "pass"."""
    names = [reference.get("device_name", "")] + [t.get("device_name", "") for t in targets]
    return {
        "schema_version": SCHEMA_VERSION,
        "created": utc_now(),
        "verdict": Status.FAIL if any(t["verdict"] == Status.FAIL for t in targets) else Status.PASS,
        "profile": profile,
        "machine": machine_info(n for n in names if n),
        "weights": weights,
        "reference": reference,
        "targets": targets,
        **(extra or {}),
    }


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, float) else str(value)


SUMMARY_HEADER = ("target", "image", "batch", "verdict", "rel L2", "cosine", "max abs", "top-1", "top-5", "median ms")


def summary_rows(records: Iterable[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row per verdict record (target x image x batch) for the suite's terminal summary."""
    rows = {}
    for record in records:
        if record.get("kind") != "verdict":
            continue
        case, m = record["case"], record["case"]["metrics"]
        latency = record.get("latency_ms")
        rows[(record["target"], tuple(case["paths"]), case["batch_size"])] = (
            record["target"],
            case["image"].split("+")[0],
            str(case["batch_size"]),
            case["verdict"].upper(),
            # a target that raised measured nothing: its metrics are empty
            *(
                (
                    _number(m["rel_l2_error"], ".2e"),
                    _number(m["cosine_similarity"], ".8f"),
                    _number(m["max_abs_error"], ".2e"),
                    f"{m['top1_match']:.2f}",
                    f"{m['top5_overlap']:.2f}/5",
                )
                if m
                else ("-",) * 5
            ),
            "-" if not latency else f"{latency['median']:.2f}",
        )
    return list(rows.values())
