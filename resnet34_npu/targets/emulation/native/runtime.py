"""``torch_npu._C`` on the emulated host: the functions and classes torch_npu's Python layer calls in
its compiled module, each doing what the C++ behind it does (``torch_npu/csrc/npu/Module.cpp``,
``Stream.cpp``, ``Event.cpp``, ``NPUGraph.cpp``, ``npu/NpuVariables.cpp``), over ``card.Host``.

Only the names torch_npu 2.14.0's Python layer touches at import and on the suite's paths exist;
any other name is an AttributeError, as on a build without that feature. Profiling, distributed
(HCCL), dumps and the caching allocator's statistics need CANN and raise ``NotEmulated`` when called.
"""

from __future__ import annotations

import itertools
import types
from typing import Any

import torch

from resnet34_npu.targets import ascend
from resnet34_npu.targets.emulation import faults
from resnet34_npu.targets.emulation.native import card

#: The CANN release the emulated host reports (``torch_npu.npu.get_cann_version()``).
CANN_VERSION = "8.5.0"
#: Option names the C++ option store accepts (libtorch_npu.so 2.14.0); others: "invalid npu option name".
OPTION_NAMES = frozenset(
    (
        "ACL_PRECISION_MODE",
        "ACL_OP_SELECT_IMPL_MODE",
        "ACL_AICORE_NUM",
        "ACL_OPTYPELIST_FOR_IMPLMODE",
        "ACL_OP_DEBUG_LEVEL",
        "ACL_DEBUG_DIR",
        "ACL_OP_COMPILER_CACHE_MODE",
        "ACL_OP_COMPILER_CACHE_DIR",
        "ACL_OP_DEBUG_OPTION",
        "ALLOW_CONV_HF32",
        "ALLOW_MATMUL_HF32",
        "CUBE_MATH_TYPE",
        "MM_BMM_ND_ENABLE",
        "ALLOW_INTERNAL_FORMAT",
        "NPU_FUZZY_COMPILE_BLACKLIST",
        "TORCH_NPU_USE_COMPATIBLE_IMPL",
        "jitCompile",
        "jitCompileInit",
        "mdldumpswitch",
        "mdldumpconfigpath",
        "autotune",
        "autotunegraphdumppath",
        "OP_HOOK_ENABLE",
        "ACL_OP_INIT_MODE",
    )
)


class NotEmulated(RuntimeError):
    """A torch_npu feature that needs CANN itself (profiler, HCCL, dumps, ...)."""


