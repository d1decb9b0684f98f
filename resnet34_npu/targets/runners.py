"""Runners: a target made real, behind one protocol.

Every caller (the comparison engine, timing, localization, the pytest suite, the benchmarks)
talks to :class:`Runner` and never asks which kind of runner it has. Two implementations:

* :class:`ModelRunner`: a built-in target, the reference model copied to the device in the
  target's dtype, modes and knobs (:class:`Placement` applies them, in one place);
* :class:`CustomRunner`: a ``module.path:factory`` target. The factory receives the reference
  model (a copy: CPU, float32, eval mode) and returns a callable mapping a float32 CPU batch
  [N, 3, 224, 224] to logits [N, 1000], on any device and in any floating dtype. It may carry
  ``name``, ``precision`` (its effective precision, default ``fp32``) and ``synchronize()``;
  an ``nn.Module`` (or an object with a ``module`` attribute) whose submodules are named like
  ResNet34's stages can be localized layer by layer.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import torch

from resnet34_npu.core.constants import PRECISIONS
from resnet34_npu.core.errors import InputError
from resnet34_npu.model.weights import tensor_digest
from resnet34_npu.targets import devices, engines, knobs, watchdog
from resnet34_npu.targets.spec import DTYPES, MODES, CustomSpec, TargetSpec, check_knobs, parse_target
from resnet34_npu.targets.timing import DEFAULT_ITERS, DEFAULT_WARMUP, Timing, time_call


@runtime_checkable
class Runner(Protocol):
    """What the suite needs of a target.

    ``run(batch)`` maps a float32 CPU batch [N, 3, 224, 224] to checked float32 CPU logits
    [N, 1000]; ``time(batch)`` times it with the device synchronised around every call;
    ``describe()`` is its identity and precision for reports; ``module`` is the ``nn.Module``
    localization hooks into (None when there is none)."""

    name: str
    precision: str
    module: torch.nn.Module | None

    def run(self, batch: torch.Tensor) -> torch.Tensor: ...

    def timed_call(self, batch: torch.Tensor) -> Callable[[], Any]: ...

    def time(self, batch: torch.Tensor, *, warmup: int = DEFAULT_WARMUP, iters: int = DEFAULT_ITERS) -> Timing: ...

    def synchronize(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def check_logits(name: str, out: Any, batch_size: int) -> torch.Tensor:
    """A target's output as float32 CPU logits, or an :class:`InputError` saying what is wrong."""
    if not isinstance(out, torch.Tensor):
        raise InputError(f"target {name!r}: returned {type(out).__name__}, expected a tensor of logits [N, 1000]")
    if tuple(out.shape) != (batch_size, 1000):
        raise InputError(f"target {name!r}: returned logits of shape {list(out.shape)}, expected [{batch_size}, 1000]")
    if not out.is_floating_point():
        raise InputError(f"target {name!r}: returned {out.dtype} logits, expected a floating-point tensor")
    return out.detach().float().cpu()


