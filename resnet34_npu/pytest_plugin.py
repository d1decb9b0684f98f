"""The pytest plugin under its published name (``pytest_plugins = ["resnet34_npu.pytest_plugin"]``,
``-p resnet34_npu.pytest_plugin``); it lives in :mod:`resnet34_npu.suite.plugin`."""

from resnet34_npu.suite.plugin import *  # noqa: F403
