"""Stand-in for torch_npu on an emulated Ascend host (see ``resnet34_npu.emulation``).

Only names the real torch_npu has are provided (``tests/integration`` checks them against the
real wheel's sources): ``torch_npu.npu`` (registered as ``torch.npu``) and
``torch_npu._C._npu_getOption``.
"""

from __future__ import annotations

EMULATED = True

from . import _C, npu  # noqa: E402  - registers the device on import, as the real package does
from .npu import _register  # noqa: E402

_register()

__all__ = ["_C", "npu"]
