"""``torch.npu`` on an emulated Ascend host: the device module the suite calls, with the real
torch_npu's names and call signatures (``torch_npu/npu/__init__.py``, ``utils.py``,
``npu_config.py``), backed by the CPU.

Emulated numerics, per the SoC (``R34_EMULATED_SOC``): the default ACL precision mode is
``allow_fp32_to_fp16`` on Ascend910A / 910ProA/B (matrix operators take fp32 tensors in fp16) and
``must_keep_origin_dtype`` on Ascend910B* and later; ``conv.allow_hf32`` / ``matmul.allow_hf32``
round the operands of convolutions / matrix products to HF32's 10-bit mantissa; fp16 and bf16
matrix operators take their operands in that dtype, accumulate in fp32 and round the result.
``R34_EMULATED_FAULTS=K[,K...]`` makes those cards wrong: the result of every 256-channel 3x3
convolution (layer3) is scaled by 1 + 1e-2, as a bad kernel would do. Two silent faults, which pass
every tolerance and only an equality check sees: ``K:flip`` flips the lowest mantissa bit of one
activation (the largest logit) in 1 of 200 forward passes (the 2nd, 202nd, 402nd, ... on that card),
``K:ulp`` makes the first convolution (conv1) always 1 ulp off (every element's magnitude one unit in
the last place larger), e.g. ``R34_EMULATED_FAULTS=3,5:flip,6:ulp``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from torch.utils._pytree import tree_map

__all__ = [
    "Event",
    "NPUGraph",
    "Stream",
    "conv",
    "current_device",
    "current_stream",
    "device",
    "device_count",
    "get_device_name",
    "graph",
    "is_bf16_supported",
    "is_available",
    "matmul",
    "set_compile_mode",
    "set_device",
    "set_option",
    "stream",
    "synchronize",
]

_SOC = os.environ.get("R34_EMULATED_SOC", "Ascend910B3")
_PHYSICAL = int(os.environ.get("R34_EMULATED_CARDS", "8"))
_FAULTY = {int(k) for k in os.environ.get("R34_EMULATED_FAULTS", "").split(",") if k.strip().isdigit()}


def _silent(kind: str) -> set[int]:
    """The cards given as ``K:kind`` in ``R34_EMULATED_FAULTS``."""
    items = (k.strip().partition(":") for k in os.environ.get("R34_EMULATED_FAULTS", "").split(","))
    return {int(k) for k, _, v in items if k.isdigit() and v == kind}


_FLIP = _silent("flip")
_ULP = _silent("ulp")
#: forward passes seen by each flipping card (counted at the classifier, once per forward)
_FLIP_RUNS: dict[int, int] = {}
_current = 0


def _visible() -> list[int]:
    """The physical cards this process sees: ASCEND_RT_VISIBLE_DEVICES, as on a real host."""
    text = os.environ.get("ASCEND_RT_VISIBLE_DEVICES")
    if text is None:
        return list(range(_PHYSICAL))
    ids = [int(t) for t in text.split(",") if t.strip().isdigit()]
    return [i for i in ids if i < _PHYSICAL]


class _AllowHF32:
    """``torch.npu.conv`` / ``torch.npu.matmul``: ``allow_hf32`` is kept in the option store
    (``ALLOW_CONV_HF32`` / ``ALLOW_MATMUL_HF32``), as torch_npu's ``npu_config`` does; unset, a
    convolution allows HF32 and a matrix product does not (CANN's defaults)."""

    def __init__(self, option: str, default: bool) -> None:
        object.__setattr__(self, "_option", option)
        object.__setattr__(self, "_default", default)

    def __getattr__(self, name: str) -> Any:
        if name != "allow_hf32":
            return None
        from .. import _C

        value = _C._npu_getOption(self._option)
        return self._default if value is None or value.decode() == "" else value.decode() == "enable"

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "allow_hf32":
            if not isinstance(value, bool):
                raise TypeError(f"allow_hf32 must be a bool, but got {type(value).__name__}")
            from .. import _C

            _C._OPTIONS[self._option] = "enable" if value else "disable"


conv = _AllowHF32("ALLOW_CONV_HF32", True)
matmul = _AllowHF32("ALLOW_MATMUL_HF32", False)


def _checked(device: Any) -> torch.device:
    """``npu`` or ``npu:k`` as the device it is (the current one without an index), or the
    error a card would give for an index past the visible ones."""
    index = _index(device)
    if not 0 <= index < device_count():
        raise RuntimeError(f"Invalid device argument: npu:{index}, the visible device count is {device_count()}")
    return torch.device("npu", index)


def _index(device: Any) -> int:
    """A device given as None (the current one), an index, "npu:k" or a torch.device."""
    if device is None:
        return current_device()
    if isinstance(device, int):
        return device
    index = torch.device(device).index
    return current_device() if index is None else index


def is_available() -> bool:
    return device_count() > 0


def device_count() -> int:
    return len(_visible())


def current_device() -> int:
    return _current


def set_device(device: Any) -> None:
    global _current
    _current = _checked(device).index


def synchronize(device: Any = None) -> None:
    """The emulated device computes synchronously: nothing is in flight."""


def get_device_name(device_name: Any = None) -> str:
    _checked(device_name)
    return _SOC


def set_option(option: dict) -> None:
    from .. import _C

    if not isinstance(option, dict):
        raise TypeError("npu option must be a dict.")
    _C._OPTIONS.update({str(k): str(v) for k, v in option.items()})


def set_compile_mode(jit_compile: bool = False) -> None:
    from .. import _C

    _C._OPTIONS["jitCompile"] = "enable" if jit_compile else "disable"


class device:  # noqa: N801 - torch_npu's own name
    """``with torch.npu.device(d):``: make ``d`` the current device inside the block."""

    def __init__(self, device: Any) -> None:
        self.idx = torch.device(device).index if not isinstance(device, int) else device
        self.prev_idx = -1

    def __enter__(self) -> None:
        self.prev_idx = current_device()
        if self.idx is not None:
            set_device(self.idx)

    def __exit__(self, *exc: Any) -> bool:
        set_device(self.prev_idx)
        return False


class Stream:
    """``torch.npu.Stream``: the emulated device runs everything in order on one queue."""

    def __init__(self, device: Any = None, priority: int = 0, **kwargs: Any) -> None:
        self.device = torch.device("npu", _index(device))

    def wait_stream(self, stream: Stream) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True


_default_streams: dict[int, Stream] = {}


def current_stream(device: Any = None) -> Stream:
    index = _index(device)
    return _default_streams.setdefault(index, Stream(index))


class _StreamContext:
    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        pass


def stream(stream: Stream) -> _StreamContext:
    return _StreamContext(stream)


#: The operators recorded by the graph being captured, or None.
_capturing: list | None = None


class NPUGraph:
    """``torch.npu.NPUGraph``: capture records every operator run on the device with its
    tensors; replay runs them again on the same memory, in order, writing each result where the
    captured one lives. As on a card, replay reads whatever the captured input buffers hold now:
    inputs must be copied into them, and outputs read out before the next replay."""

    def __init__(self) -> None:
        self._ops: list = []

    def capture_begin(self, pool: Any = None, capture_error_mode: str = "global") -> None:
        global _capturing
        if _capturing is not None:
            raise RuntimeError("a graph is already being captured")
        self._ops = []
        _capturing = self._ops

    def capture_end(self) -> None:
        """As on a card, capturing computes nothing: what the captured operators produced is
        garbage (NaN here) until the first replay."""
        global _capturing
        _capturing = None
        produced: set[int] = set()
        external: set[int] = set()  # memory that existed before the capture: weights, the static input
        for _, args, kwargs, out in self._ops:
            for tensor in _tensors([*args, *kwargs.values()]):
                if _storage(tensor) not in produced:
                    external.add(_storage(tensor))
            produced.update(_storage(t) for t in _tensors(out))
        for _, _, _, out in self._ops:
            for tensor in _tensors(out):
                if _storage(tensor) not in external and tensor.is_floating_point():
                    tensor.fill_(float("nan"))

    def replay(self) -> None:
        for compute, args, kwargs, out in self._ops:
            again = compute(*args, **kwargs)
            for old, new in zip(_tensors(out), _tensors(again)):
                if old is not new:
                    old.copy_(new)

    def reset(self) -> None:
        self._ops = []


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _tensors(item)]
    return []


