"""Dataset-scale agreement: one target against the reference over every image of a dataset, on
one card or, under ``torchrun``, on every card of a host. The names of the dataset run, from
the modules that hold them: :mod:`~resnet34_npu.dataset.results` (the job and the results
folder), :mod:`~resnet34_npu.dataset.shard` (running a rank's shard and the run),
:mod:`~resnet34_npu.dataset.crosscheck` (the shared images compared across ranks) and
:mod:`~resnet34_npu.dataset.summary` (the summary and its lines).
"""

from __future__ import annotations

from resnet34_npu.dataset.crosscheck import DEFAULT as CROSS_CHECK_DEFAULT
from resnet34_npu.dataset.crosscheck import default_count as cross_check_default
from resnet34_npu.dataset.results import CROSS, UNREADABLE, Job, Results, results_folder
from resnet34_npu.dataset.shard import TargetFailed, card_label, placed, run, run_shard
from resnet34_npu.dataset.summary import (
    MLPERF_FRACTION,
    WORST,
    _quote,
    localize_command,
    summarize,
    summary_lines,
)

__all__ = [
    "CROSS",
    "CROSS_CHECK_DEFAULT",
    "MLPERF_FRACTION",
    "UNREADABLE",
    "WORST",
    "Job",
    "Results",
    "TargetFailed",
    "_quote",
    "card_label",
    "cross_check_default",
    "localize_command",
    "placed",
    "results_folder",
    "run",
    "run_shard",
    "summarize",
    "summary_lines",
]
