"""Determinism settings: what is in force (recorded in every report) and ``--deterministic`` /
``--r34-deterministic``, which sets them before the device starts.

The settings are those the backends' promises of run-to-run bitwise reproducibility depend on:
``torch.use_deterministic_algorithms``, cuBLAS's workspace (``CUBLAS_WORKSPACE_CONFIG``, read when
CUDA starts), cuDNN's autotuner, HCCL's reduction order (``HCCL_DETERMINISTIC``) and the thread
counts. (MindSpeed also sets ``CLOSE_MATMUL_K_SHIFT=1``; torch-npu 2.14.0 and Ascend/pytorch never
read it, so the suite does not claim it.)
"""

from __future__ import annotations

import os
from typing import Any

import torch

#: What ``apply()`` sets in the environment, and why.
ENVIRONMENT = {
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # cuBLAS: bitwise run to run with more than one stream
    "HCCL_DETERMINISTIC": "true",  # HCCL: a fixed reduction order
}
#: When each environment setting is read: setting it later has no effect.
READ_AT = {
    "CUBLAS_WORKSPACE_CONFIG": "CUDA's initialisation",
    "HCCL_DETERMINISTIC": "the process group's start",
}


def recorded() -> dict[str, Any]:
    """The determinism settings in force, for the report."""
    cudnn = torch.backends.cudnn
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        **{name: os.environ.get(name) for name in ENVIRONMENT},
        "cudnn_benchmark": bool(cudnn.benchmark),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
    }


def _started(name: str) -> bool:
    """Whether what reads the environment setting ``name`` has already started."""
    if name == "CUBLAS_WORKSPACE_CONFIG":
        return torch.cuda.is_initialized()
    return torch.distributed.is_available() and torch.distributed.is_initialized()


_PROBLEMS: list[str] = []


def problems() -> tuple[str, ...]:
    """The settings the last :func:`apply` in this process could not set, one line each."""
    return tuple(_PROBLEMS)


def apply() -> tuple[str, ...]:
    """Set every determinism setting; the problems, one line each, for those that could not be
    set (the run-to-run check then falls back to ``tolerance`` with that reason)."""
    problems = _PROBLEMS
    problems.clear()
    for name, value in ENVIRONMENT.items():
        if os.environ.get(name) == value:
            continue
        if _started(name):
            problems.append(f"{name}={value} cannot be set: {READ_AT[name]} has already happened in this process")
            continue
        os.environ[name] = value
    try:
        torch.use_deterministic_algorithms(True)
    except Exception as exc:  # a build without the switch
        problems.append(f"torch.use_deterministic_algorithms(True) failed: {type(exc).__name__}: {exc}")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    return tuple(problems)
