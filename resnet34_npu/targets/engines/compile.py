"""``compile``: ``torch.compile`` with the device's backend: inductor on the CPU and CUDA
(setting ``compile_mode``), TorchAir's NPU backend on Ascend (setting ``torchair_mode``:
``max-autotune`` compiles the whole graph with the graph engine, ``reduce-overhead`` and
``npugraph_ex`` capture and replay). TorchAir passes the HF32 switches to the graph engine and
has no precision-mode option of its own: the device's settings are recorded as they are."""

from __future__ import annotations

from typing import Any

from resnet34_npu.targets.engines.base import BackendUnavailable, Engine, ExecutionEngine, Setting, needs_compiler

#: torch.compile's modes (inductor); TorchAir's modes (NPU).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
TORCHAIR_MODES = ("max-autotune", "reduce-overhead", "npugraph_ex")


def _torchair_backend(options: dict[str, str]) -> Any:
    """TorchAir's NPU backend for torch.compile, configured from the target's settings."""
    try:
        import torchair  # noqa: PLC0415 - only on Ascend hosts
        from torchair.configs.compiler_config import CompilerConfig  # noqa: PLC0415
    except ImportError as exc:
        raise BackendUnavailable(f"compile on an NPU needs TorchAir (shipped with torch_npu): {exc}") from None
    config = CompilerConfig()
    config.mode = options.get("torchair_mode", "max-autotune")
    return torchair.get_npu_backend(compiler_config=config)


class Compile(ExecutionEngine):
    name = "compile"
    help = "torch.compile: inductor (CPU, CUDA) or TorchAir (NPU)"
    what = "the compiled graph"
    cause = "a compiler or fusion problem"
    settings_keys = (
        Setting("compile_mode", ("cpu", "cuda"), COMPILE_MODES, "torch.compile's mode", "torch.compile.mode"),
        Setting(
            "torchair_mode",
            ("npu",),
            TORCHAIR_MODES,
            "TorchAir's mode: whole graph by the graph engine (max-autotune), or capture and replay",
            "torchair.mode",
        ),
    )
    default_targets = {
        "cpu": ("cpu/fp32/compile",),
        "cuda": ("{device}/fp32/compile", "{device}/fp16/compile"),
        "npu": ("{device}/fp32/compile",),
    }
    slow = True
    summary_keys = ("compile_mode", "torchair_mode")

    def precision_settings(self, kind: str, dtype: str, options: dict[str, str]) -> dict[str, Any]:
        return {"torchair.mode": "max-autotune"} if kind == "npu" else {"torch.compile.mode": "default"}

    def build(self, module, example, device, options, *, context, **_):
        import torch

        if device.type == "npu":
            backend, mode = _torchair_backend(options), None
            info = {"backend": "torchair", "torchair_mode": options.get("torchair_mode", "max-autotune")}
        else:
            needs_compiler(device)
            backend, mode = "inductor", options.get("compile_mode", "default")
            info = {"backend": "inductor", "compile_mode": mode}
        compiled = torch.compile(module, backend=backend, mode=None if mode in (None, "default") else mode)
        with context():
            compiled(example)
        return Engine(self.name, compiled, info=info)
