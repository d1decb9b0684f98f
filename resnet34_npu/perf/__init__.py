"""Speed as MLPerf Inference states it, with the real LoadGen (``mlcommons-loadgen``).

``loadgen``: the scenarios, a run's settings and its result read from LoadGen's own logs;
``sut``: the sample library (preprocessed once) and the system under test (the target's runner,
one worker a card); ``compliance``: TEST01, TEST04 and accuracy; ``peak``: achieved FLOP/s against
a device's published peak; ``run``: one target measured in one scenario (Server: the bisection).
The ``perf`` command and ``pytest -m perf`` both go through :class:`~resnet34_npu.perf.run.Bench`.
"""

from resnet34_npu.perf.loadgen import INSTALL_HINT, SCENARIOS, Interrupted, Result, Scenario, Settings, parse_scenario
from resnet34_npu.perf.run import Bench, Measurement, Options
from resnet34_npu.perf.sut import SampleLibrary, SystemUnderTest

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
