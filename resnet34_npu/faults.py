"""The negative controls' faults under the name users type in target specs
(``resnet34_npu.faults:bn_stats_off``); they live in :mod:`resnet34_npu.judge.faults`."""

from resnet34_npu.judge.faults import *  # noqa: F403
