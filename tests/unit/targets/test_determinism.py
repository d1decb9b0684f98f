"""Determinism settings: recorded, set, and a setting that cannot be set named (the policy then
falls back to tolerance)."""

from __future__ import annotations

import torch

from resnet34_npu.judge.consistency import TOLERANCE, policy_for
from resnet34_npu.targets import determinism


def test_apply_sets_them_and_names_what_came_too_late(monkeypatch, tmp_path):
    """HCCL reads HCCL_DETERMINISTIC when the process group starts: one already started (here a
    real single-process gloo group) makes that setting too late, named, and the policy falls back."""
    import torch.distributed as dist

    for name in determinism.ENVIRONMENT:
        # set then removed: monkeypatch then removes what apply() writes, so that nothing of this
        # test reaches a report (setenv records the variable's absence; delenv alone records nothing)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    before_cudnn = torch.backends.cudnn.deterministic
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        problems = determinism.apply()
        settings = determinism.recorded()
        assert determinism.problems() == problems
    finally:
        dist.destroy_process_group()
        determinism._PROBLEMS.clear()  # the process's later runs were not asked to be deterministic
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before_cudnn
    assert settings["deterministic_algorithms"] is True and settings["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert settings["HCCL_DETERMINISTIC"] is None and settings["num_threads"] >= 1
    late = "HCCL_DETERMINISTIC=true cannot be set: the process group's start has already happened in this process"
    assert problems == (late,)
    policy = policy_for("npu", settings, problems)
    assert policy.name == TOLERANCE and "HCCL_DETERMINISTIC" in policy.reason
    assert "CLOSE_MATMUL_K_SHIFT" not in settings  # torch_npu never reads it: not claimed
