"""``export``: ``torch.export`` (batch dimension dynamic), then AOTInductor
(``aoti_compile_and_package`` / ``aoti_load_package``)."""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile

from resnet34_npu.targets.engines.base import (
    BackendUnavailable,
    Engine,
    ExecutionEngine,
    needs_compiler,
    torch_version,
)


class Export(ExecutionEngine):
    name = "export"
    help = "torch.export, then AOTInductor"
    what = "the exported (AOTInductor) program"
    cause = "an export or AOTInductor compilation problem"
    kinds = ("cpu", "cuda")
    example_batch = 2
    default_targets = {"cpu": ("cpu/fp32/export",), "cuda": ("{device}/fp32/export",)}
    slow = True

    def build(self, module, example, device, options, *, context, **_):
        import torch

        inductor = importlib.import_module("torch._inductor")
        if torch_version() < (2, 6) or not hasattr(inductor, "aoti_compile_and_package"):
            raise BackendUnavailable(
                f"torch {torch.__version__} has no AOTInductor packaging as used here (torch >= 2.6)"
            )
        if device.type not in ("cpu", "cuda"):
            raise BackendUnavailable(f"AOTInductor compiles for CPU and CUDA, not {device.type}")
        needs_compiler(device, host_code=True)
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
        return Engine(self.name, loaded, info={"backend": "aot_inductor"})