class graph:  # noqa: N801 - torch_npu's own name
    """``with torch.npu.graph(npu_graph):``: capture what runs inside into ``npu_graph``."""

    def __init__(
        self,
        npu_graph: NPUGraph,
        pool: Any = None,
        stream: Any = None,
        auto_dispatch_capture: bool = False,
        capture_error_mode: str = "global",
    ) -> None:
        self.npu_graph = npu_graph

    def __enter__(self) -> None:
        synchronize()
        self.npu_graph.capture_begin()

    def __exit__(self, *exc: Any) -> bool:
        self.npu_graph.capture_end()
        return False


class Event:
    """``torch.npu.Event(enable_timing=True)``: record, synchronize, elapsed_time in ms."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False) -> None:
        self.enable_timing = enable_timing
        self._at: float | None = None

    def record(self, stream: Any = None) -> None:
        self._at = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True

    def elapsed_time(self, end_event: Event) -> float:
        if not (self.enable_timing and end_event.enable_timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'.")
        if self._at is None or end_event._at is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        return (end_event._at - self._at) * 1000.0


# --- the device -------------------------------------------------------------------------------

#: Matrix operators, as they reach the device (composite ones like conv2d and linear arrive
#: whole): the cube unit's precision rules apply to them.
#: Operators that take tensors of two devices by design (copies between the card and the host).
_ANY_DEVICE = {"aten::copy_", "aten::_copy_from", "aten::_to_copy", "aten::to", "aten::_copy_from_and_resize"}
#: The convolutions a faulty card gets wrong: layer3's 256-channel 3x3 ones (the first is layer3.0.conv2).
FAULTY_WEIGHT = (256, 256, 3, 3)
#: How wrong: 1 %, beyond the fp32, HF32 and fp16 bounds of the default profile at that stage.
FAULT = 1e-2
#: The convolution an ``ulp`` card gets 1 ulp wrong: conv1, the first.
ULP_WEIGHT = (64, 3, 7, 7)
#: A ``flip`` card flips a bit in one forward pass of this many.
FLIP_EVERY = 200
_MATRIX = {"aten::convolution", "aten::conv2d", "aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul"}


#: SoCs whose matrix operators compute fp32 as fp16 unless told otherwise (Atlas training
#: products); every other emulated SoC (Ascend910B1 and later) keeps the origin dtype.
FP16_BY_DEFAULT = ("Ascend910A", "Ascend910ProA", "Ascend910ProB", "Ascend910PremiumA")
#: SoCs with bf16 matrix units.
NO_BF16 = FP16_BY_DEFAULT


def _acl_mode() -> str:
    from .. import _C

    default = "allow_fp32_to_fp16" if _SOC in FP16_BY_DEFAULT else "must_keep_origin_dtype"
    return _C._OPTIONS.get("ACL_PRECISION_MODE", default)


def is_bf16_supported(including_emulation: bool = False) -> bool:
    return _SOC not in NO_BF16


def _hf32(x: torch.Tensor) -> torch.Tensor:
    """Round float32 to HF32: 11 explicit mantissa bits (CANN's documentation), round to nearest
    even."""
    bits = x.contiguous().view(torch.int32)
    lsb = (bits >> 12) & 1
    rounded = (bits + 0x7FF + lsb) & ~0xFFF
    return torch.where(torch.isfinite(x), rounded.view(torch.float32), x)


class NPUTensor(torch.Tensor):
    """A tensor of device type ``npu`` whose data is the CPU tensor ``_data``."""

    @staticmethod
    def __new__(cls, data: torch.Tensor, device: torch.device) -> NPUTensor:
        t = torch.Tensor._make_wrapper_subclass(
            cls,
            data.shape,
            strides=data.stride(),
            storage_offset=data.storage_offset(),
            dtype=data.dtype,
            device=device,
            requires_grad=data.requires_grad,
        )
        t._data = data
        return t

    def __repr__(self, *, tensor_contents: Any = None) -> str:
        return f"tensor({self._data.tolist() if self._data.numel() < 8 else '...'}, device='{self.device}')"

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        devices: list[torch.device] = []

        def unwrap(x: Any) -> Any:
            if isinstance(x, NPUTensor):
                devices.append(x.device)
                return x._data
            return x

        plain_args, plain_kwargs = tree_map(unwrap, args), tree_map(unwrap, kwargs)
        if len(set(devices)) > 1:
            raise RuntimeError(
                f"Expected all tensors to be on the same device, but found at least two devices, "
                f"{devices[0]} and {next(d for d in devices if d != devices[0])}!"
            )
        cpu_operands = [
            a for a in (*args, *kwargs.values()) if type(a) is torch.Tensor and a.device.type == "cpu" and a.dim() > 0
        ]
        if devices and cpu_operands and func._schema.name not in _ANY_DEVICE:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found {devices[0]} and cpu!")
        device = devices[0] if devices else torch.device("npu", _current)
        # a device named in the call (to, _to_copy, empty, ...) decides where the result lives
        named = [a for a in (*plain_args, *plain_kwargs.values()) if isinstance(a, torch.device)]
        if named and named[0].type != "npu":  # off the card: a CPU copy, never an alias of its memory
            out = func(*plain_args, **plain_kwargs)
            return tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, out)
        if named:
            device = _checked(named[0])
            cpu = torch.device("cpu")
            plain_args = tuple(cpu if isinstance(a, torch.device) else a for a in plain_args)
            plain_kwargs = {k: cpu if isinstance(v, torch.device) else v for k, v in plain_kwargs.items()}
        name = func._schema.name
        if name in _MATRIX:

            def compute(*a: Any, **k: Any) -> Any:
                return _matrix(func, name, a, k, device)
        else:
            compute = func
        out = compute(*plain_args, **plain_kwargs)
        if _capturing is not None:  # graph capture: the operator is recorded, to run again at replay
            _capturing.append((compute, plain_args, plain_kwargs, out))
        returns = func._schema.returns
        if returns and returns[0].alias_info is not None and returns[0].alias_info.is_write:
            written = kwargs.get("out", args[0])  # in place, or an out= variant: its wrapper was written
            if tuple(written.shape) != tuple(written._data.shape):
                raise RuntimeError(f"{func}: resizing a tensor on the emulated device is not supported")
            return written
        return tree_map(lambda x: NPUTensor(x, device) if type(x) is torch.Tensor else x, out)


def _matrix(func: Any, name: str, args: tuple, kwargs: dict, device: torch.device) -> torch.Tensor:
    """A convolution or matrix product as the emulated card computes it."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    dtype = tensors[0].dtype if tensors else torch.float32
    operands = 2  # input and weight (or the two matrices); a bias is added in fp32
    if name == "aten::addmm":
        operands = (1, 2)  # addmm(bias, input, weight)
    if dtype in (torch.float16, torch.bfloat16):
        cast = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
        out = func(*cast, **kwargs).to(dtype)  # operands in the dtype, fp32 accumulation, rounded result
    elif dtype == torch.float32 and _acl_mode().startswith(("allow_fp32_to_fp16", "force_fp16", "allow_mix")):
        cast = _round_operands(args, operands, lambda t: t.half().float())
        out = func(*cast, **kwargs).half().float()
    elif dtype == torch.float32 and (conv.allow_hf32 if "conv" in name else matmul.allow_hf32):
        out = func(*_round_operands(args, operands, _hf32), **kwargs)
    else:
        out = func(*args, **kwargs)
    weight = args[1] if len(args) > 1 and isinstance(args[1], torch.Tensor) else None
    physical = _visible()[device.index or 0] if (device.index or 0) < len(_visible()) else -1
    if physical in _FAULTY and "conv" in name and weight is not None and tuple(weight.shape) == FAULTY_WEIGHT:
        out = out * (1 + FAULT)
    if physical in _ULP and "conv" in name and weight is not None and tuple(weight.shape) == ULP_WEIGHT:
        out = _bits(out, lambda b: b + 1)
    if physical in _FLIP and out.dim() == 2 and out.shape[-1] == 1000:
        runs = _FLIP_RUNS[physical] = _FLIP_RUNS.get(physical, 0) + 1
        if runs % FLIP_EVERY == 2 % FLIP_EVERY:
            flat = out.reshape(-1).clone()
            at = int(flat.abs().argmax())
            flat[at : at + 1] = _bits(flat[at : at + 1], lambda b: b ^ 1)
            out = flat.reshape(out.shape)
    return out


def _bits(x: torch.Tensor, change: Any) -> torch.Tensor:
    """``x`` with ``change`` applied to the integer bits of every finite element (one ulp up in
    magnitude: bits + 1; the lowest mantissa bit flipped: bits ^ 1)."""
    integer = {2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
    changed = change(x.contiguous().view(integer)).view(x.dtype)
    return torch.where(torch.isfinite(x), changed, x)


def _round_operands(args: tuple, which: Any, fn: Any) -> list:
    indexes = range(which) if isinstance(which, int) else which
    return [fn(a) if i in indexes and isinstance(a, torch.Tensor) else a for i, a in enumerate(args)]


class _Hooks(torch._C._acc.PrivateUse1Hooks):
    def is_available(self) -> bool:
        return is_available()

    def has_primary_context(self, device_index: int) -> bool:
        return True

    def is_built(self) -> bool:
        return True


class _Guard(torch._C._acc.DeviceGuard):
    def type_(self) -> Any:
        return torch._C._autograd.DeviceType.PrivateUse1

    def exchangeDevice(self, device_index: int) -> int:  # noqa: N802 - the guard's protocol
        previous = current_device()
        set_device(device_index)
        return previous

    def getDevice(self) -> int:  # noqa: N802
        return current_device()

    def setDevice(self, device_index: int) -> None:  # noqa: N802
        set_device(device_index)

    def uncheckedSetDevice(self, device_index: int) -> None:  # noqa: N802
        set_device(device_index)

    def deviceCount(self) -> int:  # noqa: N802
        return device_count()


def _empty(
    size: Any,
    dtype: Any = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: Any = None,
    memory_format: Any = None,
) -> NPUTensor:
    return NPUTensor(
        torch.empty(
            size, dtype=dtype or torch.get_default_dtype(), memory_format=memory_format or torch.contiguous_format
        ),
        _checked(device),
    )


def _empty_strided(
    size: Any, stride: Any, dtype: Any = None, layout: Any = None, device: Any = None, pin_memory: Any = None
) -> NPUTensor:
    return NPUTensor(torch.empty_strided(size, stride, dtype=dtype or torch.get_default_dtype()), _checked(device))


def _copy_from(src: torch.Tensor, dst: torch.Tensor, non_blocking: bool = False) -> torch.Tensor:
    data = src._data if isinstance(src, NPUTensor) else src
    (dst._data if isinstance(dst, NPUTensor) else dst).copy_(data)
    return dst


_LIBRARY: Any = None


def _register() -> None:
    """What importing the real torch_npu does: the ``npu`` device, its module, its kernels."""
    global _LIBRARY
    import sys

    from torch.utils.backend_registration import _setup_privateuseone_for_python_backend

    if _LIBRARY is not None:
        return
    _setup_privateuseone_for_python_backend(
        "npu", backend_module=sys.modules[__name__], hook=_Hooks(), device_guard=_Guard()
    )
    _LIBRARY = torch.library.Library("aten", "IMPL")
    _LIBRARY.impl("empty.memory_format", _empty, "PrivateUse1")
    _LIBRARY.impl("empty_strided", _empty_strided, "PrivateUse1")
    _LIBRARY.impl("_copy_from", _copy_from, "PrivateUse1")
    # Module.to() must replace parameters by the device's tensors, not write into CPU ones
    torch.__future__.set_overwrite_module_params_on_conversion(True)
