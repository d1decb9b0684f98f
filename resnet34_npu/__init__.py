"""resnet34-npu: a conformance suite for ResNet34 on accelerators (Ascend NPUs first).

Importing the package sets ``TORCH_DEVICE_BACKEND_AUTOLOAD=0`` unless it is already set, before
torch is first imported: a host with torch_npu installed but no CANN would otherwise fail at
``import torch`` itself. torch_npu is imported explicitly, inside try/except, only when an NPU
is asked for or probed (see ``devices.py``). The package itself imports no torch: the names
below load their module on first use, so the command line can report a torch that fails to
import in one line (``launch.py``).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

__version__ = "0.1.0"

#: The documented API: name -> the module that defines it.
_API = {
    "CaseResult": "compare",
    "Session": "compare",
    "TargetResult": "compare",
    "PROFILES": "criteria",
    "Status": "criteria",
    "Verdict": "criteria",
    "judge": "criteria",
    "InputError": "errors",
    "NonDeterminismWarning": "errors",
    "RankingWarning": "errors",
    "load_image": "images",
    "class_name": "labels",
    "class_names": "labels",
    "Comparison": "metrics",
    "compare_logits": "metrics",
    "compare_tensors": "metrics",
    "build_model": "model",
    "build_model_with_info": "model",
    "count_parameters": "model",
    "make_batch": "preprocess",
    "preprocess": "preprocess",
    "Runner": "runners",
    "build_runner": "runners",
    "parse_target": "targets",
    "WeightsInfo": "weights",
    "parse_weights_spec": "weights",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'resnet34_npu' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
