"""``ort`` and ``tensorrt``: ONNX Runtime with the device's execution provider (CPU, CUDA, CANN;
or TensorRT), on the cached ONNX export (``onnx_export``). The providers that really run are read
back from the session: a target that asked for CUDA, TensorRT or CANN and got the CPU provider is
an error. Both run outside torch's device (CPU tensors in and out) and are blamed against
ONNX Runtime's CPU provider on the same export."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from resnet34_npu.targets.engines.base import BackendUnavailable, Engine, ExecutionEngine, Setting
from resnet34_npu.targets.engines.onnx_export import export_onnx

if TYPE_CHECKING:
    import torch

#: ONNX Runtime's provider for each device kind (the ``ort`` mode), and TensorRT's.
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "npu": "CANNExecutionProvider"}
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
#: The CANN provider's precision_mode when none is given (fp32 claims need force_fp32 or
#: must_keep_origin_dtype). Releases with ``precision_mode_v2`` (and no ``precision_mode``)
#: take these values instead; a value without an equivalent there is an error.
CANN_DEFAULT_PRECISION = "force_fp16"
CANN_PRECISION_V2 = {
    "force_fp16": "fp16",
    "must_keep_origin_dtype": "origin",
    "force_fp32": "cube_fp16in_fp32out",
    "allow_mix_precision": "mixed_float16",
}
#: ONNX Runtime's CANN provider ``precision_mode`` values (its default: force_fp16).
CANN_PRECISION_MODES = (
    "force_fp32",
    "must_keep_origin_dtype",
    "allow_fp32_to_fp16",
    "force_fp16",
    "allow_mix_precision",
)


class ProviderFallback(RuntimeError):
    """ONNX Runtime has the provider, yet the session came up on another one: a deployment
    problem of the target (its libraries, its options, its device), so the target fails."""


def provider_settings(kind: str, mode: str, dtype: str) -> dict[str, Any]:
    """The precision settings of an ONNX Runtime target before its settings keys: the provider,
    and what it computes float32 in by default (the CANN provider's default is ``force_fp16``)."""
    provider = TENSORRT_PROVIDER if mode == "tensorrt" else ORT_PROVIDERS[kind]
    settings: dict[str, Any] = {"onnxruntime.provider": provider}
    if kind == "npu":
        settings["cann.precision_mode"] = f"{CANN_DEFAULT_PRECISION} (provider default, not set)"
    if mode == "tensorrt":
        settings["trt_fp16_enable"] = dtype == "fp16"
    if kind == "cuda":
        # the CUDA provider's use_tf32 and TensorRT's builder both allow TF32 by default
        settings["onnxruntime.tf32"] = True
    return settings


def provider_list(kind: str, index: int, mode: str, dtype: str, options: dict[str, str]) -> list[tuple[str, dict]]:
    """The execution providers a target asks for, first the one it is about, with its options."""
    if mode == "tensorrt":
        trt = {"device_id": index, "trt_fp16_enable": dtype == "fp16"}
        return [(TENSORRT_PROVIDER, trt), (ORT_PROVIDERS["cuda"], {"device_id": index})]
    provider = ORT_PROVIDERS[kind]
    if kind == "cpu":
        return [(provider, {})]
    opts: dict[str, Any] = {"device_id": index}
    if kind == "npu" and "cann_precision" in options:
        opts["precision_mode"] = options["cann_precision"]
    return [(provider, opts)]


def open_session(path: Path, providers: list[tuple[str, dict]], label: str) -> tuple[Any, list[tuple[str, dict]]]:
    """An ONNX Runtime session that runs on the provider asked for, or an error saying what
    ONNX Runtime did instead: it falls back to the CPU provider silently (when a provider is
    missing) or with a printed line (when it fails to start, or later when a run fails), and a
    fallback certifies the wrong device. A CANN provider that refuses ``precision_mode`` is
    asked again with ``precision_mode_v2``, the key newer releases read. Returns the session
    and the providers (with options) it was started with. A provider this onnxruntime does not
    have is :class:`BackendUnavailable` (a skip); one it has that still did not start is
    :class:`ProviderFallback` (the target fails)."""
    problem = import_problem()
    if problem:
        raise BackendUnavailable(problem)
    import onnxruntime as ort  # noqa: PLC0415

    wanted = providers[0][0]
    available = ort.get_available_providers()
    attempts = [providers]
    first = providers[0][1]
    if wanted == ORT_PROVIDERS["npu"] and "precision_mode" in first:
        v1 = first["precision_mode"]
        if v1 in CANN_PRECISION_V2:
            v2 = {k: v for k, v in first.items() if k != "precision_mode"} | {
                "precision_mode_v2": CANN_PRECISION_V2[v1]
            }
            attempts.append([(wanted, v2), *providers[1:]])
    running: list[str] = []
    for attempt in attempts:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # its own fallback warning is replaced by the error below
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(str(path), options, providers=attempt)
        running = session.get_providers()
        if running and running[0] == wanted:
            session.disable_fallback()  # a run that fails on the device raises, never reruns on the CPU
            return session, attempt
    cause = provider_load_error(wanted)
    line = (
        f"{label}: asked ONNX Runtime for {wanted}, but it runs on {', '.join(running) or 'nothing'} "
        f"(available here: {', '.join(available)}): a fallback to the CPU, which would certify the wrong device"
    )
    if cause:
        line += f"; the provider did not load: {cause}"
    raise (BackendUnavailable if wanted not in available else ProviderFallback)(line)


def import_problem() -> str:
    """Why ``import onnxruntime`` fails here, in one line with the fix ("" when it imports): not
    installed, or installed but built for another NumPy (``onnxruntime-cann`` 1.24 is built
    against NumPy 1 and does not import under NumPy 2)."""
    import importlib.util
    import io

    noise = io.StringIO()  # NumPy 2 prints a page and a traceback on stderr for a module built for NumPy 1
    try:
        with contextlib.redirect_stderr(noise):
            import onnxruntime  # noqa: F401, PLC0415
    except Exception as exc:  # an extension module built for another NumPy raises ImportError or AttributeError
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed: pip install onnxruntime"
        import numpy

        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        dist = _distribution()
        line = f"{dist or 'onnxruntime'} is installed but does not import: {type(exc).__name__}: {first}"
        if "_ARRAY_API" in str(exc) or "numpy" in str(exc).lower():
            line += (
                f" (it was built against NumPy 1 and this is NumPy {numpy.__version__}: install it in an environment "
                "with pip install 'numpy<2', or a release built for NumPy 2)"
            )
        return line
    return ""


def _distribution() -> str:
    """Which onnxruntime distribution is installed (``onnxruntime-cann 1.24.4``), or ""."""
    import importlib.metadata

    for name in ("onnxruntime-cann", "onnxruntime-gpu", "onnxruntime"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return f"{name} {importlib.metadata.version(name)}"
    return ""


def provider_load_error(provider: str) -> str:
    """Why ``provider``'s shared library does not load (what ONNX Runtime prints on stderr only),
    e.g. ``libascendcl.so: cannot open shared object file``; "" when it loads or is not found."""
    import ctypes
    from pathlib import Path

    import onnxruntime  # noqa: PLC0415

    short = provider.removesuffix("ExecutionProvider").lower()
    found = sorted((Path(onnxruntime.__file__).parent / "capi").glob(f"libonnxruntime_providers_{short}.so*"))
    if not found:
        return ""
    try:
        ctypes.CDLL(str(found[0]))
    except OSError as exc:
        return str(exc).strip().splitlines()[0]
    return ""


class Ort(ExecutionEngine):
    name = "ort"
    help = "ONNX Runtime with the device's provider (CPU, CUDA, CANN)"
    what = "the ONNX Runtime session"
    cause = "an ONNX export or ONNX Runtime problem"
    kinds = ("cpu", "cuda", "npu")
    dtypes = ("fp32", "fp16")
    host = True
    host_note = "ONNX Runtime targets take their provider's settings"
    example_batch = 2
    settings_keys = (
        Setting(
            "cann_precision",
            ("npu",),
            CANN_PRECISION_MODES,
            "ONNX Runtime's CANN provider precision_mode",
            "cann.precision_mode",
        ),
    )
    default_targets = {
        "cpu": ("cpu/fp32/ort",),
        "cuda": ("{device}/fp32/ort",),
        "npu": ("{device}/fp32/ort/cann_precision=must_keep_origin_dtype",),
    }
    summary_keys = ("exporter",)
    cpu_twin_record: ClassVar[str] = "onnxruntime_cpu_verdict"

    def precision_settings(self, kind: str, dtype: str, options: dict[str, str]) -> dict[str, Any]:
        return provider_settings(kind, self.name, dtype)

    def unavailable(self, kind: str, dtype: str) -> str:
        provider = provider_settings(kind, self.name, dtype)["onnxruntime.provider"]
        problem = import_problem()
        if problem:
            return problem
        import onnxruntime  # noqa: PLC0415 - optional

        if provider not in onnxruntime.get_available_providers():
            return f"this onnxruntime build has no {provider} (install the build that has it)"
        return ""

    def cpu_twin(self, kind: str, dtype: str) -> tuple[str, ...] | None:
        return ("ort",) if kind != "cpu" else None

    def cpu_twin_line(self, name: str, passed: bool) -> str:
        return f"ONNX Runtime's CPU provider on the same export ({name}) " + (
            "passes: the device's provider is to blame"
            if passed
            else "fails too: the ONNX export or ONNX Runtime is to blame"
        )

    def summary(self, info: dict[str, Any]) -> list[str]:
        extra = super().summary(info)
        if info.get("export_s"):
            extra.append(f"ONNX export {info['export_s']:.1f} s")
        if "providers" in info:
            extra.append("providers " + ", ".join(info["providers"]))
        return extra

    def build(self, module, example, device, options, *, digest, dtype, context, **_):
        import torch

        path, used, export_s = export_onnx(module, example, digest, dtype)
        providers = provider_list(device.type, device.index or 0, self.name, dtype, options)
        session, providers = open_session(path, providers, f"{device}/{dtype}/{self.name}")
        name = session.get_inputs()[0].name

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {name: x.detach().cpu().contiguous().numpy()})[0])

        run(example)
        info = {
            "backend": "onnxruntime",
            "providers": session.get_providers(),
            "provider_options": {p: {k: str(v) for k, v in o.items()} for p, o in providers},
            "exporter": used,
            "onnx_file": str(path),
            "export_s": round(export_s, 3),
        }
        return Engine(self.name, run, info=info, host=True)


class TensorRT(Ort):
    name = "tensorrt"
    help = "ONNX Runtime's TensorRT provider"
    what = "the ONNX Runtime TensorRT session"
    cause = "an ONNX export or TensorRT problem"
    kinds = ("cuda",)
    settings_keys = ()
    default_targets = {}
