"""Execution modes: how a built-in target runs its placed module, when not eagerly.

A target names at most one of these modes (``targets.MODES``, ``execution=True``):

* ``compile``: ``torch.compile`` with the device's backend: inductor on the CPU and CUDA
  (knob ``compile_mode``), TorchAir's NPU backend on Ascend (knob ``torchair_mode``:
  ``max-autotune`` compiles the whole graph with the graph engine, ``reduce-overhead`` and
  ``npugraph_ex`` capture and replay). TorchAir passes the HF32 switches to the graph engine
  and has no precision-mode option of its own: the device's settings are recorded as they are;
* ``graph``: capture once, replay: ``torch.cuda.graph`` / ``torch.npu.graph`` with a static
  input buffer, warm-up on a side stream before the capture, and the output copied out of the
  graph's memory before the next replay (one graph per input shape);
* ``export``: ``torch.export`` (batch dimension dynamic), then AOTInductor
  (``aoti_compile_and_package`` / ``aoti_load_package``);
* ``ort`` / ``tensorrt``: ONNX Runtime with the device's execution provider (CPU, CUDA, CANN; or
  TensorRT), on an ONNX export cached beside the weights (one per weights digest, torch
  version, exporter and dtype). The providers that really run are read back from the session:
  a target that asked for CUDA, TensorRT or CANN and got the CPU provider is an error.

Each engine is built with its first call on an example batch (``build_s``: compilation, capture
or export plus that call, never mixed into latency) and describes itself for reports
(``describe``). Engines that run outside torch's device (ONNX Runtime) take CPU tensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import io
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from resnet34_npu.core.errors import InputError, plain
from resnet34_npu.core.files import write_atomic
from resnet34_npu.model.weights import cache_dir

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
#: What the execution modes are called in blame lines.
WHAT = {
    "compile": "the compiled graph",
    "graph": "the captured graph",
    "export": "the exported (AOTInductor) program",
    "ort": "the ONNX Runtime session",
    "tensorrt": "the ONNX Runtime TensorRT session",
}


#: What a failure of each execution mode, with an eager twin that passes, points at.
CAUSE = {
    "compile": "a compiler or fusion problem",
    "graph": "a capture or replay problem",
    "export": "an export or AOTInductor compilation problem",
    "ort": "an ONNX export or ONNX Runtime problem",
    "tensorrt": "an ONNX export or TensorRT problem",
}


class BackendUnavailable(InputError):
    """The mode cannot run on this host (no C++ compiler, no Triton, no TorchAir, no
    onnxruntime, no such provider): a skip in pytest, one line in the CLI."""


@dataclass
class Engine:
    """A built execution mode: ``fn(x)`` maps the placed input to the output."""

    mode: str
    fn: Callable[[torch.Tensor], Any]
    build_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    #: Runs outside torch's device: inputs and outputs are CPU tensors.
    host: bool = False

    def __call__(self, x: torch.Tensor) -> Any:
        return self.fn(x)

    def describe(self) -> dict[str, Any]:
        return {"execution": self.mode, "build_s": round(self.build_s, 3), **self.info}


def example_batch(mode: str) -> int:
    """The batch size an engine is built (and first called) with: 2 where the batch dimension
    is exported as dynamic (an example of 1 would specialise it), else 1, the size most runs
    use (torch.compile compiles again for each new size it sees, with a dynamic batch from the
    second)."""
    return 2 if mode in ("export", "ort", "tensorrt") else 1


def build(
    mode: str,
    module: torch.nn.Module,
    example: torch.Tensor,
    device: torch.device,
    options: dict[str, str],
    *,
    digest: str = "",
    dtype: str = "fp32",
    context: Callable[[], Any],
) -> Engine:
    """Build ``mode`` for ``module`` (already on ``device`` in its dtype and layout) and make
    its first call on ``example`` under ``context()`` (inference mode, knobs, autocast)."""
    start = time.perf_counter()
    try:
        with _quiet_compilers():
            engine = BUILDERS[mode](module, example, device, options, digest=digest, dtype=dtype, context=context)
    except InputError:
        raise  # this host cannot run the mode (BackendUnavailable), or the target is wrong
    except Exception as exc:  # the compiler, capture, export or provider broke: the target fails
        return failed(mode, exc, time.perf_counter() - start)
    engine.build_s = time.perf_counter() - start
    return engine


@contextlib.contextmanager
def _quiet_compilers() -> Any:
    """torch's compilers log warnings of their own ("No CUDA runtime is found", ...): keep
    them from the user's terminal while an engine builds; errors still raise."""
    loggers = [logging.getLogger(name) for name in ("torch", "torch._inductor", "torch.utils.cpp_extension")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class BuildFailed(RuntimeError):
    """What a target whose engine failed to build raises on every run: it fails, named."""


def failed(mode: str, exc: BaseException, build_s: float) -> Engine:
    """The engine of a target whose compilation, capture or export raised (a compiler crash, a
    provider that would not start): each run raises :class:`BuildFailed` with the cause, so the
    target fails with that line wherever it runs, and is built only once."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2] if line.strip())[:500]
    line = f"its {mode} engine failed to build: {type(exc).__name__}" + (f": {text}" if text else "")

    def run(_x: torch.Tensor) -> Any:
        raise BuildFailed(line)

    return Engine(mode, run, build_s, {"backend": "none", "error": line})


# --- compile --------------------------------------------------------------------------------


def _needs_compiler(device: torch.device, *, host_code: bool = False) -> None:
    """Inductor on the CPU (and AOTInductor everywhere, ``host_code``) builds C++ with $CXX or
    g++; on CUDA it needs Triton."""
    if (device.type == "cpu" or host_code) and not _which(os.environ.get("CXX") or "g++"):
        raise BackendUnavailable(
            f"inductor needs a C++ compiler ({os.environ.get('CXX') or 'g++'}, or set CXX); none is on PATH"
        )
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        raise BackendUnavailable("inductor needs Triton on CUDA: pip install triton")


def _which(name: str) -> bool:
    if os.path.isabs(name):
        return os.access(name, os.X_OK)
    return any(os.access(os.path.join(p, name), os.X_OK) for p in os.environ.get("PATH", "").split(os.pathsep) if p)


def _torchair_backend(options: dict[str, str]) -> Any:
    """TorchAir's NPU backend for torch.compile, configured from the target's knobs."""
    try:
        import torchair  # noqa: PLC0415 - only on Ascend hosts
        from torchair.configs.compiler_config import CompilerConfig  # noqa: PLC0415
    except ImportError as exc:
        raise BackendUnavailable(f"compile on an NPU needs TorchAir (shipped with torch_npu): {exc}") from None
    config = CompilerConfig()
    config.mode = options.get("torchair_mode", "max-autotune")
    return torchair.get_npu_backend(compiler_config=config)


def _compile(module, example, device, options, *, context, **_):
    if device.type == "npu":
        backend, mode = _torchair_backend(options), None
        info = {"backend": "torchair", "torchair_mode": options.get("torchair_mode", "max-autotune")}
    else:
        _needs_compiler(device)
        backend, mode = "inductor", options.get("compile_mode", "default")
        info = {"backend": "inductor", "compile_mode": mode}
    compiled = torch.compile(module, backend=backend, mode=None if mode in (None, "default") else mode)
    with context():
        compiled(example)
    return Engine("compile", compiled, info=info)


# --- graph ----------------------------------------------------------------------------------


def _graph(module, example, device, options, *, context, **_):
    backend = getattr(torch, device.type, None)
    graph_class = {"cuda": "CUDAGraph", "npu": "NPUGraph"}.get(device.type)
    if graph_class is None or backend is None:
        raise BackendUnavailable(
            f"graph capture needs a CUDA or NPU device (torch.cuda.graph / torch.npu.graph), not {device.type}"
        )
    if not hasattr(backend, graph_class) or not hasattr(backend, "graph"):
        raise BackendUnavailable(f"this torch.{device.type} has no {graph_class} / graph (graph capture)")
    graphs: dict[tuple[Any, ...], tuple[torch.Tensor, Any, torch.Tensor]] = {}

    def capture(x: torch.Tensor) -> tuple[torch.Tensor, Any, torch.Tensor]:
        static_in = x.clone()
        side = backend.Stream(device=device)
        side.wait_stream(backend.current_stream(device))
        with backend.stream(side):
            for _ in range(3):  # warm-up outside the capture (allocator, lazy initialisation)
                module(static_in)
        backend.current_stream(device).wait_stream(side)
        graph = getattr(backend, graph_class)()
        with backend.graph(graph):
            static_out = module(static_in)
        return static_in, graph, static_out

    def run(x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, tuple(x.stride()))
        if key not in graphs:
            graphs[key] = capture(x)
        static_in, graph, static_out = graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()  # out of the graph's memory before the next replay

    with context():
        run(example)
    return Engine("graph", run, info={"backend": f"torch.{device.type}.graph"})


# --- export ---------------------------------------------------------------------------------


def _export(module, example, device, options, *, context, **_):
    inductor = importlib.import_module("torch._inductor")
    if _torch_version() < (2, 6) or not hasattr(inductor, "aoti_compile_and_package"):
        raise BackendUnavailable(f"torch {torch.__version__} has no AOTInductor packaging as used here (torch >= 2.6)")
    if device.type not in ("cpu", "cuda"):
        raise BackendUnavailable(f"AOTInductor compiles for CPU and CUDA, not {device.type}")
    _needs_compiler(device, host_code=True)
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    batch = torch.export.Dim("batch", min=1, max=1024)
    folder = tempfile.mkdtemp(prefix="resnet34-npu-aoti-")
    try:
        with context():
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
            package = inductor.aoti_compile_and_package(program, package_path=os.path.join(folder, "resnet34.pt2"))
            loaded = inductor.aoti_load_package(package)
            loaded(example)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # loaded: the package (about 90 MB) is no longer needed
    return Engine("export", loaded, info={"backend": "aot_inductor"})


def _torch_version() -> tuple[int, int]:
    major, minor, *_ = (torch.__version__.split("+")[0].split(".") + ["0", "0"])[:3]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


# --- ONNX Runtime ---------------------------------------------------------------------------


def onnx_path(digest: str, dtype: str, exporter: str) -> Path:
    """Where the ONNX export of these weights is cached, beside the weights."""
    version = torch.__version__.split("+")[0]
    return cache_dir() / "onnx" / f"resnet34-{digest[:16]}-torch{version}-{exporter}-{dtype}.onnx"


def _exporter() -> str:
    """The dynamo exporter (torch's default since 2.9) when this torch has it (its
    ``torch.onnx.export`` takes ``dynamo=`` and ``external_data=``) and onnxscript is
    installed, else the TorchScript one."""
    parameters = inspect.signature(torch.onnx.export).parameters
    dynamo = "dynamo" in parameters and "external_data" in parameters and "dynamic_shapes" in parameters
    return "dynamo" if dynamo and importlib.util.find_spec("onnxscript") is not None else "torchscript"


def export_onnx(module: torch.nn.Module, example: torch.Tensor, digest: str, dtype: str) -> tuple[Path, str, float]:
    """The cached ONNX file for ``module`` (exported now if absent, atomically): path, exporter,
    and the export's seconds (0 when cached)."""
    exporter = _exporter()
    path = onnx_path(digest, dtype, exporter)
    stamp = path.with_name(path.name + ".sha256")
    if path.is_file() and stamp.is_file() and _file_sha256(path) == stamp.read_text().strip():
        return path, exporter, 0.0  # a damaged or replaced file is exported again
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            _export_to(module, example, temporary, exporter)
        line = (_file_sha256(temporary) + "\n").encode()
        write_atomic(stamp, lambda handle: handle.write(line), what="ONNX export digest", prefix=stamp.name)
        os.replace(temporary, path)
    except OSError as exc:
        raise InputError(f"ONNX export to {plain(path)}: {exc.strerror or exc}") from None
    finally:
        if temporary.exists():
            temporary.unlink()
    return path, exporter, time.perf_counter() - start


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _export_to(module: torch.nn.Module, x: torch.Tensor, temporary: Path, exporter: str) -> None:
    names = {"input_names": ["x"], "output_names": ["logits"]}
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(
            module, (x,), str(temporary), dynamo=True, external_data=False, dynamic_shapes=({0: batch},), **names
        )
    else:
        axes = {"x": {0: "batch"}, "logits": {0: "batch"}}
        extra = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        torch.onnx.export(module, (x,), str(temporary), dynamic_axes=axes, **names, **extra)


def provider_settings(kind: str, mode: str, dtype: str) -> dict[str, Any]:
    """The precision settings of an ONNX Runtime target before its knobs: the provider, and
    what it computes float32 in by default (the CANN provider's default is ``force_fp16``)."""
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


def mode_settings(kind: str, mode: str) -> dict[str, Any]:
    """What an execution mode on torch's device adds to the device's precision settings."""
    if mode == "compile" and kind == "npu":
        return {"torchair.mode": "max-autotune"}
    if mode == "compile":
        return {"torch.compile.mode": "default"}
    return {}


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


class ProviderFallback(RuntimeError):
    """ONNX Runtime has the provider, yet the session came up on another one: a deployment
    problem of the target (its libraries, its options, its device), so the target fails."""


def open_session(path: Path, providers: list[tuple[str, dict]], label: str) -> tuple[Any, list[tuple[str, dict]]]:
    """An ONNX Runtime session that runs on the provider asked for, or an error saying what
    ONNX Runtime did instead: it falls back to the CPU provider silently (when a provider is
    missing) or with a printed line (when it fails to start, or later when a run fails), and a
    fallback certifies the wrong device. A CANN provider that refuses ``precision_mode`` is
    asked again with ``precision_mode_v2``, the key newer releases read. Returns the session
    and the providers (with options) it was started with. A provider this onnxruntime does not
    have is :class:`BackendUnavailable` (a skip); one it has that still did not start is
    :class:`ProviderFallback` (the target fails)."""
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError:
        raise BackendUnavailable("onnxruntime is not installed: pip install onnxruntime") from None
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
    line = (
        f"{label}: asked ONNX Runtime for {wanted}, but it runs on {', '.join(running) or 'nothing'} "
        f"(available here: {', '.join(available)}): a fallback to the CPU, which would certify the wrong device"
    )
    raise (BackendUnavailable if wanted not in available else ProviderFallback)(line)


def _ort(module, example, device, options, *, digest, dtype, context, mode="ort", **_):
    path, exporter, export_s = export_onnx(module, example, digest, dtype)
    providers = provider_list(device.type, device.index or 0, mode, dtype, options)
    session, providers = open_session(path, providers, f"{device}/{dtype}/{mode}")
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: x.detach().cpu().contiguous().numpy()})[0])

    run(example)
    info = {
        "backend": "onnxruntime",
        "providers": session.get_providers(),
        "provider_options": {p: {k: str(v) for k, v in o.items()} for p, o in providers},
        "exporter": exporter,
        "onnx_file": str(path),
        "export_s": round(export_s, 3),
    }
    return Engine(mode, run, info=info, host=True)


def _tensorrt(*args, **kwargs):
    return _ort(*args, mode="tensorrt", **kwargs)


BUILDERS: dict[str, Callable[..., Engine]] = {
    "compile": _compile,
    "graph": _graph,
    "export": _export,
    "ort": _ort,
    "tensorrt": _tensorrt,
}
