"""The target matrix: which targets a run tests, and why the others are skipped.

One definition, derived from the device registry, serves ``pytest`` and ``compare``: every
kind's fp32 target, at every visible index, plus its reduced precisions where it runs them by
default; the CPU adds ``cpu/fp32/channels_last`` and ``cpu/fp32/ort``, and its reduced-precision target
(``bf16-autocast``, ``fp16-autocast``) only where this CPU has native kernels for it, else as a
skip with the reason; every ``shown`` accelerator kind that is absent appears as a skip.
Each available accelerator adds its graph-capture targets and ONNX Runtime (a skip when its
provider is not installed); ``compile`` and ``export`` targets are in the matrix but left out
of a default run for their compile time (``-m slow`` runs them). The execution modes' targets
are their engines' ``default_targets`` (``engines.ENGINES``), ``slow`` ones left out.
``compare`` with no ``--target`` runs the available accelerator entries, or the CPU's when
there are none.
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet34_npu.core.errors import InputError
from resnet34_npu.targets import devices, engines
from resnet34_npu.targets.spec import CustomSpec, TargetSpec, parse_target

#: What the CPU always runs by default besides fp32 and its engines' default targets: channels_last.
CPU_EXTRA = ("cpu/fp32/channels_last",)
#: Why an engine's ``slow`` default targets (compile, export) are left out of a default run.
COMPILE_SLOW = "compiles for tens of seconds to minutes; run it with -m slow or --r34-target"
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
    choices.extend(TargetChoice(parse_target(text)) for text in CPU_EXTRA)
    choices.extend(_engine_targets("cpu", "cpu", slow=False))
    for dtype, why in devices.KINDS["cpu"].reduced().items():
        spec = parse_target(CPU_REDUCED[dtype])
        choices.append(TargetChoice(spec, slow_reason=f"{spec.name}: {why}" if why else ""))
    choices.extend(_engine_targets("cpu", "cpu", slow=True))
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
            choices.extend(_engine_targets(kind.name, device, slow=False))
            choices.extend(_engine_targets(kind.name, device, slow=True))
    return choices


def _engine_targets(kind: str, device: str, *, slow: bool) -> list[TargetChoice]:
    """The registered engines' default targets on ``device`` (registry order): the quick ones,
    or the ``slow`` ones (left out of a default run); a host runtime's backend that is missing
    here (an ONNX Runtime provider) is a skip with its reason."""
    choices = []
    for engine in engines.registry().values():
        if engine.slow != slow:
            continue
        for text in engine.default_targets.get(kind, ()):
            spec = parse_target(text.format(device=device))
            if slow:
                choices.append(TargetChoice(spec, slow_reason=f"{spec.name}: {COMPILE_SLOW}"))
                continue
            reason = engine.unavailable(kind, spec.dtype)
            choices.append(TargetChoice(spec, f"{spec.name}: {reason}" if reason else "", backend=engine.host))
    return choices


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
