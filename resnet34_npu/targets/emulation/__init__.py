"""An emulated Ascend host, for running the suite's NPU path where no NPU exists (CI).

``activate()`` (or ``R34_EMULATE_ASCEND=SOC[:CARDS]`` in the environment of a process that
imports :mod:`resnet34_npu`) puts a stand-in ``torch_npu`` package first on ``sys.path``.
Importing it does what the real package does at import: it registers PyTorch's PrivateUse1
backend under the name ``npu`` (``torch.utils.backend_registration``) and ``torch.npu`` as its
device module. Tensors on ``npu:k`` are tensors of that device type whose data live in CPU
tensors (``device.NPUTensor``); every operator reaches them through the dispatcher and runs on
the CPU data. The suite then probes, places, synchronises, times and judges ``npu:k`` exactly as
it would on a card. What the stand-in provides, and how faithful it is: ``standin/torch_npu``.

It refuses to start where a real torch_npu can be imported: an Ascend host is never emulated.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from resnet34_npu.core.errors import InputError

STANDIN = Path(__file__).resolve().parent / "standin"
ENV = "R34_EMULATE_ASCEND"
DEFAULT_SOC = "Ascend910B3"
DEFAULT_CARDS = 8


OFF = ("", "0", "off", "false", "no")


def parse(text: str) -> tuple[str, int]:
    """``SOC[:CARDS]`` (``1`` alone means the defaults): the SoC name and the number of cards."""
    soc, _, cards = text.strip().partition(":")
    if soc in ("", "1", "on", "true"):
        soc = DEFAULT_SOC
    if not soc.startswith("Ascend"):
        raise InputError(f"{ENV}={text!r}: the SoC must be an Ascend name such as Ascend910B3 or Ascend910A")
    if cards and not (cards.isdigit() and 1 <= int(cards) <= 16):
        raise InputError(f"{ENV}={text!r}: the number of cards must be 1 to 16")
    return soc, int(cards or DEFAULT_CARDS)


def activate(soc: str = DEFAULT_SOC, cards: int = DEFAULT_CARDS) -> None:
    """Make ``import torch_npu`` load the stand-in for an emulated host of ``cards`` ``soc``
    cards. Refused when a real torch_npu is importable."""
    spec = importlib.util.find_spec("torch_npu") if "torch_npu" not in sys.modules else None
    real = spec is not None and not str(spec.origin or "").startswith(str(STANDIN))
    loaded = sys.modules.get("torch_npu")
    if real or (loaded is not None and not getattr(loaded, "EMULATED", False)):
        raise InputError(f"{ENV}: a real torch_npu is installed here; the Ascend emulation never replaces it")
    os.environ["R34_EMULATED_SOC"] = soc
    os.environ["R34_EMULATED_CARDS"] = str(cards)
    if str(STANDIN) not in sys.path:
        sys.path.insert(0, str(STANDIN))
