"""The emulated native layer of torch_npu: what ``torch_npu/_C.cpython-*.so`` and
``libtorch_npu.so`` (with CANN and the driver) provide, so that the real torch_npu Python package
imports and runs on a host with no card.

``install()`` puts a finder first on ``sys.meta_path`` that answers ``import torch_npu._C`` with a
Python module instead of the compiled one. Loading it does what loading the compiled module does:
it registers the PrivateUse1 device guard and hooks (``torch._C._acc``), the kernels that create
and copy device memory (``empty.memory_format``, ``empty_strided``, ``_copy_from``) and the
``npu::`` operator schemas (from the wheel's own ``csrc/aten/npu_native_functions*.yaml``), and
fills ``_C`` with ``runtime``'s functions. Everything above that line (``torch_npu/__init__.py``,
``torch_npu.npu``, the renaming of PrivateUse1 to ``npu``, ``torch.npu``) is Huawei's code, run
as shipped.

One gap in torch's Python hooks is bridged outside torch_npu: PyTorch 2.14's Python PrivateUse1
hooks cannot return a default generator, which ``torch._C._accelerator_getDefaultGenerator`` asks
the C++ hooks for; for the ``npu`` device that call returns the card's generator (``runtime.default_generator``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

MODULE = "torch_npu._C"


class _Loader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import torch_npu._C`` (and its children) with the emulated native layer."""

    def __init__(self, soc: str, cards: int) -> None:
        self.soc, self.cards = soc, cards

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == MODULE:
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(MODULE, "torch_npu's native layer, emulated (resnet34_npu.targets.emulation.native)")
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        load(module, self.soc, self.cards)


_LIBRARIES: list[Any] = []


def install(soc: str, cards: int) -> None:
    """Make the next ``import torch_npu`` load the emulated native layer under the real package."""
    if not any(isinstance(f, _Loader) for f in sys.meta_path):
        sys.meta_path.insert(0, _Loader(soc, cards))


def load(module: types.ModuleType, soc: str, cards: int) -> None:
    """What loading the compiled module does (its static initialisers and ``_initExtension``)."""
    import torch

    from resnet34_npu.targets.emulation.native import card, runtime

    card.HOST = card.Host(soc, cards)
    runtime.populate(module)
    if _LIBRARIES:
        return
    torch._C._acc.register_python_privateuseone_hook(_Hooks())
    torch._C._acc.register_python_privateuseone_device_guard(_Guard())
    aten = torch.library.Library("aten", "IMPL")
    aten.impl("empty.memory_format", card.empty, "PrivateUse1")
    aten.impl("empty_strided", card.empty_strided, "PrivateUse1")
    aten.impl("_copy_from", card.copy_from, "PrivateUse1")
    _LIBRARIES.append(aten)
    _LIBRARIES.append(_define_npu_operators(Path(sys.modules["torch_npu"].__file__).parent))
    _bridge_default_generator()


def _define_npu_operators(package: Path) -> Any:
    """The ``npu::`` schemas the compiled module defines, read from the wheel's own YAML files."""
    import torch
    import yaml

    library = torch.library.Library("npu", "FRAGMENT")
    for name in ("npu_native_functions.yaml", "npu_native_functions_by_codegen.yaml"):
        path = package / "csrc" / "aten" / name
        if not path.is_file():
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for section in ("custom", "autograd", "quant", "symint"):
            for entry in doc.get(section) or ():
                schema = entry.get("func") if isinstance(entry, dict) else None
                if not isinstance(schema, str):
                    continue
                try:
                    library.define(schema)
                except RuntimeError:  # defined twice across the files, or a schema this torch cannot parse
                    continue
    return library


def _bridge_default_generator() -> None:
    import torch

    from resnet34_npu.targets.emulation.native import runtime

    original = torch._C._accelerator_getDefaultGenerator

    def get_default_generator(index: int = -1) -> Any:
        if torch._C._get_accelerator().type == "npu":
            return runtime.default_generator(index)
        return original(index)

    torch._C._accelerator_getDefaultGenerator = get_default_generator


def _hooks_base() -> type:
    import torch

    return torch._C._acc.PrivateUse1Hooks


def _guard_base() -> type:
    import torch

    return torch._C._acc.DeviceGuard


class _Hooks:
    """PrivateUse1 hooks (the C++ ``NPUHooksInterface``)."""

    def __new__(cls) -> Any:
        from resnet34_npu.targets.emulation.native import runtime

        class Hooks(_hooks_base()):
            def is_available(self) -> bool:
                return runtime._npu_getDeviceCount() > 0

            def has_primary_context(self, device_index: int) -> bool:
                return True

            def is_built(self) -> bool:
                return True

        return Hooks()


class _Guard:
    """The PrivateUse1 device guard (the C++ ``NPUGuardImpl``)."""

    def __new__(cls) -> Any:
        import torch

        from resnet34_npu.targets.emulation.native import runtime

        class Guard(_guard_base()):
            def type_(self) -> Any:
                return torch._C._autograd.DeviceType.PrivateUse1

            def exchangeDevice(self, device_index: int) -> int:  # noqa: N802 - the guard's protocol
                return runtime._npu_maybeExchangeDevice(device_index)

            def getDevice(self) -> int:  # noqa: N802
                return runtime._npu_getDevice()

            def setDevice(self, device_index: int) -> None:  # noqa: N802
                runtime._npu_setDevice(device_index)

            def uncheckedSetDevice(self, device_index: int) -> None:  # noqa: N802
                runtime._npu_setDevice(device_index)

            def deviceCount(self) -> int:  # noqa: N802
                return runtime._npu_getDeviceCount()

        return Guard()
