"""Devices: which kinds exist here and why not, synchronisation, names, precision settings.

Kinds: ``cpu``, ``npu`` (Ascend, through torch_npu), ``cuda``, ``mps`` and ``xpu``, each with an
index (``npu:3``). ``auto`` picks npu, then cuda, then mps, then cpu. torch_npu is imported only
when an NPU is asked for or probed, inside try/except: a missing or broken torch_npu makes the
NPU unavailable, with the real cause as the reason, and never stops anything else.
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import torch

from .errors import InputError

KINDS = ("cpu", "npu", "cuda", "mps", "xpu")
AUTO_ORDER = ("npu", "cuda", "mps", "cpu")

#: Reasons kept as constants: they name what is missing and how to enable it.
NPU_NOT_INSTALLED = "torch_npu is not installed; on an Ascend host: pip install -r requirements-npu.txt"
NPU_NOT_VISIBLE = "torch_npu imported but no NPU is visible (check `npu-smi info` and ASCEND_RT_VISIBLE_DEVICES)"
CUDA_NOT_BUILT = "this torch build has no CUDA support; install a CUDA build of torch"
CUDA_NOT_VISIBLE = "no CUDA device is visible (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)"
MPS_NOT_AVAILABLE = "MPS is not available (needs Apple silicon and a torch build with MPS)"
XPU_NOT_AVAILABLE = "no Intel XPU is visible (needs an XPU build of torch and a visible device)"


@dataclass(frozen=True)
class KindStatus:
    """Whether a device kind can be used here: ``count`` devices, or ``reason`` why none."""

    kind: str
    available: bool
    count: int
    reason: str = ""


@dataclass(frozen=True)
class DeviceRow:
    """One line of ``resnet34-npu devices``: a device, or a kind that is not available."""

    device: str
    available: bool
    reason: str
    name: str
    precision: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def probe_npu(module: str = "torch_npu") -> KindStatus:
    """Probe Ascend NPUs without ever letting a broken torch_npu escape.

    ``module`` is the import name, a parameter so tests can point it at real broken packages."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError) as exc:
        return KindStatus("npu", False, 0, f"import {module} failed: {_first_line(exc)}")
    if not found:
        return KindStatus("npu", False, 0, NPU_NOT_INSTALLED if module == "torch_npu" else f"{module} is not installed")
    try:
        importlib.import_module(module)
    except Exception as exc:  # torch_npu raises ImportError, RuntimeError, OSError... on hosts without CANN
        return KindStatus("npu", False, 0, f"import {module} failed: {_first_line(exc)}")
    backend = getattr(torch, "npu", None)
    if backend is None:
        return KindStatus("npu", False, 0, f"{module} imported but did not register torch.npu")
    try:
        count = backend.device_count() if backend.is_available() else 0
    except Exception as exc:
        return KindStatus("npu", False, 0, f"torch.npu failed to count devices: {_first_line(exc)}")
    if count == 0:
        return KindStatus("npu", False, 0, NPU_NOT_VISIBLE)
    return KindStatus("npu", True, count)


def _accelerator_count(kind: str) -> int | None:
    """Device count through ``torch.accelerator`` when torch has it and ``kind`` is its type."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is None:
        return None
    current = accelerator.current_accelerator()
    if current is None or current.type != kind or not accelerator.is_available():
        return None
    return accelerator.device_count()


@lru_cache(maxsize=None)
def probe(kind: str) -> KindStatus:
    """Whether ``kind`` is usable here and, if not, exactly why (cached per process)."""
    if kind == "cpu":
        return KindStatus("cpu", True, 1)
    if kind == "npu":
        return probe_npu()
    if kind == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            return KindStatus("cuda", False, 0, CUDA_NOT_BUILT)
        count = _accelerator_count("cuda")
        if count is None:
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return KindStatus("cuda", count > 0, count, "" if count else CUDA_NOT_VISIBLE)
    if kind == "mps":
        available = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        return KindStatus("mps", available, int(available), "" if available else MPS_NOT_AVAILABLE)
    if kind == "xpu":
        backend = getattr(torch, "xpu", None)
        count = backend.device_count() if backend is not None and backend.is_available() else 0
        return KindStatus("xpu", count > 0, count, "" if count else XPU_NOT_AVAILABLE)
    raise InputError(f"Unknown device kind {kind!r}. Choose one of: {', '.join(KINDS)}")


def parse_device(spec: str) -> tuple[str, int | None]:
    """Check the syntax of ``kind[:N]`` (or ``auto``) and split it, without probing."""
    kind, sep, index = spec.partition(":")
    if spec != "auto" and kind not in KINDS or (spec == "auto" and sep):
        raise InputError(f"Unknown device {spec!r}. Choose one of: auto, {', '.join(KINDS)} (with :N for an index, e.g. npu:3)")
    if not sep:
        return kind, None
    if not (index.isascii() and index.isdigit()) or kind in ("cpu", "mps") and index != "0":
        raise InputError(f"device {spec!r}: the index must be a non-negative integer{' and cpu/mps have only :0' if kind in ('cpu', 'mps') else ''}")
    return kind, int(index)


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn ``auto``, ``cpu``, ``npu[:N]``, ``cuda[:N]``, ``mps`` or ``xpu[:N]`` into a usable
    ``torch.device``; raise :class:`InputError` saying why when it is not available."""
    kind, index = parse_device(spec)
    if kind == "auto":
        kind = next(k for k in AUTO_ORDER if probe(k).available)
    status = probe(kind)
    if not status.available:
        raise InputError(f"device {spec!r} is not available: {status.reason}")
    if index is not None and index >= status.count:
        visible = ", ".join(f"{kind}:{i}" for i in range(status.count))
        raise InputError(f"device {spec!r}: index {index} out of range, {status.count} {kind} device(s) visible ({visible})")
    if kind == "cpu":
        return torch.device("cpu")
    return torch.device(kind, 0 if index is None else index)


