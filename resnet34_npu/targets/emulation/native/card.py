"""The emulated cards: what the native layer under torch_npu (``libtorch_npu.so`` with CANN and
the driver) does on a real host, backed by the CPU.

- Memory: a tensor on ``npu:k`` is a wrapper (``DeviceTensor``) around a CPU tensor; every ATen
  operator reaches it through the dispatcher and runs on the CPU data, so the network computes
  bit for bit what the CPU computes, except where a card is modelled to differ:
- Numerics of the cube unit (convolutions and matrix products), as torch_npu and CANN decide
  them (``resnet34_npu.targets.ascend.fp32_matrix_precision``: CalcuOpUtil.cpp's cube math type
  and the SoC's cube): fp32 operands rounded to HF32 or fp16 where the card computes them so;
  fp16 / bf16 operands accumulated in fp32 and rounded.
- Overflow: a card in saturation mode (``ascend.inf_nan_mode``) writes +-max of the dtype for an
  infinite result and 0 for NaN.
- Time: each card has its own clock, advanced by the time of each kernel it runs, a kernel's time
  being the least CPU time that kernel (operator, shapes, dtypes, precision) took in its first runs
  on this host, then fixed and shared with the run's other processes (``charged``): events time the
  card's work, not the host's load, another card's work, the order cards run in or the process they
  run in, and identical cards read identical times, as device events on cards of one model do.
- Faults (``R34_EMULATED_FAULTS``, parsed and checked in ``emulation.faults``): a precision fault
  (layer3's 256-channel 3x3 convolutions 1 % off), ``ulp`` (conv1 1 ulp off), ``flip`` (one bit of
  the largest logit in 1 of 200 forwards), and the hazards of ``emulation.hazards`` (a hang, a crash,
  out of memory, a lost device) called at every operator and synchronisation.
- Graphs: capture records the operators run on the capturing stream with their memory; replay
  runs them again in place, as ACL graph replay does (``torch_npu/csrc/core/npu/NPUGraph.cpp``).
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_map

from resnet34_npu.targets import ascend
from resnet34_npu.targets.emulation import faults

#: Operators that take tensors of two devices by design (copies between the card and the host).
_ANY_DEVICE = {"aten::copy_", "aten::_copy_from", "aten::_to_copy", "aten::to", "aten::_copy_from_and_resize"}
#: The cube unit's operators, as they reach the device (composite ones like conv2d arrive whole).
_MATRIX = {"aten::convolution", "aten::conv2d", "aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul"}
#: The convolutions a card with a precision fault gets wrong: layer3's 256-channel 3x3 ones.
FAULTY_WEIGHT = (256, 256, 3, 3)
#: How wrong: 1 %, beyond the fp32, HF32 and fp16 bounds of the default profile at that stage.
FAULT = 1e-2
#: The convolution an ``ulp`` card gets 1 ulp wrong: conv1, the first.
ULP_WEIGHT = (64, 3, 7, 7)
#: A ``flip`` card flips a bit in one forward pass of this many.
FLIP_EVERY = 200


class Host:
    """The emulated host: its SoC, its physical cards, the visible ones, and per-card state."""

    def __init__(self, soc: str, cards: int) -> None:
        self.soc = soc
        self.physical = cards
        self.visible = visible_devices(os.environ.get("ASCEND_RT_VISIBLE_DEVICES"), cards)
        self.faults = faults.parse(os.environ.get(faults.ENV, ""), cards)
        self.current = 0
        self.device_set = False
        #: per visible index: the card's clock in seconds (its operators' CPU time)
        self.clock = [0.0] * len(self.visible)
        self.flip_runs: dict[int, int] = {}
        self.options: dict[str, str] = {}
        self.generators: dict[int, torch.Generator] = {}

    def physical_of(self, index: int) -> int:
        return self.visible[index]

    def check(self, index: int) -> int:
        """A visible index, or the error the runtime gives for another."""
        if not 0 <= index < len(self.visible):
            raise RuntimeError(f"Invalid device ID. device={index}, visible device count={len(self.visible)}")
        return index

    def acl_mode(self) -> str:
        return self.options.get("ACL_PRECISION_MODE") or ascend.default_acl_precision_mode(self.soc)

    def allow_hf32(self, conv: bool) -> bool:
        """``torch.npu.conv.allow_hf32`` (default on) / ``matmul.allow_hf32`` (default off), kept
        in the option store as torch_npu's npu_config.py writes them (ALLOW_CONV_HF32 / ALLOW_MATMUL_HF32)."""
        value = self.options.get("ALLOW_CONV_HF32" if conv else "ALLOW_MATMUL_HF32", "")
        return conv if value == "" else value == "enable"