def _not_emulated(name: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise NotEmulated(f"torch_npu._C.{name}: not emulated (needs CANN on a real Ascend host)")

    call.__name__ = name
    return call


# --- devices -------------------------------------------------------------------------------------


def _npu_init() -> None:
    """aclInit and the SoC check (NpuVariables.cpp SetSocVersion: an unknown SoC is an error)."""
    ascend.soc_value(card.host().soc)


def _npu_getDeviceCount() -> int:  # noqa: N802 - torch_npu's names
    return len(card.host().visible)


def _npu_getDevice() -> int:  # noqa: N802
    return card.host().current


def _npu_getDeviceWithoutSet() -> int:  # noqa: N802
    state = card.host()
    return state.current if state.device_set else -1


def _npu_setDevice(index: int) -> None:  # noqa: N802
    state = card.host()
    state.current = state.check(int(index))
    state.device_set = True


def _npu_maybeExchangeDevice(index: int) -> int:  # noqa: N802
    previous = card.host().current
    _npu_setDevice(index)
    return previous


def _npu_synchronize() -> None:
    """The card computes synchronously: nothing is in flight; a hazard may still strike here."""
    state = card.host()
    faults.hazard(state.faults, state.physical_of(state.current), "synchronize")


def _npu_getDeviceName() -> str:  # noqa: N802
    return card.host().soc


def _npu_get_soc_version() -> int:
    return ascend.soc_value(card.host().soc)


def _npu_is_bf16_supported() -> bool:
    return ascend.bf16_supported(card.host().soc)


def _npu_is_support_inf_nan() -> bool:
    return ascend.inf_nan_mode(card.host().soc)


def _npu_is_jit_compile_false() -> bool:
    """Always True here (binary kernels), unlike the Atlas training series, which compiles just in
    time by default. The difference is one of kernel choice, not of values, and the JIT path of
    torch_npu's ``Module.to`` (``cast_weight``: ``param.data = param.data.to(npu)`` on CPU
    parameters) cannot run over wrapper tensors: PyTorch refuses set_data between a CPU tensor and
    a Python-dispatched one. So that path is the one part of torch_npu's Python layer not exercised."""
    return True


def _npu_canDeviceAccessPeer(device: int, peer: int) -> bool:  # noqa: N802
    return True


class _NPUDeviceProperties(types.SimpleNamespace):  # noqa: N801
    """What get_device_properties returns."""


def _npu_getDeviceProperties(index: int) -> _NPUDeviceProperties:  # noqa: N802
    state = card.host()
    state.check(int(index))
    return _NPUDeviceProperties(
        name=state.soc, total_memory=64 << 30, cube_core_num=24, vector_core_num=48, L2_cache_size=0
    )


def _npu_getDeviceMemories(index: int) -> _NPUDeviceProperties:  # noqa: N802
    card.host().check(int(index))
    return _NPUDeviceProperties(total_memory=64 << 30, free_memory=64 << 30)


def _get_cann_version(module: str = "CANN") -> str:
    return CANN_VERSION


def _is_gte_cann_version(version: str, module: str = "CANN") -> bool:
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in "".join(c if c.isdigit() else "." for c in text).split(".") if p)

    return parts(CANN_VERSION) >= parts(version)


# --- options (the C++ option store: OptionsManager / option::SetOption) ---------------------------


def _npu_setOption(options: dict) -> None:  # noqa: N802
    state = card.host()
    for name, value in options.items():
        if name not in OPTION_NAMES:
            raise RuntimeError(f"invalid npu option name:{name}")
        state.options[str(name)] = str(value)


def _npu_getOption(name: str) -> bytes:  # noqa: N802
    """An option's value; one never set reads as ``b''`` (OptionsManager)."""
    return card.host().options.get(name, "").encode()


# --- random numbers ---------------------------------------------------------------------------


def default_generator(index: int) -> torch.Generator:
    """The card's default generator (the C++ hook's ``getDefaultGenerator``): kept per card; the
    card's random operators draw from CPU generators since its memory is the CPU's."""
    state = card.host()
    index = state.current if index < 0 else state.check(index)
    return state.generators.setdefault(index, torch.Generator())


# --- streams and events --------------------------------------------------------------------------

_stream_ids = itertools.count(1)
#: per device: the current stream's (stream_id, device_index, device_type)
_current_streams: dict[int, tuple[int, int, int]] = {}
_NPU_TYPE = int(torch._C._autograd.DeviceType.PrivateUse1) if hasattr(torch._C, "_autograd") else 20


def _stream_tuple(index: int, stream_id: int = 0) -> tuple[int, int, int]:
    return (stream_id, index, _NPU_TYPE)


def _npu_getCurrentStream(index: int) -> tuple[int, int, int]:  # noqa: N802
    state = card.host()
    index = state.current if index is None or index < 0 else state.check(index)
    return _current_streams.get(index, _stream_tuple(index))


def _npu_getDefaultStream(index: int) -> tuple[int, int, int]:  # noqa: N802
    state = card.host()
    index = state.current if index is None or index < 0 else state.check(index)
    return _stream_tuple(index)


def _npu_setStream(stream_id: int = 0, device_index: int = 0, device_type: int = 0) -> None:  # noqa: N802
    """torch.npu.stream(s) / set_stream(s): ``s`` becomes the current stream of its device."""
    _current_streams[card.host().check(device_index)] = (stream_id, device_index, device_type)


