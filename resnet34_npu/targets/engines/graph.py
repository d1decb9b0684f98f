"""``graph``: capture once, replay: ``torch.cuda.graph`` / ``torch.npu.graph`` with a static
input buffer, warm-up on a side stream before the capture, and the output copied out of the
graph's memory before the next replay (one graph per input shape)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resnet34_npu.targets.engines.base import BackendUnavailable, Engine, ExecutionEngine

if TYPE_CHECKING:
    import torch


class Graph(ExecutionEngine):
    name = "graph"
    help = "capture once, replay: CUDA / NPU graphs"
    what = "the captured graph"
    cause = "a capture or replay problem"
    kinds = ("cuda", "npu")
    default_targets = {"cuda": ("{device}/fp32/graph", "{device}/fp16/graph"), "npu": ("{device}/fp32/graph",)}

    def refuses(self, dtype: str) -> str:
        if dtype.endswith("-autocast"):
            return (
                "graph capture under autocast would replay freed cast weights; "
                "capture a cast dtype (fp16, bf16) instead"
            )
        return ""

    def build(self, module, example, device, options, *, context, **_):
        import torch

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
            # a capture stream of the target's own device: torch.npu.graph's and torch.cuda.graph's
            # default one is made once per process, on whichever device was current then
            with backend.device(device), backend.graph(graph, stream=side):
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
        return Engine(self.name, run, info={"backend": f"torch.{device.type}.graph"})
