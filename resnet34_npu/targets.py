"""Targets: what runs the model, named by one spec string and parsed once.

A spec is ``DEVICE[/DTYPE][/MODE][/KNOB=VALUE...]``:

* DEVICE: ``auto``, ``cpu``, ``npu[:N]``, ``cuda[:N]``, ``mps``, ``xpu[:N]``;
* DTYPE: ``fp32`` (default); ``fp16`` / ``bf16`` cast the weights and the input;
  ``fp16-autocast`` / ``bf16-autocast`` keep fp32 weights and run under ``torch.autocast``;
* MODE: ``eager`` (default) or ``channels_last``;
* KNOB: ``tf32=on|off`` (CUDA convolutions and matmuls), ``reduced_reduction=on|off`` (CUDA
  fp16/bf16 matmuls may reduce in reduced precision), ``hf32=on|off`` (NPU convolutions
  and matmuls), ``acl=MODE`` (the NPU's ACL precision mode, e.g. ``must_keep_origin_dtype``).
  Unset knobs stay as the device has them; either way the settings in force are recorded.

Examples: ``cpu``, ``cpu/bf16-autocast``, ``npu:1/fp16``, ``cuda/fp32/channels_last``,
``cuda/fp32/tf32=off``, ``npu/fp32/acl=must_keep_origin_dtype``.

A custom target is ``module.path:factory``: a backend the suite does not know (an OM model
through ACL, a TensorRT engine, a new device plugin). The factory receives the reference model
(a copy: CPU, float32, eval mode) and returns a callable mapping a float32 CPU batch
[N, 3, 224, 224] to logits [N, 1000], on any device and in any floating dtype. It may carry
``name``, ``precision`` (its effective precision, default ``fp32``) and ``synchronize()``; an
``nn.Module`` (or an object with a ``module`` attribute) whose submodules are named like
ResNet34's stages can be localised layer by layer.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

import torch

from . import devices
from .errors import InputError
from .metrics import PRECISIONS

DTYPES = {
    "fp32": (torch.float32, False),
    "fp16": (torch.float16, False),
    "bf16": (torch.bfloat16, False),
    "fp16-autocast": (torch.float16, True),
    "bf16-autocast": (torch.bfloat16, True),
}
MODES = ("eager", "channels_last")
KNOBS = {
    "tf32": ("on", "off"),
    "reduced_reduction": ("on", "off"),
    "hf32": ("on", "off"),
    "acl": devices.ACL_PRECISION_MODES,
}
_KNOB_DEVICE = {"tf32": "cuda", "reduced_reduction": "cuda", "hf32": "npu", "acl": "npu"}


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target spec; ``device`` is as written (``auto`` resolved later)."""

    device: str
    dtype: str = "fp32"
    mode: str = "eager"
    knobs: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        parts = [self.device, self.dtype]
        if self.mode != "eager":
            parts.append(self.mode)
        parts.extend(f"{k}={v}" for k, v in self.knobs)
        return "/".join(parts)


@dataclass(frozen=True)
class CustomSpec:
    """``module.path:factory``: a user-supplied backend."""

    module: str
    attr: str

    @property
    def name(self) -> str:
        return f"{self.module}:{self.attr}"


_CUSTOM = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*):([A-Za-z_]\w*)$")


