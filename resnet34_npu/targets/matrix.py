"""The target matrix: which targets a run tests, and why the others are skipped.

One definition, derived from the device registry, serves ``pytest`` and ``compare``: every
kind's fp32 target, at every visible index, plus its reduced precisions where it runs them by
default; the CPU adds ``cpu/fp32/channels_last`` and ``cpu/fp32/ort``, and its reduced-precision target
(``bf16-autocast``, ``fp16-autocast``) only where this CPU has native kernels for it, else as a
skip with the reason; every ``shown`` accelerator kind that is absent appears as a skip.
Each available accelerator adds its graph-capture targets and ONNX Runtime (a skip when its
provider is not installed); ``compile`` and ``export`` targets are in the matrix but left out
of a default run for their compile time (``-m slow`` runs them).
``compare`` with no ``--target`` runs the available accelerator entries, or the CPU's when
there are none.
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet34_npu.core.errors import InputError
from resnet34_npu.targets import devices, engines
from resnet34_npu.targets.spec import CustomSpec, TargetSpec, parse_target

#: What the CPU always runs by default besides fp32: channels_last, and ONNX Runtime's CPU
#: provider (the engine a CPU user would pick instead of eager PyTorch).
CPU_EXTRA = ("cpu/fp32/channels_last", "cpu/fp32/ort")
#: Execution modes that compile for tens of seconds: in the matrix, left out of a default run.
COMPILED = {
    "cpu": ("cpu/fp32/compile", "cpu/fp32/export"),
    "cuda": ("{device}/fp32/compile", "{device}/fp16/compile", "{device}/fp32/export"),
    "npu": ("{device}/fp32/compile",),
}
COMPILE_SLOW = "compiles for tens of seconds to minutes; run it with -m slow or --r34-target"
#: Graph capture and replay, where the kind has it: cheap, in the default run.
GRAPHS = {"cuda": ("{device}/fp32/graph", "{device}/fp16/graph"), "npu": ("{device}/fp32/graph",)}
#: ONNX Runtime on an accelerator: when its provider is installed.
ORT_ON = {"cuda": "{device}/fp32/ort", "npu": "{device}/fp32/ort/cann_precision=must_keep_origin_dtype"}
#: The reduced precisions a CPU runs by default, as autocast (the form CPU users deploy).
CPU_REDUCED = {"bf16": "cpu/bf16-autocast", "fp16": "cpu/fp16-autocast"}


@dataclass(frozen=True)
class TargetChoice:
    """One target of the matrix. ``reason``: why it cannot run here (a skip); ``slow_reason``:
    why it is left out of a default run although it can run (a skip, unless ``-m slow`` asks for
    it, which runs it)."""

    spec: TargetSpec | CustomSpec
    reason: str = ""
    slow_reason: str = ""
    #: The reason is a backend this host lacks (an ONNX Runtime provider), not the device:
    #: a skip even where the device kind is required.
    backend: bool = False

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def runnable(self) -> bool:
        return not self.reason and not self.slow_reason

    @property
    def reduced_cpu(self) -> bool:
        """Reduced precision on the CPU: its batch-8 and repeated runs count as slow."""
        return isinstance(self.spec, TargetSpec) and self.kind == "cpu" and self.spec.dtype != "fp32"


def skip_reason(kind: str, reason: str) -> str:
    return f"{kind.upper()}: {reason}"


def default_matrix() -> list[TargetChoice]:
    """The default targets of this host (see the module docstring)."""
    choices = [TargetChoice(parse_target("cpu/fp32"))]
    for text in CPU_EXTRA:
        spec = parse_target(text)
        ort = spec.execution == "ort"
        choices.append(TargetChoice(spec, _ort_reason(spec) if ort else "", backend=ort))
    for dtype, why in devices.KINDS["cpu"].reduced().items():
        spec = parse_target(CPU_REDUCED[dtype])
        choices.append(TargetChoice(spec, slow_reason=f"{spec.name}: {why}" if why else ""))
    choices.extend(_slow(text) for text in COMPILED["cpu"])
    for kind in devices.KINDS.values():
        if not kind.accelerator:
            continue
        status = devices.probe(kind.name)
        if not status.available:
            if kind.shown:
                choices.append(TargetChoice(TargetSpec(kind.label(0)), skip_reason(kind.name, status.reason)))
            continue
        dtypes = ["fp32"] + [dtype for dtype, why in kind.reduced().items() if not why]
        for index in range(status.count):
            device = kind.label(index)
            choices.extend(TargetChoice(TargetSpec(device, dtype)) for dtype in dtypes)
            choices.extend(TargetChoice(parse_target(t.format(device=device))) for t in GRAPHS.get(kind.name, ()))
            if kind.name in ORT_ON:
                spec = parse_target(ORT_ON[kind.name].format(device=device))
                choices.append(TargetChoice(spec, _ort_reason(spec), backend=True))
            choices.extend(_slow(t.format(device=device)) for t in COMPILED.get(kind.name, ()))
    return choices


def _slow(text: str) -> TargetChoice:
    spec = parse_target(text)
    return TargetChoice(spec, slow_reason=f"{spec.name}: {COMPILE_SLOW}")


def _ort_reason(spec: TargetSpec) -> str:
    """Why ONNX Runtime cannot run ``spec`` here (its provider is not installed), or ""."""
    provider = engines.provider_settings(spec.kind, spec.execution or "ort", spec.dtype)["onnxruntime.provider"]
    try:
        import onnxruntime  # noqa: PLC0415 - optional
    except ImportError:
        return f"{spec.name}: onnxruntime is not installed"
    if provider not in onnxruntime.get_available_providers():
        return f"{spec.name}: this onnxruntime build has no {provider} (install the build that has it)"
    return ""


def compare_defaults() -> tuple[list[TargetChoice], str]:
    """What ``compare`` runs with no ``--target``: the available accelerators, or on a host
    without one the runnable CPU entries, with a note saying so."""
    matrix = default_matrix()
    accelerators = [c for c in matrix if c.runnable and c.kind != "cpu"]
    if accelerators:
        return accelerators, ""
    cpu = [c for c in matrix if c.runnable and c.kind == "cpu"]
    reasons = "; ".join(f"{k.name}: {devices.probe(k.name).reason}" for k in devices.KINDS.values() if k.accelerator)
    note = (
        f"No accelerator found ({reasons}). Comparing the CPU fp32 reference with the CPU targets "
        f"{', '.join(c.name for c in cpu)}."
    )
    return cpu, note


def choose_targets(specs: list[str] | None) -> list[TargetChoice]:
    """The matrix of a run: the named targets, or the default; ``auto`` is named as the
    device it resolves to; an absent device is kept as a skip with the reason."""
    if not specs:
        return default_matrix()
    choices: dict[str, TargetChoice] = {}
    for spec in map(parse_target, specs):
        if isinstance(spec, CustomSpec):
            choices.setdefault(spec.name, TargetChoice(spec))
            continue
        try:
            device = devices.resolve_device(spec.device)
        except InputError as exc:
            status = devices.probe(spec.kind) if spec.kind != "auto" else None
            reason = status.reason if status is not None and not status.available else str(exc)
            choices.setdefault(spec.name, TargetChoice(spec, skip_reason(spec.kind, reason)))
            continue
        if spec.device == "auto":  # name, mark and judge it as the device it is
            spec = spec.on("cpu" if device.type == "cpu" else str(device))
        choices.setdefault(spec.name, TargetChoice(spec))
    return list(choices.values())
