"""Device kinds: one record per kind in a registry, from which the default matrix, the pytest
markers and skips, the CLI help and the ``devices`` table are all derived.

Kinds: ``cpu``, ``npu`` (Ascend, through torch_npu), ``cuda``, ``mps`` and ``xpu``, each with an
index where the kind has several devices (``npu:3``). ``auto`` picks npu, then cuda, then mps,
then cpu. torch_npu is imported only when an NPU is asked for or probed, inside try/except: a
missing or broken torch_npu makes the NPU unavailable, with the real cause as the reason, and
never stops anything else.

Adding a kind is one :class:`DeviceKind` record in :data:`KINDS` (and its precision knobs, if
it has any, in ``knobs.py``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import platform
import sys
import warnings
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Callable

from resnet34_npu.core.errors import SOURCE_CANN, InputError
from resnet34_npu.targets import knobs

if TYPE_CHECKING:
    import torch

#: Reasons kept as constants: they name what is missing and how to enable it.
NPU_NOT_INSTALLED = "torch_npu is not installed; on an Ascend host: pip install -r requirements-npu.txt"
NPU_NOT_VISIBLE = "torch_npu imported but no NPU is visible (check `npu-smi info` and ASCEND_RT_VISIBLE_DEVICES)"
CUDA_NOT_BUILT = "this torch build has no CUDA support; install a CUDA build of torch"
CUDA_NOT_VISIBLE = "no CUDA device is visible (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)"
MPS_NOT_AVAILABLE = "MPS is not available (needs Apple silicon and a torch build with MPS)"
XPU_NOT_AVAILABLE = "no Intel XPU is visible (needs an XPU build of torch and a visible device)"
#: Reduced-precision CPU targets leave the default matrix on CPUs without native kernels for them.
CPU_NO_NATIVE = (
    "this CPU has no native {dtype} kernels ({why}; without them {dtype} runs tens of times slower "
    "than fp32); run it with -m slow or --r34-target"
)


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
    #: an NPU of the emulated Ascend host (``R34_EMULATE_ASCEND``), not a card
    emulated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# --- probes ----------------------------------------------------------------------------------


def probe_npu(module: str = "torch_npu") -> KindStatus:
    """Probe Ascend NPUs without ever letting a broken torch_npu escape.

    ``module`` is the import name, a parameter so tests can point it at real broken packages."""
    import torch

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError) as exc:
        return KindStatus("npu", False, 0, f"import {module} failed: {_first_line(exc)}")
    if not found:
        return KindStatus("npu", False, 0, NPU_NOT_INSTALLED if module == "torch_npu" else f"{module} is not installed")
    try:
        # torch_npu prints its import-time warnings (CANN version, ASCEND_HOME_PATH) on stdout:
        # they go to stderr, so that a command's output (devices --json, a report on stdout) stays its own
        with contextlib.redirect_stdout(sys.stderr):
            importlib.import_module(module)
    except Exception as exc:  # torch_npu raises ImportError, RuntimeError, OSError... on hosts without CANN
        return KindStatus("npu", False, 0, f"import {module} failed: {_first_line(exc)}{npu_import_hint(exc)}")
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


def installed_torch_npu() -> str | None:
    """The installed torch_npu's release, read from its files (also when its import fails): its
    ``version.py``, else the distribution's metadata; None when none is installed."""
    import importlib.metadata
    import re
    from pathlib import Path

    try:
        spec = importlib.util.find_spec("torch_npu")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        with contextlib.suppress(OSError):
            text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
            found = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", text, re.M)
            if found:
                return found.group(1)
    try:
        return importlib.metadata.version("torch-npu")
    except importlib.metadata.PackageNotFoundError:
        return None


def npu_import_hint(exc: BaseException) -> str:
    """What to do about a torch_npu that failed to import, as a clause for its line: the installed
    release, and the fix for the causes users meet first (CANN not set up in this shell; a
    torch_npu built for another torch)."""
    import torch

    text = f"{exc} {exc.__cause__ or ''}"
    version = installed_torch_npu()
    have = f"torch_npu {version} installed" if version else "torch_npu installed"
    wanted = ".".join((version or "").split("+")[0].split(".")[:2])
    torch_release = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    fixes = []
    if wanted and wanted != torch_release:
        fixes.append(
            f"built for torch {wanted}.*; this is torch {torch.__version__}: install the matching pair, "
            f"pip install 'torch=={wanted}.*' or the torch-npu release for torch {torch_release}"
        )
    if any(lib in text for lib in ("libhccl.so", "libascendcl.so", "libascend_hal.so", "libacl", "libge_runner")):
        fixes.append(f"CANN is not installed or not set up in this shell: {SOURCE_CANN}")
    if not version and not fixes:
        return ""
    return f" ({'; '.join([have, *fixes])})"