@dataclass(frozen=True)
class Placement:
    """Where and how a built-in target computes: device, dtype (cast or autocast), modes and
    knobs. The one place a target's modes, dtype and knobs are applied, to the model, to its
    input and around its runs (operator tests use it too)."""

    spec: TargetSpec
    device: torch.device

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.spec.dtype][0]

    @property
    def autocast(self) -> bool:
        return DTYPES[self.spec.dtype][1]

    @property
    def host(self) -> bool:
        """The execution mode runs outside torch's device (its engine's ``host``: ONNX Runtime): torch keeps the
        module and the input on the CPU."""
        return any(MODES[m].host for m in self.spec.modes)

    @property
    def torch_device(self) -> torch.device:
        return torch.device("cpu") if self.host else self.device

    def module(self, model: torch.nn.Module) -> torch.nn.Module:
        """A copy of ``model`` on the device, in the target's dtype and modes."""
        module = copy.deepcopy(model).eval().to(self.torch_device)
        if not self.autocast:
            module = module.to(self.dtype)
        for mode in self.spec.modes:
            module = MODES[mode].module(module)
        return module

    def input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.torch_device, dtype=torch.float32 if self.autocast else self.dtype)
        for mode in self.spec.modes:
            x = MODES[mode].input(x)
        return x

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """Inference mode, the target's knobs and, for autocast dtypes, ``torch.autocast``."""
        with torch.inference_mode(), knobs.applied(dict(self.spec.knobs)):
            if self.autocast:
                with torch.autocast(device_type=self.device.type, dtype=self.dtype):
                    yield
            else:
                yield

    def synchronize(self) -> None:
        devices.synchronize(self.device)

    def settings(self) -> tuple[dict[str, Any], str, str]:
        """The precision settings under the target's knobs, its effective precision and why
        (for ONNX Runtime targets, the provider's settings: torch's switches do not apply)."""
        check_knobs(self.spec, self.device)
        mode = self.spec.execution
        engine = engines.get(mode) if mode else None
        base = {} if engine is not None and engine.host else devices.precision_settings(self.device)
        if engine is not None:  # a host mode's settings are its runtime's, not the device's
            base.update(engine.precision_settings(self.device.type, self.spec.dtype, dict(self.spec.knobs)))
        settings = knobs.described(base, dict(self.spec.knobs))
        return (settings, *knobs.effective_precision(self.spec.dtype, settings))


@dataclass
class ModelRunner:
    """A built-in target: the model copied to the device in the target's dtype and modes,
    run eagerly or by its execution mode's ``engine``. ``module`` is what localisation hooks
    into: None for an engine (compiled graphs, captured graphs and ONNX Runtime have no
    module hooks; their eager twin is localised instead)."""

    spec: TargetSpec
    placement: Placement
    eager_module: torch.nn.Module
    precision_settings: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    precision_reason: str = ""
    engine: engines.Engine | None = None

    @property
    def module(self) -> torch.nn.Module | None:
        return self.eager_module if self.engine is None else None

    def eager_twin(self) -> TargetSpec | None:
        """The same target run eagerly, when this one has an execution mode."""
        return self.spec.eager_twin() if self.engine is not None else None

    @property
    def device(self) -> torch.device:
        return self.placement.device

    @property
    def name(self) -> str:
        """The spec's name, with ``auto`` replaced by the device it resolved to."""
        return self.spec.name if self.spec.device != "auto" else self.spec.on(str(self.device)).name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass on device-resident input (from ``placement.input``), left on the device."""
        with self.placement.context():
            return self.eager_module(x) if self.engine is None else self.engine(x)

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        with watchdog.device_call("forward"):  # the logits come back to the CPU: synchronised
            return check_logits(self.name, self.forward(self.placement.input(batch)), batch.shape[0])

    def timed_call(self, batch: torch.Tensor) -> Callable[[], Any]:
        """The forward pass alone, input already on the device, as the model card times it."""
        x = self.placement.input(batch)
        return lambda: self.forward(x)

    def time(self, batch: torch.Tensor, *, warmup: int = DEFAULT_WARMUP, iters: int = DEFAULT_ITERS) -> Timing:
        # ONNX Runtime returns when its run is done: a host clock; device events for the rest
        clock = self.placement.torch_device
        return time_call(self.timed_call(batch), clock, warmup=warmup, iters=iters, batch_size=batch.shape[0])

    def synchronize(self) -> None:
        self.placement.synchronize()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device": str(self.device),
            "device_name": devices.device_name(self.device),
            "dtype": self.spec.dtype,
            "mode": self.spec.mode,
            "effective_precision": self.precision,
            "precision_reason": self.precision_reason,
            "precision_settings": self.precision_settings,
            **({"engine": self.engine.describe()} if self.engine is not None else {}),
        }


@dataclass
class CustomRunner:
    """A custom target: the factory's callable and what it declares."""

    spec: CustomSpec
    fn: Any
    name: str
    precision: str
    module: torch.nn.Module | None

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        with watchdog.device_call("forward"):
            return check_logits(self.name, self.fn(batch), batch.shape[0])

    def timed_call(self, batch: torch.Tensor) -> Callable[[], Any]:
        """End to end, from the CPU batch to float32 logits on the CPU (which waits for a device
        that runs asynchronously even when the target has no ``synchronize()``)."""
        return lambda: self.run(batch)

    def time(self, batch: torch.Tensor, *, warmup: int = DEFAULT_WARMUP, iters: int = DEFAULT_ITERS) -> Timing:
        return time_call(
            self.timed_call(batch),
            torch.device("cpu"),
            warmup=warmup,
            iters=iters,
            batch_size=batch.shape[0],
            synchronize=self.synchronize,
        )

    def synchronize(self) -> None:
        sync = getattr(self.fn, "synchronize", None)
        if callable(sync):
            sync()

    def eager_twin(self) -> CustomRunner | None:
        """When the target is a ``torch.compile``d module (itself, or as ``.module`` of the
        callable), the same target with the original module (``_orig_mod``): its eager twin."""
        compiled = _compiled(self.fn)
        if compiled is not None:
            fn = compiled._orig_mod
        else:
            compiled = _compiled(getattr(self.fn, "module", None))
            fn = copy.copy(self.fn)  # a copy whose .module is the original: the target itself is untouched
            if compiled is None or fn is self.fn:
                return None
            if isinstance(fn, torch.nn.Module):
                fn._modules = dict(fn._modules)  # a shallow copy of a module shares its submodule table
            fn.module = compiled._orig_mod
        return CustomRunner(self.spec, fn, f"{self.name} (eager: _orig_mod)", self.precision, compiled._orig_mod)

    def describe(self) -> dict[str, Any]:
        """Only what a custom target documents (``name``, ``precision``): where and how it runs
        is its own business."""
        return {
            "name": self.name,
            "device": "custom",
            "device_name": "custom",
            "dtype": self.precision,
            "mode": "custom",
            "effective_precision": self.precision,
            "precision_reason": "declared by the custom target",
            "precision_settings": {},
        }


