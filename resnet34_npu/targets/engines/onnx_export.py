"""The ONNX export the ONNX Runtime modes share: cached beside the weights (one file per weights
digest, torch version, exporter and dtype), written atomically, with its sha256 beside it so a
damaged or replaced file is exported again."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import io
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from resnet34_npu.core.errors import InputError, plain
from resnet34_npu.core.files import write_atomic
from resnet34_npu.model.weights import cache_dir

if TYPE_CHECKING:
    import torch


def onnx_path(digest: str, dtype: str, exporter: str) -> Path:
    """Where the ONNX export of these weights is cached, beside the weights."""
    import torch

    version = torch.__version__.split("+")[0]
    return cache_dir() / "onnx" / f"resnet34-{digest[:16]}-torch{version}-{exporter}-{dtype}.onnx"


def exporter() -> str:
    """The dynamo exporter (torch's default since 2.9) when this torch has it (its
    ``torch.onnx.export`` takes ``dynamo=`` and ``external_data=``) and onnxscript is
    installed, else the TorchScript one."""
    import torch

    parameters = inspect.signature(torch.onnx.export).parameters
    dynamo = "dynamo" in parameters and "external_data" in parameters and "dynamic_shapes" in parameters
    return "dynamo" if dynamo and importlib.util.find_spec("onnxscript") is not None else "torchscript"


def export_onnx(module: torch.nn.Module, example: torch.Tensor, digest: str, dtype: str) -> tuple[Path, str, float]:
    """The cached ONNX file for ``module`` (exported now if absent, atomically): path, exporter,
    and the export's seconds (0 when cached)."""
    used = exporter()
    path = onnx_path(digest, dtype, used)
    stamp = path.with_name(path.name + ".sha256")
    if path.is_file() and stamp.is_file() and _file_sha256(path) == stamp.read_text().strip():
        return path, used, 0.0  # a damaged or replaced file is exported again
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            _export_to(module, example, temporary, used)
        line = (_file_sha256(temporary) + "\n").encode()
        write_atomic(stamp, lambda handle: handle.write(line), what="ONNX export digest", prefix=stamp.name)
        os.replace(temporary, path)
    except OSError as exc:
        raise InputError(f"ONNX export to {plain(path)}: {exc.strerror or exc}") from None
    finally:
        if temporary.exists():
            temporary.unlink()
    return path, used, time.perf_counter() - start


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _export_to(module: torch.nn.Module, x: torch.Tensor, temporary: Path, used: str) -> None:
    import torch

    names = {"input_names": ["x"], "output_names": ["logits"]}
    if used == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(
            module, (x,), str(temporary), dynamo=True, external_data=False, dynamic_shapes=({0: batch},), **names
        )
    else:
        axes = {"x": {0: "batch"}, "logits": {0: "batch"}}
        extra = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        torch.onnx.export(module, (x,), str(temporary), dynamic_axes=axes, **names, **extra)