def _accelerator_count(kind: str) -> int | None:
    """Device count through ``torch.accelerator`` when torch has it and ``kind`` is its type."""
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is None:
        return None
    current = accelerator.current_accelerator()
    if current is None or current.type != kind or not accelerator.is_available():
        return None
    return accelerator.device_count()


def _probe_cuda() -> KindStatus:
    import torch

    if torch.version.cuda is None and torch.version.hip is None:
        return KindStatus("cuda", False, 0, CUDA_NOT_BUILT)
    count = _accelerator_count("cuda")
    if count is None:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return KindStatus("cuda", count > 0, count, "" if count else CUDA_NOT_VISIBLE)


def _probe_mps() -> KindStatus:
    import torch

    available = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return KindStatus("mps", available, int(available), "" if available else MPS_NOT_AVAILABLE)


def _probe_xpu() -> KindStatus:
    import torch

    backend = getattr(torch, "xpu", None)
    count = backend.device_count() if backend is not None and backend.is_available() else 0
    return KindStatus("xpu", count > 0, count, "" if count else XPU_NOT_AVAILABLE)


# --- reduced precisions --------------------------------------------------------------------


def cpu_capability() -> str:
    """The vector instruction set ATen's CPU kernels use (``AVX512``, ``AVX2``, ...)."""
    import torch

    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return str(get()) if get is not None else "unknown"


@cache
def cpu_native_kernels() -> dict[str, str]:
    """Per reduced precision (``bf16``, ``fp16``): "" when this CPU has native kernels for it,
    else why not. oneDNN decides (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` and its fp16
    twin); on x86 ATen's CPU capability must also be AVX-512 or better, so a host restricted
    with ``ATEN_CPU_CAPABILITY=avx2`` is judged like an AVX2-only CPU."""
    import torch

    capability = cpu_capability()
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    found: dict[str, str] = {}
    for dtype in ("bf16", "fp16"):
        check = getattr(torch.ops.mkldnn, f"_is_mkldnn_{dtype}_supported", None)
        try:
            native = bool(check()) if check is not None else False
        except Exception:
            native = False
        if not native:
            found[dtype] = CPU_NO_NATIVE.format(dtype=dtype, why=f"oneDNN: _is_mkldnn_{dtype}_supported() is False")
        elif x86 and not capability.startswith(("AVX512", "AMX")):
            found[dtype] = CPU_NO_NATIVE.format(dtype=dtype, why=f"ATen CPU capability is {capability}")
        else:
            found[dtype] = ""
    return found


def _accelerator_reduced(kind: str) -> dict[str, str]:
    import torch

    backend = getattr(torch, kind, None)
    check = getattr(backend, "is_bf16_supported", None)
    try:
        bf16 = bool(check()) if check is not None else kind != "mps"
    except Exception:
        bf16 = False
    return {"fp16": "", "bf16": "" if bf16 else f"this {kind.upper()} reports no bf16 support"}


# --- names, settings, synchronisation ------------------------------------------------------


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_settings() -> dict[str, Any]:
    import torch

    native = cpu_native_kernels()
    return {
        "num_threads": torch.get_num_threads(),
        "mkldnn_enabled": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "cpu_capability": cpu_capability(),
        "native_bf16": not native["bf16"],
        "native_fp16": not native["fp16"],
    }


def _backend_name(device: torch.device) -> str:
    import torch

    return str(getattr(torch, device.type).get_device_name(device.index or 0))


def _synchronize_backend(device: torch.device) -> None:
    """The kind's own ``torch.<kind>.synchronize`` (torch.cuda, torch.npu, ...), else
    ``torch.accelerator``'s."""
    import torch

    backend = getattr(torch, device.type, None)
    if backend is not None and callable(getattr(backend, "synchronize", None)):
        backend.synchronize(device)
        return
    torch.accelerator.synchronize(device)


@dataclass(frozen=True)
class DeviceKind:
    """Everything the suite needs to know about one kind of device.

    ``probe`` says whether it is here (and how many, or why not); ``reduced`` maps each
    reduced precision the kind can run by default to "" (or the reason it is left out of the
    default matrix); ``indexed`` kinds have ``kind:N`` devices; ``events`` kinds are timed with
    device events (``torch.<kind>.Event``); ``shown`` kinds appear in the default matrix as a
    skip with the reason when absent; ``marker`` describes the pytest marker of the same name."""

    name: str
    probe: Callable[[], KindStatus]
    indexed: bool
    reduced: Callable[[], dict[str, str]]
    marker: str
    device_name: Callable[[torch.device], str] = _backend_name
    settings: Callable[[], dict[str, Any]] = dict
    synchronize: Callable[[torch.device], None] = _synchronize_backend
    events: bool = False
    shown: bool = False

    @property
    def accelerator(self) -> bool:
        return self.name != "cpu"

    def device(self, index: int | None) -> torch.device:
        import torch

        return torch.device(self.name) if not self.indexed else torch.device(self.name, index or 0)

    def label(self, index: int | None) -> str:
        """``npu:3`` for indexed kinds, ``cpu`` / ``mps`` otherwise."""
        return f"{self.name}:{index or 0}" if self.indexed else self.name


