"""Speed as MLPerf Inference states it, with the real LoadGen (``mlcommons-loadgen``).

``loadgen``: the scenarios, a run's settings and its result read from LoadGen's own logs;
``sut``: the sample library (preprocessed once) and the system under test (the target's runner,
one worker a card); ``compliance``: TEST01, TEST04 and accuracy; ``peak``: achieved FLOP/s against
a device's published peak; ``run``: one target measured in one scenario (Server: the bisection).
The ``perf`` command and ``pytest -m perf`` both go through :class:`~resnet34_npu.perf.run.Bench`.
"""

from __future__ import annotations

import importlib
from typing import Any

from resnet34_npu.perf.loadgen import INSTALL_HINT, SCENARIOS, Interrupted, Result, Scenario, Settings, parse_scenario

#: Names that need torch, imported on first use (``perf --help`` starts without torch).
_LAZY = {
    **dict.fromkeys(("Bench", "Measurement", "Options"), "resnet34_npu.perf.run"),
    **dict.fromkeys(("SampleLibrary", "SystemUnderTest"), "resnet34_npu.perf.sut"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "INSTALL_HINT",
    "SCENARIOS",
    "Bench",
    "Interrupted",
    "Measurement",
    "Options",
    "Result",
    "SampleLibrary",
    "Scenario",
    "Settings",
    "SystemUnderTest",
    "parse_scenario",
]