class _NPUStreamBase:
    """A stream of one card. The emulated card runs every operator in order as it is issued, so a
    stream is always complete; what it keeps is its identity (device, id) for the current-stream
    bookkeeping that torch.npu.stream() relies on."""

    def __new__(cls, priority: int = 0, stream_id: int = 0, device_index: int | None = None, **kwargs: Any) -> Any:
        self = object.__new__(cls)
        state = card.host()
        index = state.current if device_index is None else state.check(device_index)
        self.device_index = index
        self.device_type = _NPU_TYPE
        self.stream_id = stream_id if (stream_id or device_index is not None) else next(_stream_ids)
        self.priority = priority
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("npu", self.device_index)

    @property
    def npu_stream(self) -> int:
        return (self.device_index << 32) | self.stream_id

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        state = card.host()
        faults.hazard(state.faults, state.physical_of(self.device_index), "synchronize")

    def set_data_preprocess_stream(self, is_data_preprocess_stream: bool = False) -> None:
        pass

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NPUStreamBase) and (other.device_index, other.stream_id) == (
            self.device_index,
            self.stream_id,
        )

    def __hash__(self) -> int:
        return hash((self.device_index, self.stream_id))


class _NPUEventBase:
    """An event: ``record`` stamps the clock of the stream's card (its operators' CPU time);
    ``elapsed_time`` is the difference in ms, as aclrtEventElapsedTime on the device's clock."""

    def __new__(cls, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False, **kw: Any) -> Any:
        self = object.__new__(cls)
        self.enable_timing = enable_timing
        self._at: tuple[int, float] | None = None
        return self

    def record(self, stream: Any = None) -> None:
        index = card.host().current if stream is None else stream.device_index
        self._at = (index, card.host().clock[index])

    def wait(self, stream: Any = None) -> None:
        pass

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        if self._at is not None:
            state = card.host()
            faults.hazard(state.faults, state.physical_of(self._at[0]), "synchronize")

    def elapsed_time(self, end: _NPUEventBase) -> float:
        if not (self.enable_timing and end.enable_timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'.")
        if self._at is None or end._at is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        if self._at[0] != end._at[0]:
            raise RuntimeError("Both events must be recorded on the same device.")
        return (end._at[1] - self._at[1]) * 1000.0

    def recorded_time(self) -> float:
        if self._at is None:
            raise RuntimeError("The event must be recorded before reading its time.")
        return self._at[1] * 1000.0


# --- graphs (NPUGraph.cpp: capture records, replay runs in place) ---------------------------------


class _NPUGraph:
    """Capture records every operator run on the card with its tensors; replay runs them again on
    the same memory, writing each result where the captured one lives. As on a card, capture
    computes nothing useful (results hold NaN until the first replay), and replay reads whatever
    the captured input buffers hold now."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._ops: list = []
        self._device = 0

    def capture_begin(self, pool: Any = None, capture_error_mode: str = "global", report_shape: bool = True) -> None:
        if card.graphs.capturing is not None:
            raise RuntimeError("Cannot capture a graph while another capture is underway")
        self._ops = []
        self._device = card.graphs.device = card.host().current  # the card whose stream captures
        card.graphs.capturing = self._ops

    def capture_end(self) -> None:
        card.graphs.capturing = None
        produced: set[int] = set()
        external: set[int] = set()  # memory that existed before the capture: weights, the static input
        for _, args, kwargs, out, _ in self._ops:
            for tensor in _tensors([*args, *kwargs.values()]):
                if _storage(tensor) not in produced:
                    external.add(_storage(tensor))
            produced.update(_storage(t) for t in _tensors(out))
        for _, _, _, out, _ in self._ops:
            for tensor in _tensors(out):
                if _storage(tensor) not in external and tensor.is_floating_point():
                    tensor.fill_(float("nan"))

    def replay(self) -> None:
        """The captured operators again, on the captured memory, charged to the card's clock (a
        hazard strikes here as in eager mode)."""
        state = card.host()
        physical = state.physical_of(self._device)
        for compute, args, kwargs, out, kernel in self._ops:
            faults.hazard(state.faults, physical, "graph replay")
            again = card.charged(self._device, lambda c=compute, a=args, k=kwargs: c(*a, **k), kernel)
            for old, new in zip(_tensors(out), _tensors(again)):
                if old is not new:
                    old.copy_(new)

    def reset(self) -> None:
        self._ops = []

    def pool(self) -> tuple[int, int]:
        return (0, id(self))


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _tensors(item)]
    return []


def _npu_getCurrentRawStream(index: int) -> int:  # noqa: N802
    """The current stream's handle (an aclrtStream address on a card)."""
    stream_id, device, _ = _npu_getCurrentStream(index)
    return (device << 32) | stream_id