def parse_target(text: str) -> TargetSpec | CustomSpec:
    """Parse ``DEVICE[/DTYPE][/MODE][/KNOB=VALUE...]`` or ``module.path:factory``; errors
    name the valid parts."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"target {text!r}: empty. Write DEVICE[/DTYPE][/MODE][/KNOB=VALUE], e.g. cuda/fp16")
    custom = _CUSTOM.match(text.strip())
    if custom and custom.group(1) not in devices.KINDS + ("auto",):
        return CustomSpec(custom.group(1), custom.group(2))
    device, *parts = text.strip().split("/")
    devices.parse_device(device)
    dtype, mode, knobs = None, None, {}
    for part in parts:
        if part in DTYPES and dtype is None:
            dtype = part
        elif part in MODES and mode is None:
            mode = part
        elif "=" in part:
            key, _, value = part.partition("=")
            if key not in KNOBS or key in knobs:
                raise InputError(f"target {text!r}: unknown or repeated knob {key!r}. Choose from: {', '.join(KNOBS)}")
            if value not in KNOBS[key]:
                raise InputError(f"target {text!r}: {key}={value!r} is not valid. Choose one of: {', '.join(KNOBS[key])}")
            kind = device.partition(":")[0]
            if kind not in (_KNOB_DEVICE[key], "auto"):
                raise InputError(f"target {text!r}: {key} applies to {_KNOB_DEVICE[key]} devices only")
            knobs[key] = value
        else:
            raise InputError(
                f"target {text!r}: unknown or repeated part {part!r}. Dtypes: {', '.join(DTYPES)}; "
                f"modes: {', '.join(MODES)}; knobs: tf32=on|off, reduced_reduction=on|off, hf32=on|off, acl=MODE"
            )
    return TargetSpec(device, dtype or "fp32", mode or "eager", tuple(sorted(knobs.items())))


@contextlib.contextmanager
def precision_context(device: torch.device, knobs: dict[str, str]) -> Iterator[None]:
    """Apply a target's knobs around its own runs and restore the previous settings after, so
    targets with different settings can share one process."""
    restore: list[Callable[[], None]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if device.type == "cuda" and "tf32" in knobs:
            saved_tf32 = devices.set_cuda_tf32(knobs["tf32"] == "on")
            restore.append(lambda: devices.restore_cuda_tf32(saved_tf32))
        if device.type == "cuda" and "reduced_reduction" in knobs:
            matmul = torch.backends.cuda.matmul
            for attr in ("allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction"):
                previous = getattr(matmul, attr)
                setattr(matmul, attr, knobs["reduced_reduction"] == "on")
                restore.append(lambda attr=attr, previous=previous: setattr(matmul, attr, previous))
        if device.type == "npu" and "hf32" in knobs:
            for backend in (torch.npu.conv, torch.npu.matmul):
                previous = bool(backend.allow_hf32)
                backend.allow_hf32 = knobs["hf32"] == "on"
                restore.append(lambda backend=backend, previous=previous: setattr(backend, "allow_hf32", previous))
        if device.type == "npu" and "acl" in knobs:
            previous_mode = devices.get_acl_precision_mode()
            devices.set_acl_precision_mode(knobs["acl"])
            restore.append(lambda: devices.set_acl_precision_mode(previous_mode))
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for undo in reversed(restore):
                undo()


def knob_settings(device: torch.device, knobs: dict[str, str]) -> dict[str, Any]:
    """The precision settings a target runs with: the device's, overridden by its knobs,
    worked out without touching the process-wide switches."""
    settings = devices.precision_settings(device)
    if device.type == "cuda" and "tf32" in knobs:
        on = knobs["tf32"] == "on"
        settings.update({"cudnn.allow_tf32": on, "cuda.matmul.allow_tf32": on})
        for key in ("cudnn.conv.fp32_precision", "cuda.matmul.fp32_precision"):
            if key in settings:
                settings[key] = "tf32" if on else "ieee"
    if device.type == "cuda" and "reduced_reduction" in knobs:
        for attr in ("allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction"):
            settings[f"cuda.matmul.{attr}"] = knobs["reduced_reduction"] == "on"
    if device.type == "npu" and "hf32" in knobs:
        settings.update({"npu.conv.allow_hf32": knobs["hf32"] == "on", "npu.matmul.allow_hf32": knobs["hf32"] == "on"})
    if device.type == "npu" and "acl" in knobs:
        settings["ACL_PRECISION_MODE"] = knobs["acl"]
    return settings


def effective_precision(dtype: str, settings: dict[str, Any]) -> tuple[str, str]:
    """The precision a target really computes in, and why: its dtype, lowered to ``tf32`` /
    ``hf32`` / ``fp16`` when the device runs float32 convolutions in reduced precision."""
    if dtype != "fp32":
        kind = dtype.split("-")[0]
        reason = f"{dtype}: weights and input cast to {kind}" if "autocast" not in dtype else f"{dtype}: convolutions and matmuls autocast to {kind}"
        return kind, reason
    if settings.get("cudnn.allow_tf32"):
        return "tf32", "fp32 with torch.backends.cudnn.allow_tf32=True: convolutions run in TF32"
    if settings.get("cuda.matmul.allow_tf32"):
        return "tf32", "fp32 with torch.backends.cuda.matmul.allow_tf32=True: the fc layer runs in TF32"
    acl = str(settings.get("ACL_PRECISION_MODE", ""))
    if acl.startswith(("allow_fp32_to_fp16", "force_fp16", "allow_mix_precision")):
        return "fp16", f"fp32 with ACL_PRECISION_MODE={acl}: matrix operators run in fp16"
    if settings.get("npu.conv.allow_hf32"):
        return "hf32", "fp32 with torch.npu.conv.allow_hf32=True: convolutions run in HF32"
    if settings.get("npu.matmul.allow_hf32"):
        return "hf32", "fp32 with torch.npu.matmul.allow_hf32=True: the fc layer runs in HF32"
    if settings.get("float32_matmul_precision") in ("high", "medium"):
        return "tf32", f"fp32 with float32_matmul_precision={settings['float32_matmul_precision']!r}"
    return "fp32", "fp32 end to end"


@runtime_checkable
class Runner(Protocol):
    """What the comparison engine needs of a target: a name, its effective precision, a
    call mapping a float32 CPU batch [N, 3, 224, 224] to logits [N, 1000], and a way to wait
    for the device. Built-in targets are :class:`ModelRunner`; custom backends adapt to this."""

    name: str
    precision: str

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...

    def synchronize(self) -> None: ...


@dataclass
class ModelRunner:
    """A built-in target made real: the model copied to the device in the target's dtype and
    memory format. Calling it maps a float32 CPU batch [N, 3, 224, 224] to float32 CPU logits."""

    spec: TargetSpec
    device: torch.device
    module: torch.nn.Module
    precision_settings: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    precision_reason: str = ""

    @property
    def name(self) -> str:
        """The spec's name, with ``auto`` replaced by the device it resolved to."""
        if self.spec.device != "auto":
            return self.spec.name
        return TargetSpec(str(self.device), self.spec.dtype, self.spec.mode, self.spec.knobs).name

    @property
    def knobs(self) -> dict[str, str]:
        return dict(self.spec.knobs)

    def prepare_input(self, batch: torch.Tensor) -> torch.Tensor:
        dtype, autocast = DTYPES[self.spec.dtype]
        x = batch.to(self.device, dtype=torch.float32 if autocast else dtype)
        if self.spec.mode == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass on device-resident input, output left on the device."""
        dtype, autocast = DTYPES[self.spec.dtype]
        with torch.inference_mode(), precision_context(self.device, self.knobs):
            if autocast:
                with torch.autocast(device_type=self.device.type, dtype=dtype):
                    return self.module(x)
            return self.module(x)

    def synchronize(self) -> None:
        devices.synchronize(self.device)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.forward(self.prepare_input(batch))
        return out.float().cpu()


def run_checked(runner: Runner, batch: torch.Tensor) -> torch.Tensor:
    """Call a target and bring its logits back as float32 on the CPU, checking the shape."""
    out = runner(batch)
    if not isinstance(out, torch.Tensor):
        raise InputError(f"target {runner.name!r}: returned {type(out).__name__}, expected a tensor of logits [N, 1000]")
    if tuple(out.shape) != (batch.shape[0], 1000):
        raise InputError(f"target {runner.name!r}: returned logits of shape {list(out.shape)}, expected [{batch.shape[0]}, 1000]")
    if not (out.is_floating_point()):
        raise InputError(f"target {runner.name!r}: returned {out.dtype} logits, expected a floating-point tensor")
    return out.detach().float().cpu()


@dataclass
class CustomRunner:
    """A custom target adapted to :class:`Runner`: the factory's callable and what it declares."""

    spec: CustomSpec
    fn: Any
    name: str
    precision: str
    module: torch.nn.Module | None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.fn(batch)

    def synchronize(self) -> None:
        sync = getattr(self.fn, "synchronize", None)
        if callable(sync):
            sync()


