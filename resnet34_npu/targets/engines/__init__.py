"""Execution modes: how a built-in target runs its placed module, when not eagerly.

One module per mode, each an :class:`~resnet34_npu.targets.engines.base.ExecutionEngine`
(``base``): ``compile`` (torch.compile: inductor, TorchAir), ``graph`` (CUDA / NPU graph capture
and replay), ``export`` (torch.export + AOTInductor), ``ort`` (ONNX Runtime: CPU, CUDA and CANN
providers; ``tensorrt``, its TensorRT provider), on the shared ONNX export (``onnx_export``).

:data:`ENGINES` is the registry: the one line a new mode adds. The grammar, runners, knobs,
matrix, blame and the CLI read the modes from :func:`registry`, which checks each entry (a
missing member is one line) and is read again when :data:`ENGINES` changes.

Each engine is built with its first call on an example batch (``build_s``: compilation, capture
or export plus that call, never mixed into latency) and describes itself for reports
(``describe``). Engines that run outside torch's device (ONNX Runtime) take CPU tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from resnet34_npu.core.errors import InputError
from resnet34_npu.targets.engines.base import (
    BackendUnavailable,
    BuildFailed,
    Engine,
    ExecutionEngine,
    Setting,
    build_engine,
    check_engine,
    failed,
)
from resnet34_npu.targets.engines.compile import Compile
from resnet34_npu.targets.engines.export import Export
from resnet34_npu.targets.engines.graph import Graph
from resnet34_npu.targets.engines.onnx_export import export_onnx, onnx_path
from resnet34_npu.targets.engines.ort import (
    CANN_DEFAULT_PRECISION,
    CANN_PRECISION_V2,
    ORT_PROVIDERS,
    TENSORRT_PROVIDER,
    Ort,
    ProviderFallback,
    TensorRT,
    open_session,
    provider_list,
    provider_settings,
)

if TYPE_CHECKING:
    import torch

#: The registry: every execution mode, in the order the grammar and the matrix list them.
ENGINES: tuple[type[ExecutionEngine], ...] = (Compile, Graph, Export, Ort, TensorRT)

__all__ = [
    "CANN_DEFAULT_PRECISION",
    "CANN_PRECISION_V2",
    "ENGINES",
    "ORT_PROVIDERS",
    "TENSORRT_PROVIDER",
    "BackendUnavailable",
    "BuildFailed",
    "Engine",
    "ExecutionEngine",
    "ProviderFallback",
    "Setting",
    "build",
    "export_onnx",
    "failed",
    "get",
    "onnx_path",
    "open_session",
    "provider_list",
    "provider_settings",
    "registry",
    "view",
]

_read: tuple[tuple[type[ExecutionEngine], ...], dict[str, ExecutionEngine]] | None = None


def registry() -> dict[str, ExecutionEngine]:
    """The registered engines by mode name, each checked (see ``base.check_engine``); two
    engines with one name, or one settings key claimed twice, are refused with one line."""
    global _read
    current = ENGINES
    if _read is not None and _read[0] is current:
        return _read[1]
    engines: dict[str, ExecutionEngine] = {}
    keys: dict[str, str] = {}
    for cls in current:
        engine = check_engine(cls)
        if engine.name in engines:
            raise InputError(f"engine {cls.__qualname__!r}: mode {engine.name!r} is registered twice")
        for setting in engine.settings_keys:
            if setting.name in keys:
                raise InputError(
                    f"engine {cls.__qualname__!r}: settings key {setting.name!r} is already {keys[setting.name]}'s"
                )
            keys[setting.name] = engine.name
        engines[engine.name] = engine
    _read = (current, engines)
    return engines


def get(mode: str) -> ExecutionEngine:
    """The engine of ``mode`` (a name the grammar accepted)."""
    return registry()[mode]


def example_batch(mode: str) -> int:
    """The batch size ``mode``'s engine is built (and first called) with."""
    return get(mode).example_batch


def build(
    mode: str,
    module: torch.nn.Module,
    example: torch.Tensor,
    device: torch.device,
    options: dict[str, str],
    *,
    digest: str = "",
    dtype: str = "fp32",
    context: Callable[[], Any],
) -> Engine:
    """Build ``mode`` for ``module`` (already on ``device`` in its dtype and layout) and make
    its first call on ``example`` under ``context()`` (inference mode, knobs, autocast)."""
    return build_engine(get(mode), module, example, device, options, digest=digest, dtype=dtype, context=context)


T = TypeVar("T")


class RegistryView(Mapping[str, T], Generic[T]):
    """A table derived from the registry (the grammar's modes, the knobs), worked out again
    whenever :data:`ENGINES` changes, so a mode registered there appears everywhere."""

    def __init__(self, derive: Callable[[dict[str, ExecutionEngine]], dict[str, T]]) -> None:
        self._derive = derive
        self._seen: tuple[dict[str, ExecutionEngine], dict[str, T]] | None = None

    def _table(self) -> dict[str, T]:
        engines = registry()
        if self._seen is None or self._seen[0] is not engines:
            self._seen = (engines, self._derive(engines))
        return self._seen[1]

    def __getitem__(self, key: str) -> T:
        return self._table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f"RegistryView({list(self._table())!r})"


def view(derive: Callable[[dict[str, ExecutionEngine]], dict[str, T]]) -> RegistryView[T]:
    """A :class:`RegistryView` of ``derive(registry())``."""
    return RegistryView(derive)