def visible_devices(text: str | None, physical: int) -> list[int]:
    """The physical cards a process sees under ``ASCEND_RT_VISIBLE_DEVICES``, by torch_npu's own
    rule (``torch_npu/npu/__init__.py``: ``_parse_visible_devices`` and ``_device_count_ascend_hal``):
    ids read up to the first character that is neither a digit nor a comma; an empty id ends the
    list; ids must ascend (else no device at all); the list stops at the first id past the cards."""
    if text is None:
        return list(range(physical))
    end = next((i for i, c in enumerate(text) if not (c.isdigit() or c == ",")), len(text))
    ids: list[int] = []
    for item in text[:end].split(","):
        if not item:
            break
        ids.append(int(item))
    out: list[int] = []
    for i, value in enumerate(ids):
        if i > 0 and value <= ids[i - 1]:
            return []
        if value >= physical:
            break
        out.append(value)
    return out


HOST: Host | None = None


def host() -> Host:
    if HOST is None:
        raise RuntimeError("the emulated Ascend host is not initialised")
    return HOST


# --- time ----------------------------------------------------------------------------------------


def charged(index: int, work: Callable[[], Any], kernel: tuple) -> Any:
    """Run ``work`` (the kernel ``kernel``: operator, shapes, dtypes, precision) on card ``index``
    and advance the card's clock by that kernel's time: the least CPU time it took in its first
    :data:`SETTLE` runs on this host, then fixed (:class:`Costs`). Identical cards run identical
    kernels in identical time, as cards of one model do: once a kernel's cost is fixed (a forward's
    first runs, before any timed run, repeat each of its kernels), neither the host's load, nor
    another card's work, nor the order the cards run in, nor the process a card runs in
    (``pytest -n``) moves a card's clock."""
    fixed = COSTS.fixed.get(kernel)
    if fixed is not None:
        host().clock[index] += fixed
        return work()
    start = time.process_time()
    try:
        return work()
    finally:
        host().clock[index] += COSTS.measured(kernel, time.process_time() - start)


#: runs after which a kernel's cost is fixed
SETTLE = 8
#: the file the processes of one run share their fixed costs through (set by the first one)
COSTS_ENV = "R34_EMULATED_COSTS"


