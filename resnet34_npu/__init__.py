"""resnet34-npu: a conformance suite for ResNet34 on accelerators (Ascend NPUs first).

Importing the package sets ``TORCH_DEVICE_BACKEND_AUTOLOAD=0`` unless it is already set, before
torch is first imported: a host with torch_npu installed but no CANN would otherwise fail at
``import torch`` itself. torch_npu is imported explicitly, inside try/except, only when an NPU
is asked for or probed (see ``devices.py``). When torch itself cannot be imported, the package
still imports (``import_error()`` says why), so the command line can report it in one line
(``launch.py``). The names that need torch are imported on first use, so that ``import
resnet34_npu`` and every ``--help`` start without it.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

#: TORCH_DEVICE_BACKEND_AUTOLOAD as the user set it (None: unset), before this package or torch_npu
#: (which rewrites it while importing) touched it: what a failing ``import torch`` is explained with.
USER_AUTOLOAD = os.environ.get("TORCH_DEVICE_BACKEND_AUTOLOAD")
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

if os.environ.get("R34_EMULATE_ASCEND", "").strip().lower() not in ("", "0", "off", "false", "no"):
    # an emulated Ascend host (CI): see emulation/__init__.py
    from resnet34_npu.targets.emulation import ENV, activate, parse, refuse

    try:
        activate(*parse(os.environ[ENV]))
    except RuntimeError as _exc:  # a real torch_npu is here: it is used, never emulated; one line
        import sys

        print(f"resnet34-npu: {_exc}", file=sys.stderr)
    except Exception as _exc:  # a value that is wrong, or no wheel: the CLI exits 2, pytest stops (UsageError)
        refuse(_exc)

from resnet34_npu.core.constants import __version__  # noqa: E402, F401  (the package's version)
from resnet34_npu.core.errors import InputError, NonDeterminismWarning, RankingWarning  # noqa: E402
from resnet34_npu.judge.criteria import PROFILES, Status, Verdict, judge  # noqa: E402
from resnet34_npu.judge.metrics import Comparison, compare_logits, compare_tensors  # noqa: E402
from resnet34_npu.model.labels import class_name, class_names  # noqa: E402
from resnet34_npu.model.weights import WeightsInfo, parse_weights_spec  # noqa: E402

#: The names that need torch (or torchvision, PIL) when imported: each is imported on first use
#: (PEP 562), so that ``import resnet34_npu`` and ``--help`` do not pay for torch.
_LAZY = {
    **dict.fromkeys(("CaseResult", "Session", "TargetResult"), "resnet34_npu.judge.compare"),
    "load_image": "resnet34_npu.model.images",
    **dict.fromkeys(("build_model", "build_model_with_info", "count_parameters"), "resnet34_npu.model.network"),
    **dict.fromkeys(("make_batch", "preprocess"), "resnet34_npu.model.preprocess"),
    **dict.fromkeys(("Runner", "build_runner"), "resnet34_npu.targets.runners"),
    "parse_target": "resnet34_npu.targets.spec",
}


def import_error() -> BaseException | None:
    """Why the API cannot be imported here (torch failing at import), or None. The entry point
    (``launch.py``) reports it in one line; a library user gets an ImportError saying so."""
    for module in dict.fromkeys(_LAZY.values()):
        try:
            importlib.import_module(module)
        except Exception as exc:  # torch (or torchvision) cannot be imported here
            return exc
    return None


__all__ = [
    "PROFILES",
    "CaseResult",
    "Comparison",
    "InputError",
    "NonDeterminismWarning",
    "RankingWarning",
    "Runner",
    "Session",
    "Status",
    "TargetResult",
    "Verdict",
    "WeightsInfo",
    "build_model",
    "build_model_with_info",
    "build_runner",
    "class_name",
    "class_names",
    "compare_logits",
    "compare_tensors",
    "count_parameters",
    "judge",
    "load_image",
    "make_batch",
    "parse_target",
    "parse_weights_spec",
    "preprocess",
]


def __getattr__(name: str) -> Any:
    if name == "IMPORT_ERROR":
        return import_error()
    if name not in _LAZY:
        raise AttributeError(f"module 'resnet34_npu' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    except Exception as exc:
        raise ImportError(
            f"resnet34_npu.{name} is unavailable: importing torch failed ({type(exc).__name__}: {exc})"
        ) from exc
    globals()[name] = value
    return value
