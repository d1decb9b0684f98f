"""resnet34-npu: a conformance suite for ResNet34 on accelerators (Ascend NPUs first).

Importing the package sets ``TORCH_DEVICE_BACKEND_AUTOLOAD=0`` unless it is already set, before
torch is first imported: a host with torch_npu installed but no CANN would otherwise fail at
``import torch`` itself. torch_npu is imported explicitly, inside try/except, only when an NPU
is asked for or probed (see ``devices.py``). When torch itself cannot be imported, the package
still imports (``IMPORT_ERROR`` says why), so the command line can report it in one line
(``launch.py``).
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

if os.environ.get("R34_EMULATE_ASCEND", "").strip().lower() not in ("", "0", "off", "false", "no"):
    # an emulated Ascend host (CI): see emulation/__init__.py
    from resnet34_npu.targets.emulation import ENV, activate, parse

    try:
        activate(*parse(os.environ[ENV]))
    except Exception as _exc:  # a real torch_npu is here, or the value is wrong: no emulation, one line
        import sys

        print(f"resnet34-npu: {_exc}", file=sys.stderr)

from resnet34_npu.core.constants import __version__  # noqa: E402, F401  (the package's version)

#: Why the API could not be imported (torch failing at import), or None. The entry point
#: (``launch.py``) reports it in one line; a library user gets an ImportError saying so.
IMPORT_ERROR: BaseException | None = None

try:
    from resnet34_npu.core.errors import InputError, NonDeterminismWarning, RankingWarning
    from resnet34_npu.judge.compare import CaseResult, Session, TargetResult
    from resnet34_npu.judge.criteria import PROFILES, Status, Verdict, judge
    from resnet34_npu.judge.metrics import Comparison, compare_logits, compare_tensors
    from resnet34_npu.model.images import load_image
    from resnet34_npu.model.labels import class_name, class_names
    from resnet34_npu.model.network import build_model, build_model_with_info, count_parameters
    from resnet34_npu.model.preprocess import make_batch, preprocess
    from resnet34_npu.model.weights import WeightsInfo, parse_weights_spec
    from resnet34_npu.targets.runners import Runner, build_runner
    from resnet34_npu.targets.spec import parse_target
except Exception as exc:  # torch (or torchvision) cannot be imported here
    IMPORT_ERROR = exc

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
    if name in __all__ and IMPORT_ERROR is not None:
        raise ImportError(
            f"resnet34_npu.{name} is unavailable: importing torch failed "
            f"({type(IMPORT_ERROR).__name__}: {IMPORT_ERROR})"
        ) from IMPORT_ERROR
    raise AttributeError(f"module 'resnet34_npu' has no attribute {name!r}")
