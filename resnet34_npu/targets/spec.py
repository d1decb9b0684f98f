"""Target specs: what runs the model, named by one spec string and parsed once.

A spec is ``DEVICE[/DTYPE][/MODE...][/KNOB=VALUE...]``:

* DEVICE: ``auto``, ``cpu``, ``npu[:N]``, ``cuda[:N]``, ``mps``, ``xpu[:N]`` (``devices.KINDS``);
* DTYPE: ``fp32`` (default); ``fp16`` / ``bf16`` cast the weights and the input;
  ``fp16-autocast`` / ``bf16-autocast`` keep fp32 weights and run under ``torch.autocast``;
* MODE: a set, empty by default (``eager``, which may be written alone): ``channels_last``,
  and at most one execution mode of the engine registry (``engines.ENGINES``, which says the
  kinds and dtypes each runs): ``compile``, ``graph`` (CUDA, NPU), ``export`` (CPU, CUDA),
  ``ort`` (ONNX Runtime with the device's provider: CPU, CUDA, CANN) or ``tensorrt`` (CUDA).
  Modes combine (``cuda/fp16/channels_last/graph``); each is one :class:`Mode` record applied
  in one place (``runners.Placement``);
* KNOB: a precision switch of the device kind (``knobs.KNOBS``): ``tf32=on|off`` and
  ``reduced_reduction=on|off`` (CUDA), ``hf32=on|off`` and ``acl=MODE`` (NPU); or a setting of
  an execution mode (its engine's ``settings_keys``): ``compile_mode=`` (CPU, CUDA),
  ``torchair_mode=`` (NPU compile), ``cann_precision=`` (NPU ort).

Examples: ``cpu``, ``cpu/bf16-autocast``, ``npu:1/fp16``, ``cuda/fp32/channels_last``,
``cuda/fp32/tf32=off``, ``npu/fp32/acl=must_keep_origin_dtype``, ``cpu/fp32/ort``,
``cuda/fp16/graph``, ``npu:0/fp32/ort/cann_precision=must_keep_origin_dtype``.

A custom target is ``module.path:factory``: a backend the suite does not know (an OM model
through ACL, a TensorRT engine, a new device plugin); see ``runners.build_custom``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import torch

from resnet34_npu.core.errors import InputError
from resnet34_npu.targets import devices, engines, knobs

DTYPES = {
    "fp32": (torch.float32, False),
    "fp16": (torch.float16, False),
    "bf16": (torch.bfloat16, False),
    "fp16-autocast": (torch.float16, True),
    "bf16-autocast": (torch.bfloat16, True),
}
EAGER = "eager"


def _same(x: Any) -> Any:
    return x


@dataclass(frozen=True)
class Mode:
    """A mode: how it changes the module and the input of a built-in target. An ``execution``
    mode (at most one per target) runs the placed module another way than eagerly
    (``engines``); ``kinds`` are the device kinds it applies to (empty: any); a ``host`` mode
    runs outside torch's device, so torch keeps the module and the input on the CPU."""

    name: str
    help: str
    module: Callable[[torch.nn.Module], torch.nn.Module] = _same
    input: Callable[[torch.Tensor], torch.Tensor] = _same
    execution: bool = False
    kinds: tuple[str, ...] = ()
    host: bool = False


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


#: Modes that change the layout, not how the module runs.
LAYOUTS: dict[str, Mode] = {
    "channels_last": Mode(
        "channels_last",
        "NHWC memory format for weights and input",
        lambda module: module.to(memory_format=torch.channels_last),
        _channels_last,
    ),
}


def _modes(registered: dict[str, engines.ExecutionEngine]) -> dict[str, Mode]:
    clash = [name for name in registered if name in LAYOUTS or name in DTYPES]
    if clash:
        raise InputError(f"engine mode {clash[0]!r}: already a layout mode or dtype of the target grammar")
    execution = {e.name: Mode(e.name, e.help, execution=True, kinds=e.kinds, host=e.host) for e in registered.values()}
    return {**LAYOUTS, **execution}


