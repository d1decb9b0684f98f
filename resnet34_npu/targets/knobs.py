"""Precision knobs: the process-wide switches that change what a device computes for float32
tensors, how to read them, set them around one target's runs and restore them, and what
precision a target really computes in as a result.

One record per knob (:data:`KNOBS`): the device kind it belongs to, its values, and its
apply / describe functions. A target spec names knobs as ``KNOB=VALUE``; unset knobs stay as
the device has them; either way the settings in force are recorded in every report.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable

from resnet34_npu.core.errors import InputError
from resnet34_npu.targets import ascend, engines
from resnet34_npu.targets.engines import compile as _compile
from resnet34_npu.targets.engines import ort as _ort

#: ACL precision modes torch_npu's ``set_option`` accepts.
ACL_PRECISION_MODES = ("allow_fp32_to_fp16", "must_keep_origin_dtype")
_REDUCED_REDUCTION = ("allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction")


# --- CUDA ----------------------------------------------------------------------------------


def _new_tf32_api() -> tuple[Any, Any] | None:
    """torch >= 2.9's ``fp32_precision`` switches (cuDNN convolutions, CUDA matmuls), if present."""
    import torch

    conv = getattr(torch.backends.cudnn, "conv", None)
    matmul = torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision") and hasattr(matmul, "fp32_precision"):
        return conv, matmul
    return None


