"""resnet34-npu: a conformance suite for ResNet34 on accelerators (Ascend NPUs first).

Importing the package sets ``TORCH_DEVICE_BACKEND_AUTOLOAD=0`` unless it is already set, before
torch is first imported: a host with torch_npu installed but no CANN would otherwise fail at
``import torch`` itself. torch_npu is imported explicitly, inside try/except, only when an NPU
is asked for or probed (see ``devices.py``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from .compare import CaseResult, Session, TargetResult  # noqa: E402
from .criteria import PROFILES, Status, Verdict, judge  # noqa: E402
from .errors import InputError, NonDeterminismWarning, RankingWarning  # noqa: E402
from .images import load_image  # noqa: E402
from .labels import class_name, class_names  # noqa: E402
from .metrics import Comparison, compare_logits, compare_tensors  # noqa: E402
from .model import build_model, build_model_with_info, count_parameters  # noqa: E402
from .preprocess import make_batch, preprocess  # noqa: E402
from .runners import Runner, build_runner  # noqa: E402
from .targets import parse_target  # noqa: E402
from .weights import WeightsInfo, parse_weights_spec  # noqa: E402

__version__ = "0.1.0"

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