def build_custom(spec: CustomSpec, model: torch.nn.Module) -> CustomRunner:
    """Import ``module.path``, call ``factory(copy of model)`` and check what it returns with
    one call on a batch of two; every problem is an :class:`InputError` naming the target."""
    label = f"target '{spec.name}'"
    try:
        module = importlib.import_module(spec.module)
    except Exception as exc:
        raise InputError(f"{label}: cannot import module {spec.module!r} ({type(exc).__name__}: {exc})") from None
    factory = getattr(module, spec.attr, None)
    if not callable(factory):
        raise InputError(f"{label}: module {spec.module!r} has no callable {spec.attr!r}")
    try:
        fn = factory(copy.deepcopy(model).eval())
    except Exception as exc:
        raise InputError(f"{label}: the factory raised {type(exc).__name__}: {exc}") from None
    if not callable(fn):
        raise InputError(f"{label}: the factory returned {type(fn).__name__}, not a callable")
    precision = getattr(fn, "precision", "fp32")
    if precision not in PRECISIONS:
        raise InputError(f"{label}: precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    inner = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "module", None)
    runner = CustomRunner(spec, fn, str(getattr(fn, "name", spec.name)), precision,
                          inner if isinstance(inner, torch.nn.Module) else None)
    try:
        run_checked(runner, torch.zeros(2, 3, 224, 224))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{label}: calling it on a batch of two raised {type(exc).__name__}: {exc}") from None
    return runner


def build_runner(spec: TargetSpec | CustomSpec | str, model: torch.nn.Module) -> ModelRunner | CustomRunner:
    """Resolve the device (raising :class:`InputError` when it is not available) and copy
    ``model`` there in the target's dtype and memory format. ``model`` is left untouched.
    A custom spec builds the user's factory instead."""
    if isinstance(spec, str):
        spec = parse_target(spec)
    if isinstance(spec, CustomSpec):
        return build_custom(spec, model)
    device = devices.resolve_device(spec.device)
    dtype, autocast = DTYPES[spec.dtype]
    module = copy.deepcopy(model).eval().to(device)
    if not autocast:
        module = module.to(dtype)
    if spec.mode == "channels_last":
        module = module.to(memory_format=torch.channels_last)
    settings, precision, reason = resolve_precision(spec, device)
    return ModelRunner(spec, device, module, settings, precision, reason)


def resolve_precision(spec: TargetSpec, device: torch.device) -> tuple[dict[str, Any], str, str]:
    """The precision settings under the target's knobs, its effective precision and why."""
    for key in dict(spec.knobs):
        if _KNOB_DEVICE[key] != device.type:
            raise InputError(f"target {spec.name!r}: {key} applies to {_KNOB_DEVICE[key]} devices only, "
                             f"and it resolved to {device}")
    settings = knob_settings(device, dict(spec.knobs))
    return (settings, *effective_precision(spec.dtype, settings))


#: Reduced precisions worth testing per accelerator kind (bf16 only where supported).
_REDUCED = {"npu": ("fp16", "bf16"), "cuda": ("fp16", "bf16"), "xpu": ("fp16", "bf16"), "mps": ("fp16",)}


def _bf16_supported(kind: str) -> bool:
    backend = getattr(torch, kind, None)
    check = getattr(backend, "is_bf16_supported", None)
    try:
        return bool(check()) if check is not None else kind != "mps"
    except Exception:
        return False


def accelerator_targets() -> list[str]:
    """Every available accelerator kind and every visible index, at fp32 and at the reduced
    precisions the device supports (npu:0/fp32, npu:0/fp16, npu:0/bf16, npu:1/fp32, ...)."""
    specs = []
    for kind in ("npu", "cuda", "mps", "xpu"):
        status = devices.probe(kind)
        if not status.available:
            continue
        dtypes = ["fp32"] + [d for d in _REDUCED[kind] if d != "bf16" or _bf16_supported(kind)]
        for index in range(status.count):
            device = kind if kind == "mps" else f"{kind}:{index}"
            specs.extend(f"{device}/{dtype}" for dtype in dtypes)
    return specs


#: On a CPU-only host: the CPU targets worth running by default (fp16/bf16 CPU kernels can be
#: tens of times slower, so they run only when asked for).
CPU_DEFAULT_TARGETS = ("cpu/fp32", "cpu/fp32/channels_last")