def cuda_tf32_settings() -> dict[str, Any]:
    """Whether CUDA convolutions and matmuls run fp32 in TF32, through whichever API is in
    use: torch >= 2.9 refuses to read the legacy ``allow_tf32`` flags once the new
    ``fp32_precision`` ones were set."""
    import torch

    settings: dict[str, Any] = {}
    new = _new_tf32_api()
    if new is not None:
        settings["cudnn.conv.fp32_precision"] = new[0].fp32_precision
        settings["cuda.matmul.fp32_precision"] = new[1].fp32_precision
    try:
        settings["cudnn.allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
        settings["cuda.matmul.allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    except RuntimeError:
        assert new is not None
        settings["cudnn.allow_tf32"] = new[0].fp32_precision == "tf32"
        settings["cuda.matmul.allow_tf32"] = new[1].fp32_precision == "tf32"
    return settings


def _set_cuda_tf32(value: str) -> Callable[[], None]:
    import torch

    enabled = value == "on"
    new = _new_tf32_api()
    if new is not None:
        saved = (new[0].fp32_precision, new[1].fp32_precision)
        new[0].fp32_precision = new[1].fp32_precision = "tf32" if enabled else "ieee"

        def undo() -> None:
            new[0].fp32_precision, new[1].fp32_precision = saved

        return undo
    legacy = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled

    def undo_legacy() -> None:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = legacy

    return undo_legacy


def _describe_cuda_tf32(settings: dict[str, Any], value: str) -> None:
    on = value == "on"
    settings.update({"cudnn.allow_tf32": on, "cuda.matmul.allow_tf32": on})
    for key in ("cudnn.conv.fp32_precision", "cuda.matmul.fp32_precision"):
        if key in settings:
            settings[key] = "tf32" if on else "ieee"


def cuda_settings() -> dict[str, Any]:
    import torch

    settings = cuda_tf32_settings()
    settings["cudnn.deterministic"] = bool(torch.backends.cudnn.deterministic)
    settings["cudnn.benchmark"] = bool(torch.backends.cudnn.benchmark)
    for attr in _REDUCED_REDUCTION:
        if hasattr(torch.backends.cuda.matmul, attr):
            settings[f"cuda.matmul.{attr}"] = bool(getattr(torch.backends.cuda.matmul, attr))
    return settings


def _set_reduced_reduction(value: str) -> Callable[[], None]:
    import torch

    matmul = torch.backends.cuda.matmul
    saved = {attr: getattr(matmul, attr) for attr in _REDUCED_REDUCTION}
    for attr in _REDUCED_REDUCTION:
        setattr(matmul, attr, value == "on")

    def undo() -> None:
        for attr, previous in saved.items():
            setattr(matmul, attr, previous)

    return undo


def _describe_reduced_reduction(settings: dict[str, Any], value: str) -> None:
    for attr in _REDUCED_REDUCTION:
        settings[f"cuda.matmul.{attr}"] = value == "on"


# --- Ascend NPU ----------------------------------------------------------------------------


def get_acl_precision_mode() -> str | None:
    """The ACL precision mode set in this process, read back from torch_npu (None: never set,
    so the device default applies)."""
    try:
        import torch_npu

        value = torch_npu._C._npu_getOption("ACL_PRECISION_MODE")
    except Exception:
        return None
    text = value.decode() if isinstance(value, bytes) else (value or "")
    return text or None


def set_acl_precision_mode(mode: str | None) -> None:
    """Set the ACL precision mode (None: the device default, since torch_npu cannot unset it)."""
    import torch

    if mode is None:
        mode = default_acl_precision_mode(str(torch.npu.get_device_name(0)))
    if get_acl_precision_mode() != mode:
        torch.npu.set_option({"ACL_PRECISION_MODE": mode})


def default_acl_precision_mode(soc: str) -> str:
    """The ACL precision mode a device uses when none is set (``ascend.default_acl_precision_mode``);
    a name torch_npu does not know (a future SoC) is taken as keeping the dtype."""
    try:
        return ascend.default_acl_precision_mode(soc.replace(" ", ""))
    except InputError:
        return "must_keep_origin_dtype"


def npu_settings() -> dict[str, Any]:
    import torch

    npu = torch.npu
    soc = ""
    with contextlib.suppress(Exception):
        soc = str(npu.get_device_name(0))
    mode = get_acl_precision_mode()
    overflow = None
    with contextlib.suppress(Exception):
        overflow = ascend.overflow_mode(soc)
    return {
        "npu.soc_version": soc,
        "npu.conv.allow_hf32": bool(npu.conv.allow_hf32),
        "npu.matmul.allow_hf32": bool(npu.matmul.allow_hf32),
        "ACL_PRECISION_MODE": mode or f"{default_acl_precision_mode(soc)} (device default, not set)",
        "npu.overflow_mode": overflow,
    }


def _set_hf32(value: str) -> Callable[[], None]:
    import torch

    backends = (torch.npu.conv, torch.npu.matmul)
    saved = [bool(b.allow_hf32) for b in backends]
    for backend in backends:
        backend.allow_hf32 = value == "on"

    def undo() -> None:
        for backend, previous in zip(backends, saved):
            backend.allow_hf32 = previous

    return undo


def _describe_hf32(settings: dict[str, Any], value: str) -> None:
    settings.update({"npu.conv.allow_hf32": value == "on", "npu.matmul.allow_hf32": value == "on"})


def _set_acl(value: str) -> Callable[[], None]:
    previous = get_acl_precision_mode()
    set_acl_precision_mode(value)
    return lambda: set_acl_precision_mode(previous)


def _describe_acl(settings: dict[str, Any], value: str) -> None:
    settings["ACL_PRECISION_MODE"] = value


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Knob:
    """A precision switch of some device kinds: set with ``apply(value)`` (which returns the
    undo), recorded with ``describe(settings, value)`` without touching the device. A knob
    with a ``mode`` is a setting of that execution mode (``engines`` reads it when it builds),
    not a process-wide switch."""

    name: str
    kinds: tuple[str, ...]
    values: tuple[str, ...]
    help: str
    apply: Callable[[str], Callable[[], None]]
    describe: Callable[[dict[str, Any], str], None]
    mode: str | None = None


def _no_switch(_value: str) -> Callable[[], None]:
    return lambda: None


def _setting(key: str) -> Callable[[dict[str, Any], str], None]:
    def describe(settings: dict[str, Any], value: str) -> None:
        settings[key] = value

    return describe


#: The execution modes' settings values (their engines hold them; named here as before).
COMPILE_MODES, TORCHAIR_MODES = _compile.COMPILE_MODES, _compile.TORCHAIR_MODES
CANN_PRECISION_MODES = _ort.CANN_PRECISION_MODES
#: Settings read as "computes float32 in fp16", whichever layer holds them.
_FP16_SETTINGS = ("ACL_PRECISION_MODE", "cann.precision_mode")


#: The device kinds' precision switches.
DEVICE_KNOBS: dict[str, Knob] = {
    k.name: k
    for k in (
        Knob(
            "tf32",
            ("cuda",),
            ("on", "off"),
            "CUDA convolutions and matmuls in TF32",
            _set_cuda_tf32,
            _describe_cuda_tf32,
        ),
        Knob(
            "reduced_reduction",
            ("cuda",),
            ("on", "off"),
            "CUDA fp16/bf16 matmuls may reduce in reduced precision",
            _set_reduced_reduction,
            _describe_reduced_reduction,
        ),
        Knob("hf32", ("npu",), ("on", "off"), "NPU convolutions and matmuls in HF32", _set_hf32, _describe_hf32),
        Knob("acl", ("npu",), ACL_PRECISION_MODES, "the NPU's ACL precision mode", _set_acl, _describe_acl),
    )
}


def _knobs(registered: dict[str, engines.ExecutionEngine]) -> dict[str, Knob]:
    """The device knobs, then each engine's settings keys (recorded, never switched)."""
    table = dict(DEVICE_KNOBS)
    for engine in registered.values():
        for key in engine.settings_keys:
            if key.name in table:
                raise InputError(f"engine {engine.name!r}: settings key {key.name!r} is already a knob")
            table[key.name] = Knob(
                key.name, key.kinds, key.values, key.help, _no_switch, _setting(key.record), engine.name
            )
    return table


#: Every knob: the device kinds' switches and the execution modes' settings keys.
KNOBS: Mapping[str, Knob] = engines.view(_knobs)


def knob_help() -> str:
    """``tf32=on|off (CUDA ...), ...`` for error messages and help texts."""
    return ", ".join(f"{k.name}={'|'.join(k.values) if len(k.values) < 3 else 'MODE'}" for k in KNOBS.values())


@contextlib.contextmanager
def applied(knobs: dict[str, str]) -> Iterator[None]:
    """Apply a target's knobs around its own runs and restore the previous settings after, so
    targets with different settings can share one process."""
    undo: list[Callable[[], None]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.9 deprecates allow_tf32 in favour of fp32_precision
        for name, value in knobs.items():
            undo.append(KNOBS[name].apply(value))
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step in reversed(undo):
                step()


def described(settings: dict[str, Any], knobs: dict[str, str]) -> dict[str, Any]:
    """The device's settings as they will be under ``knobs``, worked out without touching the
    process-wide switches."""
    settings = dict(settings)
    for name, value in knobs.items():
        KNOBS[name].describe(settings, value)
    return settings


def effective_precision(dtype: str, settings: dict[str, Any]) -> tuple[str, str]:
    """The precision a target really computes in, and why: its dtype, lowered to ``tf32`` /
    ``hf32`` / ``fp16`` when the device runs float32 convolutions in reduced precision."""
    if dtype != "fp32":
        kind = dtype.split("-")[0]
        if "autocast" in dtype:
            return kind, f"{dtype}: convolutions and matmuls autocast to {kind}"
        return kind, f"{dtype}: weights and input cast to {kind}"
    if settings.get("cudnn.allow_tf32"):
        return "tf32", "fp32 with torch.backends.cudnn.allow_tf32=True: convolutions run in TF32"
    if settings.get("cuda.matmul.allow_tf32"):
        return "tf32", "fp32 with torch.backends.cuda.matmul.allow_tf32=True: the fc layer runs in TF32"
    if settings.get("npu.soc_version"):
        return _npu_precision(settings)
    for key in _FP16_SETTINGS:
        value = str(settings.get(key, ""))
        if value.startswith(("allow_fp32_to_fp16", "force_fp16", "allow_mix_precision")):
            return "fp16", f"fp32 with {key}={value}: matrix operators run in fp16"
    if settings.get("onnxruntime.tf32"):
        return "tf32", f"fp32 on ONNX Runtime's {settings.get('onnxruntime.provider')}: TF32 is allowed by default"
    if settings.get("npu.conv.allow_hf32"):
        return "hf32", "fp32 with torch.npu.conv.allow_hf32=True: convolutions run in HF32"
    if settings.get("npu.matmul.allow_hf32"):
        return "hf32", "fp32 with torch.npu.matmul.allow_hf32=True: the fc layer runs in HF32"
    if settings.get("float32_matmul_precision") in ("high", "medium"):
        return "tf32", f"fp32 with float32_matmul_precision={settings['float32_matmul_precision']!r}"
    return "fp32", "fp32 end to end"


_ORDER = ("fp32", "hf32", "fp16")


def _npu_precision(settings: dict[str, Any]) -> tuple[str, str]:
    """An fp32 target on an Ascend card: the looser of what its convolutions and its fc layer
    compute in, by torch_npu's cube math type and the SoC's cube (``ascend.fp32_matrix_precision``)."""
    soc, mode = str(settings["npu.soc_version"]), str(settings.get("ACL_PRECISION_MODE") or "")
    mode = mode or default_acl_precision_mode(soc)
    try:
        conv = ascend.fp32_matrix_precision(soc, bool(settings.get("npu.conv.allow_hf32")), mode)
        fc = ascend.fp32_matrix_precision(soc, bool(settings.get("npu.matmul.allow_hf32")), mode)
    except InputError:  # a SoC torch_npu 2.14 does not know: judged by its switches alone
        conv = "hf32" if settings.get("npu.conv.allow_hf32") else "fp32"
        fc = "hf32" if settings.get("npu.matmul.allow_hf32") else "fp32"
    worst = max(conv, fc, key=_ORDER.index)
    if worst == "fp32":
        return "fp32", "fp32 end to end"
    return worst, (
        f"fp32 on {soc} with ACL_PRECISION_MODE={mode.split(' ')[0]}, conv.allow_hf32="
        f"{bool(settings.get('npu.conv.allow_hf32'))}, matmul.allow_hf32={bool(settings.get('npu.matmul.allow_hf32'))}"
        f": convolutions in {conv}, the fc layer in {fc}"
    )