class Costs:
    """The emulated cards' cost table: kernel -> seconds. A kernel's cost is the least CPU time of
    its first :data:`SETTLE` runs, then fixed; a fixed cost is shared with every process of the run
    (pytest-xdist workers, subprocesses) through the file ``$R34_EMULATED_COSTS``, the first process
    to fix a kernel deciding it for all, so that cards timed in different processes read the same."""

    def __init__(self) -> None:
        self.fixed: dict[tuple, float] = {}
        self._runs: dict[tuple, tuple[float, int]] = {}
        self._read = 0  # how far into the shared file this process has read

    def measured(self, kernel: tuple, spent: float) -> float:
        best, runs = self._runs.get(kernel, (spent, 0))
        best, runs = min(best, spent), runs + 1
        self._sync(kernel if runs >= SETTLE else None, best)  # another process may have fixed it meanwhile
        if kernel in self.fixed:
            self._runs.pop(kernel, None)
            return self.fixed[kernel]
        self._runs[kernel] = (best, runs)
        return best

    def _sync(self, kernel: tuple | None, cost: float) -> None:
        """Read what other processes fixed; then fix ``kernel`` at ``cost`` unless one did first."""
        path = os.environ.get(COSTS_ENV)
        if not path:
            if kernel is not None:
                self.fixed[kernel] = cost
            return
        if kernel is None:  # only reading: nothing new unless the file grew
            try:
                if os.stat(path).st_size == self._read:
                    return
            except OSError:
                return
        import fcntl

        try:  # never created here: a file its run has removed is no longer shared
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except OSError:
            os.environ.pop(COSTS_ENV, None)
            if kernel is not None:
                self.fixed[kernel] = cost
            return
        with os.fdopen(fd, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(self._read)
            for line in f.read().splitlines():
                key, _, value = line.rpartition("\t")
                self.fixed.setdefault(_kernel_key(key), float(value))
            self._read = f.tell()
            if kernel is not None and kernel not in self.fixed:
                f.write(f"{kernel!r}\t{cost!r}\n")
                f.flush()
                self._read = f.tell()
                self.fixed[kernel] = cost


def _kernel_key(text: str) -> tuple:
    import ast

    return ast.literal_eval(text)


COSTS = Costs()


def kernel_of(name: str, args: Any, kwargs: Any) -> tuple:
    """What decides a kernel's cost: the operator, its tensors' shapes and dtypes, and for the
    cube unit the precision settings in force."""
    tensors = tuple((tuple(t.shape), str(t.dtype)) for t in _leaves((args, kwargs)) if isinstance(t, torch.Tensor))
    if name in _MATRIX:
        state = host()
        return (name, tensors, state.acl_mode(), state.allow_hf32(True), state.allow_hf32(False))
    return (name, tensors)


def _leaves(x: Any) -> list:
    if isinstance(x, (list, tuple)):
        return [leaf for item in x for leaf in _leaves(item)]
    if isinstance(x, dict):
        return [leaf for item in x.values() for leaf in _leaves(item)]
    return [x]


# --- memory ----------------------------------------------------------------------------------------


class DeviceTensor(torch.Tensor):
    """A tensor on ``npu:k`` whose data is the CPU tensor ``_data``."""

    @staticmethod
    def __new__(cls, data: torch.Tensor, device: torch.device) -> DeviceTensor:
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

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        return dispatch(func, args, kwargs or {})

    @property
    def data(self) -> torch.Tensor:
        return torch._C.TensorBase.data.__get__(self)

    @data.setter
    def data(self, new: torch.Tensor) -> None:
        """``t.data = new`` (what ``Module.to`` does to each parameter): the tensor takes ``new``'s
        memory, as set_data swaps a card tensor's storage."""
        torch._C.TensorBase.data.__set__(self, new)
        if isinstance(new, DeviceTensor):
            self._data = new._data
            self._format = getattr(new, "_format", ACL_FORMAT_ND)


#: ACL storage formats (``torch_npu/csrc/framework/utils/NpuUtils.h``: ACL_FORMAT_ND = 2, NC1HWC0 = 3,
#: FRACTAL_NZ = 29): the card keeps a tensor's values whatever its internal layout; what the layout
#: is, is recorded and read back (get_npu_format), as the format cast of a card does.
ACL_FORMAT_ND = 2


def _format_cast(self: torch.Tensor, acl_format: Any = ACL_FORMAT_ND, *args: Any, **kwargs: Any) -> torch.Tensor:
    if isinstance(acl_format, torch.Tensor):  # npu_format_cast.Tensor(self, dst): dst's format
        acl_format = getattr(acl_format, "_format", ACL_FORMAT_ND)
    out = DeviceTensor(self._data.clone(), self.device)
    out._format = int(acl_format)
    return out


def _format_cast_(self: torch.Tensor, src: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
    self._format = int(getattr(src, "_format", src) if not isinstance(src, int) else src)
    return self


#: The ``npu::`` operators the paths the suite takes reach (torch_npu's Module.to casts weights to
#: the cube's formats on cards that compile kernels just in time): what they do to a card tensor.
NPU_OPERATORS: dict[str, Callable[..., Any]] = {
    "npu::npu_format_cast": _format_cast,
    "npu::_npu_format_cast": _format_cast,
    "npu::npu_format_cast_": _format_cast_,
    "npu::get_npu_format": lambda self: getattr(self, "_format", ACL_FORMAT_ND),
    "npu::npu_dtype_cast": lambda self, dtype, input_dtype=None: self.to(dtype),
    "npu::_npu_dtype_cast": lambda self, dtype: self.to(dtype),
}


def dispatch(func: Any, args: tuple, kwargs: dict) -> Any:
    """One ATen operator on the emulated cards."""
    devices: list[torch.device] = []

    def unwrap(x: Any) -> Any:
        if isinstance(x, DeviceTensor):
            devices.append(x.device)
            return x._data
        return x

    name = func._schema.name
    if name.startswith("npu::"):
        if name not in NPU_OPERATORS:
            raise NotImplementedError(f"{name}: not emulated (the suite's paths do not reach it)")
        return NPU_OPERATORS[name](*args, **kwargs)
    plain_args, plain_kwargs = tree_map(unwrap, args), tree_map(unwrap, kwargs)
    if len(set(devices)) > 1:
        raise RuntimeError(
            f"Expected all tensors to be on the same device, but found at least two devices, "
            f"{devices[0]} and {next(d for d in devices if d != devices[0])}!"
        )
    cpu_operands = [
        a for a in (*args, *kwargs.values()) if type(a) is torch.Tensor and a.device.type == "cpu" and a.dim() > 0
    ]
    if devices and cpu_operands and name not in _ANY_DEVICE:
        raise RuntimeError(f"Expected all tensors to be on the same device, but found {devices[0]} and cpu!")
    state = host()
    device = devices[0] if devices else torch.device("npu", state.current)
    named = [a for a in (*plain_args, *plain_kwargs.values()) if isinstance(a, torch.device)]
    if named and named[0].type != "npu":  # off the card: a CPU copy, never an alias of its memory
        kernel = kernel_of(name, plain_args, plain_kwargs)
        out = charged(state.check(device.index or 0), lambda: func(*plain_args, **plain_kwargs), kernel)
        return tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, out)
    if named:
        device = torch.device("npu", state.check(named[0].index if named[0].index is not None else state.current))
        cpu = torch.device("cpu")
        plain_args = tuple(cpu if isinstance(a, torch.device) else a for a in plain_args)
        plain_kwargs = {k: cpu if isinstance(v, torch.device) else v for k, v in plain_kwargs.items()}
    index = state.check(device.index or 0)
    if graphs.capturing is not None and index != graphs.device:
        # a capture records one card's stream (NPUGraph.cpp: capture on the current stream)
        raise RuntimeError(
            f"{name} on npu:{index} while npu:{graphs.device}'s stream is capturing a graph: operation not "
            "permitted when stream is capturing (capture on the target's own device)"
        )
    faults.hazard(state.faults, state.physical_of(index), name)
    if name in _MATRIX:

        def compute(*a: Any, **k: Any) -> Any:
            return _matrix(func, name, a, k, index)
    else:
        compute = func
    kernel = kernel_of(name, plain_args, plain_kwargs)
    if not ascend.inf_nan_mode(state.soc):  # saturation mode: every result, in place ones included
        compute = _saturating(compute)
    out = charged(index, lambda: compute(*plain_args, **plain_kwargs), kernel)
    if graphs.capturing is not None:  # graph capture: the operator is recorded, to run again at replay
        graphs.capturing.append((compute, plain_args, plain_kwargs, out, kernel))
    returns = func._schema.returns
    if returns and returns[0].alias_info is not None and returns[0].alias_info.is_write:
        written = kwargs.get("out", args[0])  # in place, or an out= variant: its wrapper was written
        if tuple(written.shape) != tuple(written._data.shape):
            raise RuntimeError(f"{func}: resizing a tensor on the emulated device is not supported")
        return written
    wrapped = lambda x: DeviceTensor(x, device) if type(x) is torch.Tensor else x  # noqa: E731
    view = bool(returns) and returns[0].alias_info is not None
    if view and torch.is_inference_mode_enabled() and any(_normal(a) for a in args):
        # a view of a normal tensor taken under inference mode is a normal tensor (it shares the
        # base's version counter), as on the CPU: the wrapper must not be born an inference tensor
        with torch.inference_mode(False):
            return tree_map(wrapped, out)
    return tree_map(wrapped, out)


def _normal(x: Any) -> bool:
    return isinstance(x, DeviceTensor) and not x.is_inference()


def _saturating(compute: Callable[..., Any]) -> Callable[..., Any]:
    """``compute`` as a card in saturation mode runs it (CANN's float overflow mode; the 910A
    family supports no other): every float result, written in place where it lives (so in-place
    operators, ``out=`` variants and graph replay alike), has +-max of its dtype for an infinite
    value and 0 for NaN."""

    def run(*args: Any, **kwargs: Any) -> Any:
        out = compute(*args, **kwargs)
        for tensor in _leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                big = torch.finfo(tensor.dtype).max
                tensor.nan_to_num_(nan=0.0, posinf=big, neginf=-big)
        return out

    return run


# --- the cube unit -------------------------------------------------------------------------------


def _hf32(x: torch.Tensor) -> torch.Tensor:
    """Round float32 to HF32: 11 explicit mantissa bits (CANN's documentation), round to nearest
    even, on the bits: Inf stays Inf, a value past HF32's largest rounds to Inf, as RNE does; a NaN
    is kept as it was (its payload could carry into the sign)."""
    bits = x.contiguous().view(torch.int32)
    rounded = (bits >> 12).bitwise_and_(1).add_(0x7FF).add_(bits).bitwise_and_(~0xFFF).view(torch.float32)
    if torch.isnan(x).any():
        rounded = torch.where(torch.isnan(x), x, rounded)
    return rounded


def _matrix(func: Any, name: str, args: tuple, kwargs: dict, index: int) -> torch.Tensor:
    """A convolution or matrix product as the emulated card's cube unit computes it."""
    state = host()
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    dtype = tensors[0].dtype if tensors else torch.float32
    operands: Any = (1, 2) if name == "aten::addmm" else 2  # addmm(bias, input, weight); a bias is added in fp32
    conv = "conv" in name
    if dtype in (torch.float16, torch.bfloat16):
        cast = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
        out = func(*cast, **kwargs)  # operands in the dtype, fp32 accumulation, rounded result
        out = _as_fp16(out) if dtype == torch.float16 else out.to(dtype)
    elif dtype == torch.float32:
        precision = ascend.fp32_matrix_precision(state.soc, state.allow_hf32(conv), state.acl_mode())
        if precision == "fp16":
            out = _as_fp16(func(*_round_operands(args, operands, _fp16), **kwargs)).float()
        elif precision == "hf32":
            out = func(*_round_operands(args, operands, _hf32), **kwargs)
        else:
            out = func(*args, **kwargs)
    else:
        out = func(*args, **kwargs)
    weight = args[1] if len(args) > 1 and isinstance(args[1], torch.Tensor) else None
    card = state.faults.get(state.physical_of(index), set())
    if "precision" in card and conv and weight is not None and tuple(weight.shape) == FAULTY_WEIGHT:
        out = out * (1 + FAULT)
    if "ulp" in card and conv and weight is not None and tuple(weight.shape) == ULP_WEIGHT:
        out = _bits(out, lambda b: b + 1)
    if "flip" in card and out.dim() == 2 and out.shape[-1] == 1000:
        physical = state.physical_of(index)
        runs = state.flip_runs[physical] = state.flip_runs.get(physical, 0) + 1
        if runs % FLIP_EVERY == 2 % FLIP_EVERY:
            flat = out.reshape(-1).clone()
            at = int(flat.abs().argmax())
            flat[at : at + 1] = _bits(flat[at : at + 1], lambda b: b ^ 1)
            out = flat.reshape(out.shape)
    return out


def _fp16(t: torch.Tensor) -> torch.Tensor:
    """An fp32 operand as the cube takes it in fp16."""
    return t.half().float()


def _as_fp16(out: torch.Tensor) -> torch.Tensor:
    """An fp32-accumulated result rounded to fp16 by the cube: past fp16's range it is Inf, or on
    a card in saturation mode +-65504 (fp16's max), not the fp32 Inf a later widening would clamp."""
    if not ascend.inf_nan_mode(host().soc):
        big = torch.finfo(torch.float16).max
        out = out.clamp(-big, big).nan_to_num(nan=0.0)
    return out.half()


def _bits(x: torch.Tensor, change: Any) -> torch.Tensor:
    """``x`` with ``change`` applied to the integer bits of every finite element."""
    integer = {2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
    changed = change(x.contiguous().view(integer)).view(x.dtype)
    return torch.where(torch.isfinite(x), changed, x)


def _round_operands(args: tuple, which: Any, fn: Any) -> list:
    """The operands ``which`` rounded by ``fn``; a weight (the second operand) is rounded once and
    kept until its memory is written again (its version counter), as a card keeps weights in the
    cube's format instead of converting them at every call."""
    indexes = range(which) if isinstance(which, int) else which
    out = []
    for i, a in enumerate(args):
        if i in indexes and isinstance(a, torch.Tensor):
            a = _rounded_weight(a, fn) if i == indexes[-1] else fn(a)
        out.append(a)
    return out


_ROUNDED: dict[int, tuple] = {}


def _rounded_weight(weight: torch.Tensor, fn: Any) -> torch.Tensor:
    """Kept per weight tensor (dropped when the weight goes), valid while its version holds."""
    key = id(weight)
    cached = _ROUNDED.get(key)
    if cached is not None and cached[0]() is weight and cached[1] == weight._version and cached[2] is fn:
        return cached[3]
    rounded = fn(weight)
    _ROUNDED[key] = (weakref.ref(weight, lambda _ref, key=key: _ROUNDED.pop(key, None)), weight._version, fn, rounded)
    return rounded


# --- kernels registered for the device (what libtorch_npu.so registers for PrivateUse1) ------------


def empty(
    size: Any,
    dtype: Any = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: Any = None,
    memory_format: Any = None,
) -> DeviceTensor:
    state = host()
    index = state.check(device.index if device is not None and device.index is not None else state.current)
    faults.hazard(state.faults, state.physical_of(index), "aten::empty")
    data = torch.empty(
        size, dtype=dtype or torch.get_default_dtype(), memory_format=memory_format or torch.contiguous_format
    )
    return DeviceTensor(data, torch.device("npu", index))


def empty_strided(
    size: Any, stride: Any, dtype: Any = None, layout: Any = None, device: Any = None, pin_memory: Any = None
) -> DeviceTensor:
    state = host()
    index = state.check(device.index if device is not None and device.index is not None else state.current)
    faults.hazard(state.faults, state.physical_of(index), "aten::empty_strided")
    return DeviceTensor(
        torch.empty_strided(size, stride, dtype=dtype or torch.get_default_dtype()), torch.device("npu", index)
    )


def copy_from(src: torch.Tensor, dst: torch.Tensor, non_blocking: bool = False) -> torch.Tensor:
    data = src._data if isinstance(src, DeviceTensor) else src
    (dst._data if isinstance(dst, DeviceTensor) else dst).copy_(data)
    return dst


class graphs:  # noqa: N801 - a namespace for the capture in progress
    """The operators recorded by the graph being captured (one capture at a time per process, as
    torch_npu's graph() documents), or None."""

    capturing: list | None = None
    #: the card whose stream is capturing
    device: int = 0
