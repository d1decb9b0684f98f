"""Repository-level pytest set-up: loaded before any test module imports torch."""

from __future__ import annotations

import os

# A host with torch_npu installed but no CANN fails at `import torch` unless backend
# auto-loading is off; resnet34_npu imports torch_npu itself, inside try/except.
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from hypothesis import HealthCheck, settings  # noqa: E402

# "ci" (selected in pytest.ini): few examples, no deadline, since one preprocessing of a
# large random image can take a second on a loaded 2-core machine. `--hypothesis-profile=thorough`
# runs many more.
# "ci" is derandomised: a given version of the suite checks the same examples on every run and
# every machine, so a failure on hardware is reproducible rather than a matter of luck.
settings.register_profile(
    "ci", max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pytest_plugins = ["resnet34_npu.suite.plugin", "pytester"]