def _compiled(obj: Any) -> Any:
    """``obj`` when it is a module returned by ``torch.compile`` (it keeps ``_orig_mod``)."""
    orig = getattr(obj, "_orig_mod", None) if isinstance(obj, torch.nn.Module) else None
    return obj if isinstance(orig, torch.nn.Module) else None


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
    if _compiled(inner) is not None:
        inner = None  # a compiled graph runs no module hooks: its eager twin is localised instead
    runner = CustomRunner(
        spec, fn, str(getattr(fn, "name", spec.name)), precision, inner if isinstance(inner, torch.nn.Module) else None
    )
    try:
        runner.run(torch.zeros(2, 3, 224, 224))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{label}: calling it on a batch of two raised {type(exc).__name__}: {exc}") from None
    return runner


def build_runner(spec: TargetSpec | CustomSpec | str, model: torch.nn.Module) -> Runner:
    """Resolve the device (raising :class:`InputError` when it is not available) and copy
    ``model`` there in the target's dtype and modes; ``model`` is left untouched. A custom
    spec builds the user's factory instead."""
    if isinstance(spec, str):
        spec = parse_target(spec)
    if isinstance(spec, CustomSpec):
        return build_custom(spec, model)
    placement = Placement(spec, devices.resolve_device(spec.device))
    settings, precision, reason = placement.settings()
    module = placement.module(model)
    engine = None
    if spec.execution:
        example = placement.input(torch.zeros(engines.example_batch(spec.execution), 3, 224, 224))
        engine = engines.build(
            spec.execution,
            module,
            example,
            placement.device,
            dict(spec.knobs),
            digest=tensor_digest(model.state_dict()) if placement.host else "",
            dtype=spec.dtype,
            context=placement.context,
        )
    return ModelRunner(spec, placement, module, settings, precision, reason, engine)