def _accelerator(name: str, probe: Callable[[], KindStatus], what: str, **fields: Any) -> DeviceKind:
    """An indexed accelerator kind timed with device events, its reduced precisions from torch."""
    return DeviceKind(
        name,
        probe,
        True,
        lambda: _accelerator_reduced(name),
        f"runs on {what}; skipped with the reason when none is available",
        events=True,
        **fields,
    )


# fmt: off
KINDS: dict[str, DeviceKind] = {k.name: k for k in (
    DeviceKind("cpu", lambda: KindStatus("cpu", True, 1), False, cpu_native_kernels, "runs on the CPU",
               device_name=lambda _d: cpu_name(), settings=_cpu_settings, synchronize=lambda _d: None),
    _accelerator("npu", probe_npu, "an Ascend NPU (torch_npu)", settings=knobs.npu_settings, shown=True),
    _accelerator("cuda", _probe_cuda, "a CUDA GPU", settings=knobs.cuda_settings, shown=True),
    DeviceKind("mps", _probe_mps, False, lambda: {"fp16": "", "bf16": "MPS: bf16 is not tested by default"},
               "runs on Apple MPS; skipped with the reason when it is not available",
               device_name=lambda _d: "Apple MPS", shown=True),
    _accelerator("xpu", _probe_xpu, "an Intel XPU"),
)}
# fmt: on
AUTO_ORDER = ("npu", "cuda", "mps", "cpu")


def kind_of(device: str | torch.device) -> DeviceKind:
    import torch

    name = device.type if isinstance(device, torch.device) else str(device).partition(":")[0]
    if name not in KINDS:
        raise InputError(f"Unknown device kind {name!r}. Choose one of: {', '.join(KINDS)}")
    return KINDS[name]


@cache
def probe(kind: str) -> KindStatus:
    """Whether ``kind`` is usable here and, if not, exactly why (cached per process)."""
    return kind_of(kind).probe()


def parse_device(spec: str) -> tuple[str, int | None]:
    """Check the syntax of ``kind[:N]`` (or ``auto``) and split it, without probing."""
    kind, sep, index = spec.partition(":")
    if spec != "auto" and kind not in KINDS or (spec == "auto" and sep):
        raise InputError(
            f"Unknown device {spec!r}. Choose one of: auto, {', '.join(KINDS)} (with :N for an index, e.g. npu:3)"
        )
    if not sep:
        return kind, None
    single = [k for k, v in KINDS.items() if not v.indexed]
    if not (index.isascii() and index.isdigit()) or kind in single and index != "0":
        only = f" and {'/'.join(single)} have only :0" if kind in single else ""
        raise InputError(f"device {spec!r}: the index must be a non-negative integer{only}")
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
        raise InputError(
            f"device {spec!r}: index {index} out of range, {status.count} {kind} device(s) visible ({visible})"
        )
    return KINDS[kind].device(index)


def synchronize(device: torch.device) -> None:
    """Wait for all work queued on ``device`` (no-op on the CPU)."""
    kind_of(device).synchronize(device)


def device_name(device: torch.device) -> str:
    return kind_of(device).device_name(device)


def precision_settings(device: torch.device) -> dict[str, Any]:
    """The switches in force that change what ``device`` computes for float32 tensors."""
    import torch

    settings: dict[str, Any] = {"float32_matmul_precision": torch.get_float32_matmul_precision()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.9 deprecates allow_tf32 in favour of fp32_precision
        settings.update(kind_of(device).settings())
    return settings


def _emulated() -> bool:
    from resnet34_npu.targets import emulation

    return emulation.active() is not None


def list_devices() -> list[DeviceRow]:
    """One row per device (every visible index) and one per unavailable kind, with its reason."""
    rows = []
    for kind in KINDS.values():
        status = probe(kind.name)
        if not status.available:
            rows.append(DeviceRow(kind.name, False, status.reason, "", {}))
            continue
        for index in range(status.count):
            device = kind.device(index)
            emulated = kind.name == "npu" and _emulated()
            row = DeviceRow(kind.label(index), True, "", device_name(device), precision_settings(device), emulated)
            rows.append(row)
    return rows