def synchronize(device: torch.device) -> None:
    """Wait for all work queued on ``device`` (no-op on the CPU)."""
    if device.type == "cpu":
        return
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        current = accelerator.current_accelerator()
        if current is not None and current.type == device.type:
            accelerator.synchronize(device)
            return
    getattr(torch, device.type).synchronize(device)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cpu":
        return cpu_name()
    if device.type == "mps":
        return "Apple MPS"
    backend = getattr(torch, device.type)
    return str(backend.get_device_name(device.index or 0))


def precision_settings(device: torch.device) -> dict[str, Any]:
    """The switches in force that change what ``device`` computes for float32 tensors."""
    settings: dict[str, Any] = {"float32_matmul_precision": torch.get_float32_matmul_precision()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.9 deprecates allow_tf32 in favour of fp32_precision
        if device.type == "cpu":
            settings["num_threads"] = torch.get_num_threads()
            settings["mkldnn_enabled"] = bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)
        elif device.type == "cuda":
            settings.update(cuda_tf32_settings())
            settings["cudnn.deterministic"] = bool(torch.backends.cudnn.deterministic)
            settings["cudnn.benchmark"] = bool(torch.backends.cudnn.benchmark)
            matmul = torch.backends.cuda.matmul
            for attr in ("allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction"):
                if hasattr(matmul, attr):
                    settings[f"cuda.matmul.{attr}"] = bool(getattr(matmul, attr))
        elif device.type == "npu":
            settings.update(npu_precision_settings())
    return settings


def _new_tf32_api() -> tuple[Any, Any] | None:
    """torch >= 2.9's ``fp32_precision`` switches (cuDNN convolutions, CUDA matmuls), if present."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    matmul = torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision") and hasattr(matmul, "fp32_precision"):
        return conv, matmul
    return None


def cuda_tf32_settings() -> dict[str, Any]:
    """Whether CUDA convolutions and matmuls run fp32 in TF32, through whichever API is in
    use: torch >= 2.9 refuses to read the legacy ``allow_tf32`` flags once the new
    ``fp32_precision`` ones were set."""
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


def set_cuda_tf32(enabled: bool) -> dict[str, Any]:
    """Turn TF32 on or off for CUDA convolutions and matmuls; returns what to pass to
    :func:`restore_cuda_tf32`."""
    new = _new_tf32_api()
    if new is not None:
        saved = {"new": (new[0].fp32_precision, new[1].fp32_precision)}
        value = "tf32" if enabled else "ieee"
        new[0].fp32_precision, new[1].fp32_precision = value, value
        return saved
    saved = {"legacy": (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)}
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    return saved


def restore_cuda_tf32(saved: dict[str, Any]) -> None:
    if "new" in saved:
        conv, matmul = _new_tf32_api()  # type: ignore[misc]
        conv.fp32_precision, matmul.fp32_precision = saved["new"]
    else:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved["legacy"]


#: ACL precision modes torch_npu's ``set_option`` accepts.
ACL_PRECISION_MODES = ("allow_fp32_to_fp16", "must_keep_origin_dtype")


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
    if mode is None:
        mode = default_acl_precision_mode(str(torch.npu.get_device_name(0)))
    if get_acl_precision_mode() != mode:
        torch.npu.set_option({"ACL_PRECISION_MODE": mode})


def default_acl_precision_mode(soc: str) -> str:
    """The ACL precision mode a device uses when none is set: Atlas training (Ascend910A,
    Ascend910ProA/B...) converts fp32 to fp16 for matrix operators; Atlas A2/A3 (Ascend910B1-4,
    Ascend910_93...) keep the original dtype."""
    name = soc.replace(" ", "")
    if name.startswith("Ascend910B") or name.startswith("Ascend910_9") or name.startswith("Ascend910C"):
        return "must_keep_origin_dtype"
    return "allow_fp32_to_fp16"


def npu_precision_settings() -> dict[str, Any]:
    npu = torch.npu
    soc = ""
    try:
        soc = str(npu.get_device_name(0))
    except Exception:
        pass
    mode = get_acl_precision_mode()
    return {
        "npu.conv.allow_hf32": bool(npu.conv.allow_hf32),
        "npu.matmul.allow_hf32": bool(npu.matmul.allow_hf32),
        "ACL_PRECISION_MODE": mode or f"{default_acl_precision_mode(soc)} (device default, not set)",
    }


def list_devices() -> list[DeviceRow]:
    """One row per device (every visible index) and one per unavailable kind, with its reason."""
    rows = []
    for kind in KINDS:
        status = probe(kind)
        if not status.available:
            rows.append(DeviceRow(kind, False, status.reason, "", {}))
            continue
        for index in range(status.count):
            device = torch.device(kind) if kind == "cpu" else torch.device(kind, index)
            name = "cpu" if kind == "cpu" else f"{kind}:{index}"
            rows.append(DeviceRow(name, True, "", device_name(device), precision_settings(device)))
    return rows
