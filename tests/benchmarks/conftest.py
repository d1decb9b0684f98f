"""The suite's benchmarks write, into pytest-benchmark's saved JSON, what a history record carries,
so ``report history import`` reads a saved run as a record of the same series as ``compare
--history`` and ``pytest --r34-history``: ``machine_info["resnet34_npu"]["environment"]`` (the
software stack, devices, emulated or not, thread counts, the variables that change results,
``--r34-label`` / ``R34_LABELS``), through pytest-benchmark's ``pytest_benchmark_update_machine_info``
hook; each forward benchmark's ``extra_info`` names its target, device, batch, precision and
methodology (tests/benchmarks/test_benchmarks.py)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-benchmark: optional where it is not installed
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from resnet34_npu.history.importer import BLOCK
    from resnet34_npu.history.record import environment
    from resnet34_npu.suite import options

    labels = options.resolve(config.getoption)["r34_labels"]
    machine_info[BLOCK] = {"environment": environment(labels)}