def _npu_getLocalDevice() -> int:  # noqa: N802
    return card.host().current


def _npu_isCurrentStreamCapturing() -> bool:  # noqa: N802
    return card.graphs.capturing is not None


def _graph_pool_handle() -> tuple[int, int]:
    return (0, next(_stream_ids))


# --- memory (the caching allocator: the card's memory is the host's here) ---------------------------


def _npu_emptyCache() -> None:  # noqa: N802
    pass


def _npu_hostEmptyCache() -> None:  # noqa: N802
    pass


def _weak_ref_tensor(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class _MemPool:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.id = (0, next(_stream_ids))


class _npu_NPUAllocator:  # noqa: N801
    pass


# --- the module -----------------------------------------------------------------------------------

_FUNCTIONS = (
    _npu_init,
    _npu_getDeviceCount,
    _npu_getDevice,
    _npu_getDeviceWithoutSet,
    _npu_setDevice,
    _npu_maybeExchangeDevice,
    _npu_synchronize,
    _npu_getDeviceName,
    _npu_get_soc_version,
    _npu_is_bf16_supported,
    _npu_is_support_inf_nan,
    _npu_is_jit_compile_false,
    _npu_canDeviceAccessPeer,
    _npu_getDeviceProperties,
    _npu_getDeviceMemories,
    _get_cann_version,
    _is_gte_cann_version,
    _npu_setOption,
    _npu_getOption,
    _npu_getCurrentStream,
    _npu_getDefaultStream,
    _npu_setStream,
    _npu_isCurrentStreamCapturing,
    _npu_getCurrentRawStream,
    _npu_getLocalDevice,
    _graph_pool_handle,
    _npu_emptyCache,
    _npu_hostEmptyCache,
    _weak_ref_tensor,
)
_CLASSES = (_NPUStreamBase, _NPUEventBase, _NPUGraph, _MemPool, _npu_NPUAllocator, _NPUDeviceProperties)
#: Classes torch_npu names at import whose use needs CANN.
_NOT_EMULATED_CLASSES = ("_NPUShapeHandling", "ShapePolicy", "ShapeType")
#: Names torch_npu touches (at import, or behind features the suite does not use) that need CANN.
_NOT_EMULATED = (
    "_graph_task_group_begin",
    "_graph_task_group_end",
    "_graph_task_update_begin",
    "_graph_task_update_end",
    "_super_kernel_scope_begin",
    "_super_kernel_scope_end",
    "_npu_memoryStats",
    "_npu_resetPeakMemoryStats",
    "_npu_resetAccumulatedMemoryStats",
    "_npu_memorySnapshot",
    "_npu_setMemoryFraction",
    "_npu_initDump",
    "_npu_setDump",
    "_npu_finalizeDump",
    "_npu_set_sync_debug_mode",
    "_npu_get_sync_debug_mode",
    "_npu_ipc_collect",
    "_npu_stress_detect",
    "_npu_check_uce_in_memory",
    "_npu_get_uce_addr",
    "_launch_host_func",
    "_launch_host_func_pending",
    "_subscribe_report",
    "_unsubscribe_report",
    "_npu_set_deterministic_level",
    "_npu_get_deterministic_level",
    "_npu_from_dlpack",
    "_npu_changeCurrentAllocator",
    "_npu_getAllocator",
    "_npu_getCheckpointState",
    "_npu_getMemoryFraction",
    "_npu_get_task_queue_enable",
    "_npu_set_task_queue_enable",
    "_npu_npuCachingAllocator_set_allocator_settings",
    "_npu_resetAccumulatedHostMemoryStats",
    "_npu_resetPeakHostMemoryStats",
    "_npu_set_thread_affinity",
    "_npu_reset_thread_affinity",
    "_npu_set_fill_uninitialized_memory",
    "_get_silent_check_version",
    "_new_shared_npu",
    "_share_npu_",
    "_release_ipc_counter_npu",
    "_recovery_all_npu_stream",
    "_tensor_construct_from_storage",
    "_npu_to_dlpack",
)
#: The child modules torch_npu's module_loader requires (``_REQUIRED_C_EXTENSION_CHILDREN``) and the
#: names of each that torch_npu touches at import.
_CHILDREN = {
    "_profiler": (
        "ProfilerActivity",
        "_ExperimentalConfig",
        "NpuProfilerConfig",
        "_disable_profiler_in_child_thread",
        "_enable_profiler_in_child_thread",
        "_finalize_profiler",
        "_get_freq",
        "_get_monotonic",
        "_get_syscnt",
        "_get_syscnt_enable",
        "_init_profiler",
        "_start_profiler",
        "_stop_profiler",
        "_supported_npu_activities",
        "_warmup_profiler",
        "_get_host_uid",
    ),
    "_distributed_c10d": ("ParallelStore", "_verify_params_across_processes", "_is_support_hccl_comm_name"),
    "_cd": ("DType",),
    "_logging": (),
    "_flops_count": (),
    "_npurt": (),
}


class _NotEmulatedType:
    """A class torch_npu names at import (to subclass or to annotate) whose use needs CANN."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotEmulated(f"{type(self).__name__}: not emulated (needs CANN on a real Ascend host)")


def _child(name: str, names: tuple[str, ...]) -> types.ModuleType:
    module = types.ModuleType(f"torch_npu._C.{name}")
    for item in names:
        if item[0].isupper():
            setattr(module, item, type(item, (_NotEmulatedType,), {}))
        else:
            setattr(module, item, _not_emulated(f"{name}.{item}"))
    if name == "_profiler":
        module._get_syscnt_enable = lambda: False  # the profiler's clock source: host time
        module._get_freq = lambda: 100
        module._get_monotonic = lambda: 0
        module._get_syscnt = lambda: 0
    if name == "_distributed_c10d":
        module._is_support_hccl_comm_name = lambda: False
    return module


def populate(module: types.ModuleType) -> None:
    """Fill ``torch_npu._C`` with the emulated native layer."""
    for fn in _FUNCTIONS:
        setattr(module, fn.__name__, fn)
    for cls in _CLASSES:
        setattr(module, cls.__name__, cls)
    for name in _NOT_EMULATED:
        setattr(module, name, _not_emulated(name))
    for name in _NOT_EMULATED_CLASSES:
        setattr(module, name, type(name, (_NotEmulatedType,), {}))
    for name, names in _CHILDREN.items():
        setattr(module, name, _child(name, names))
    module._initExtension = lambda: None
    module._c10d_npu_init = lambda: None
    module._npu_shutdown_synchronize = lambda: True  # nothing is in flight at exit
    module._npu_shutdown = lambda success=True: None
    module._npu_hasPrimaryContext = lambda index: True
    module._rpc_npu_init = lambda: None
    module._npu_set_run_yet_variable_to_false = lambda: None
