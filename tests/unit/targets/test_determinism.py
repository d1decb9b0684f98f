"""Determinism settings: recorded, set, and a setting that cannot be set named (the policy then
falls back to tolerance)."""

from __future__ import annotations

import sys
import types

import torch

from resnet34_npu.judge.consistency import TOLERANCE, policy_for
from resnet34_npu.targets import determinism


def test_apply_sets_them_and_names_what_came_too_late(monkeypatch):
    for name in determinism.ENVIRONMENT:
        # set then removed: monkeypatch then removes what apply() writes, so that nothing of this
        # test reaches a report (setenv records the variable's absence; delenv alone records nothing)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setitem(sys.modules, "torch_npu", types.ModuleType("torch_npu"))  # already imported: too late
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    before_cudnn = torch.backends.cudnn.deterministic
    try:
        problems = determinism.apply()
        settings = determinism.recorded()
        assert determinism.problems() == problems
    finally:
        determinism._PROBLEMS.clear()  # the process's later runs were not asked to be deterministic
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before_cudnn
    assert settings["deterministic_algorithms"] is True and settings["HCCL_DETERMINISTIC"] == "true"
    assert settings["CLOSE_MATMUL_K_SHIFT"] is None and settings["num_threads"] >= 1
    late = "CLOSE_MATMUL_K_SHIFT=1 cannot be set: torch_npu's import has already happened in this process"
    assert problems == (late,)
    policy = policy_for("npu", settings, problems)
    assert policy.name == TOLERANCE and "CLOSE_MATMUL_K_SHIFT" in policy.reason