#: Every mode: the layouts, then the execution modes of the engine registry (``engines.ENGINES``).
MODES: Mapping[str, Mode] = engines.view(_modes)


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target spec; ``device`` is as written (``auto`` resolved later); ``modes`` and
    ``knobs`` are sorted, so equal targets have equal specs and names."""

    device: str
    dtype: str = "fp32"
    modes: tuple[str, ...] = ()
    knobs: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        return self.device.partition(":")[0]

    @property
    def mode(self) -> str:
        """The modes as one word for tables and reports: ``eager``, ``channels_last``, ..."""
        return "+".join(self.modes) or EAGER

    @property
    def name(self) -> str:
        return "/".join([self.device, self.dtype, *self.modes, *(f"{k}={v}" for k, v in self.knobs)])

    @property
    def execution(self) -> str | None:
        """The execution mode (``compile``, ``graph``, ``export``, ``ort``, ``tensorrt``), if any."""
        return next((m for m in self.modes if MODES[m].execution), None)

    def eager_twin(self) -> TargetSpec:
        """The same target run eagerly: same device, dtype and layout, no execution mode and
        none of its knobs."""
        modes = tuple(m for m in self.modes if not MODES[m].execution)
        return TargetSpec(self.device, self.dtype, modes, tuple(k for k in self.knobs if not knobs.KNOBS[k[0]].mode))

    def on(self, device: str) -> TargetSpec:
        """The same target on another device (``auto`` resolved)."""
        return TargetSpec(device, self.dtype, self.modes, self.knobs)


@dataclass(frozen=True)
class CustomSpec:
    """``module.path:factory``: a user-supplied backend."""

    module: str
    attr: str

    kind = "custom"

    @property
    def name(self) -> str:
        return f"{self.module}:{self.attr}"


_CUSTOM = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*):([A-Za-z_]\w*)$")


def _grammar() -> str:
    return f"Dtypes: {', '.join(DTYPES)}; modes: {', '.join(MODES)} (or {EAGER} alone); knobs: {knobs.knob_help()}"


def parse_target(text: str) -> TargetSpec | CustomSpec:
    """Parse ``DEVICE[/DTYPE][/MODE...][/KNOB=VALUE...]`` or ``module.path:factory``; errors
    name the valid parts."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"target {text!r}: empty. Write DEVICE[/DTYPE][/MODE][/KNOB=VALUE], e.g. cuda/fp16")
    custom = _CUSTOM.match(text.strip())
    if custom and custom.group(1) not in (*devices.KINDS, "auto"):
        return CustomSpec(custom.group(1), custom.group(2))
    device, *parts = text.strip().split("/")
    kind, _ = devices.parse_device(device)
    dtype: str | None = None
    modes: set[str] = set()
    eager = False
    chosen: dict[str, str] = {}
    for part in parts:
        if part in DTYPES and dtype is None:
            dtype = part
        elif part in MODES and part not in modes:
            modes.add(part)
        elif part == EAGER and not eager:
            eager = True
        elif "=" in part:
            key, _, value = part.partition("=")
            if key not in knobs.KNOBS or key in chosen:
                raise InputError(
                    f"target {text!r}: unknown or repeated knob {key!r}. Choose from: {', '.join(knobs.KNOBS)}"
                )
            knob = knobs.KNOBS[key]
            if value not in knob.values:
                raise InputError(
                    f"target {text!r}: {key}={value!r} is not valid. Choose one of: {', '.join(knob.values)}"
                )
            if kind != "auto" and kind not in knob.kinds:
                raise InputError(f"target {text!r}: {key} applies to {' and '.join(knob.kinds)} devices only")
            chosen[key] = value
        else:
            raise InputError(f"target {text!r}: unknown or repeated part {part!r}. {_grammar()}")
    if eager and modes:
        raise InputError(f"target {text!r}: {EAGER} means no mode, and {', '.join(sorted(modes))} is one")
    execution = sorted(m for m in modes if MODES[m].execution)
    if len(execution) > 1:
        raise InputError(f"target {text!r}: one execution mode at a time, not {' and '.join(execution)}")
    for mode in execution:
        if kind != "auto" and MODES[mode].kinds and kind not in MODES[mode].kinds:
            raise InputError(f"target {text!r}: {mode} runs on {', '.join(MODES[mode].kinds)} devices, not {kind}")
        engine = engines.get(mode)
        if engine.dtypes and (dtype or "fp32") not in engine.dtypes:
            raise InputError(
                f"target {text!r}: {mode} runs {' or '.join(engine.dtypes)} (weights and input cast), not {dtype}"
            )
    for key in chosen:
        needed = knobs.KNOBS[key].mode
        if needed and needed not in modes:
            raise InputError(f"target {text!r}: {key} is a setting of the {needed} mode; add /{needed}")
        host = [m for m in execution if MODES[m].host]
        if not needed and host:
            raise InputError(
                f"target {text!r}: {key} switches torch's device, which {host[0]} does not use "
                f"({engines.get(host[0]).host_note})"
            )
    for mode in execution:
        refused = engines.get(mode).refuses(dtype or "fp32")
        if refused:
            raise InputError(f"target {text!r}: {refused}")
    return TargetSpec(device, dtype or "fp32", tuple(sorted(modes)), tuple(sorted(chosen.items())))


def check_knobs(spec: TargetSpec, device: torch.device) -> None:
    """Knobs of a target written as ``auto`` must belong to the device it resolved to."""
    for key in dict(spec.knobs):
        kinds = knobs.KNOBS[key].kinds
        if device.type not in kinds:
            raise InputError(
                f"target {spec.name!r}: {key} applies to {' and '.join(kinds)} devices only, "
                f"and it resolved to {device}"
            )
    mode = spec.execution
    if mode and MODES[mode].kinds and device.type not in MODES[mode].kinds:
        raise InputError(f"target {spec.name!r}: {mode} runs on {', '.join(MODES[mode].kinds)} devices, not {device}")
