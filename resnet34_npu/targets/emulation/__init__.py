"""An emulated Ascend host, for running the suite's NPU path where no NPU exists (CI).

``R34_EMULATE_ASCEND=SOC[:CARDS]`` in the environment of a process that imports
:mod:`resnet34_npu` (or :func:`activate`) makes ``import torch_npu`` load the real torch_npu
Python package (the torch-npu wheel of release ``wheel.MODELLED``, installed in a folder of its own
by ``python -m resnet34_npu emulation fetch``) over an emulated native layer (``native``): only
``torch_npu._C`` and what the compiled libraries and CANN do beneath it are emulated, each
behaviour citing the source it follows. Tensors on ``npu:k`` hold their data in CPU tensors; every
operator runs through the dispatcher on the CPU data, with the cube unit's precision, the overflow
mode, a clock per card and faulty cards (``R34_EMULATED_FAULTS``, ``faults.py``) modelled per SoC.

It refuses to start where a torch_npu is importable from the environment: an Ascend host is
never emulated. Values are checked before anything starts: an unknown SoC (torch_npu's own
"Unsupported soc version"), a card count out of range, a fault naming a card that is not there.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass

from resnet34_npu.core.errors import InputError

ENV = "R34_EMULATE_ASCEND"
DEFAULT_SOC = "Ascend910B3"
DEFAULT_CARDS = 8
OFF = ("", "0", "off", "false", "no")


@dataclass(frozen=True)
class Host:
    """The emulated host in force: its SoC, its cards and the torch_npu release it runs."""

    soc: str
    cards: int
    torch_npu: str
    site: str

    def to_dict(self) -> dict[str, object]:
        return {"soc": self.soc, "cards": self.cards, "torch_npu": self.torch_npu, "site": self.site}


_ACTIVE: Host | None = None
_REFUSED: list[BaseException] = []


def refuse(exc: BaseException) -> None:
    """Keep why ``R34_EMULATE_ASCEND`` was refused, for the CLI (exit 2) and pytest (UsageError)."""
    _REFUSED.append(exc)


def refused() -> str | None:
    """Why the emulated host asked for could not start, in one line, or None."""
    return f"{_REFUSED[0]}" if _REFUSED else None


def parse(text: str) -> tuple[str, int]:
    """``SOC[:CARDS]`` (``1`` alone means the defaults): the SoC name and the number of cards."""
    from resnet34_npu.targets import ascend
    from resnet34_npu.targets.emulation import faults

    soc, _, cards = text.strip().partition(":")
    if soc.lower() in ("", "1", "on", "true", "yes"):
        soc = DEFAULT_SOC
    try:
        ascend.soc_value(soc)
    except InputError as exc:
        raise InputError(f"{ENV}={text!r}: {exc}") from None
    if cards and not (cards.isascii() and cards.isdigit() and 1 <= int(cards) <= 16):
        raise InputError(f"{ENV}={text!r}: the number of cards must be 1 to 16")
    count = int(cards or DEFAULT_CARDS)
    faults.parse(os.environ.get(faults.ENV, ""), count)
    visible = os.environ.get("ASCEND_RT_VISIBLE_DEVICES")
    if visible is not None and visible and not all(p.isascii() and p.isdigit() for p in visible.split(",")):
        raise InputError(
            f"ASCEND_RT_VISIBLE_DEVICES={visible!r}: write card ids separated by commas, no spaces (e.g. 1,3; "
            "torch_npu reads them in ascending order only)"
        )
    return soc, count


def activate(soc: str = DEFAULT_SOC, cards: int = DEFAULT_CARDS) -> Host:
    """Make ``import torch_npu`` load the real torch_npu Python layer over the emulated native
    layer, for a host of ``cards`` ``soc`` cards. Refused (RuntimeError) when a torch_npu is
    importable from the environment; InputError when the wheel's folder does not hold the modelled
    release."""
    global _ACTIVE
    from resnet34_npu.targets.emulation import native, wheel

    if _ACTIVE is not None:
        return _ACTIVE
    folder = wheel.site()
    loaded = sys.modules.get("torch_npu")
    spec = importlib.util.find_spec("torch_npu") if loaded is None else None
    if loaded is not None or (spec is not None and not str(spec.origin or "").startswith(str(folder))):
        raise RuntimeError(f"{ENV}: a real torch_npu is installed here; the Ascend emulation never replaces it")
    wheel.check(folder)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    native.install(soc, cards)
    _share_costs()
    _ACTIVE = Host(soc, cards, wheel.MODELLED, str(folder))
    return _ACTIVE


def _share_costs() -> None:
    """Give this run's processes (this one, and the pytest-xdist workers and subprocesses it starts,
    which inherit the environment) one file for the emulated cards' fixed kernel costs; removed when
    the process that made it ends."""
    import atexit
    import tempfile

    from resnet34_npu.targets.emulation.native import card

    if os.environ.get(card.COSTS_ENV):
        return
    handle, path = tempfile.mkstemp(prefix="r34-emulated-costs-", suffix=".txt")
    os.close(handle)
    os.environ[card.COSTS_ENV] = path
    atexit.register(lambda: os.path.exists(path) and os.remove(path))


def banner(host: Host) -> str:
    """One line saying that the host is emulated, for every door's header."""
    return (
        f"EMULATED Ascend host ({ENV}): {host.cards} x {host.soc}, the real torch_npu {host.torch_npu} Python "
        f"layer over an emulated native layer; no card computed anything"
    )


def active() -> Host | None:
    """The emulated host in force in this process, or None (a real host, or none)."""
    return _ACTIVE
