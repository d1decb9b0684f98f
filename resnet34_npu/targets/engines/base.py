"""The one interface every execution mode implements (:class:`ExecutionEngine`), what a built
mode is (:class:`Engine`), and the errors the modes share.

A mode is a subclass of :class:`ExecutionEngine` in its own module of this package, listed once
in ``engines.ENGINES``. Everything else asks the registry: the target grammar (mode names, the
device kinds and dtypes each runs, its settings keys), the runners (how to build it, the batch it
is built with, its precision settings, whether it runs outside torch's device), the matrix (its
default targets, whether they compile for long, whether a backend is missing), the blame step
(what it is called, what its failure points at, its CPU twin) and the CLI's build line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from resnet34_npu.core.errors import InputError

if TYPE_CHECKING:
    import torch


class BackendUnavailable(InputError):
    """The mode cannot run on this host (no C++ compiler, no Triton, no TorchAir, no
    onnxruntime, no such provider): a skip in pytest, one line in the CLI."""


class BuildFailed(RuntimeError):
    """What a target whose engine failed to build raises on every run: it fails, named."""


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


@dataclass(frozen=True)
class Setting:
    """A settings key of a mode, written ``KEY=VALUE`` in a target (``compile_mode=``): the
    device kinds it applies to, its values, and the precision-settings key it is recorded as."""

    name: str
    kinds: tuple[str, ...]
    values: tuple[str, ...]
    help: str
    record: str


class ExecutionEngine:
    """One execution mode. Subclasses set the class attributes and implement :meth:`build`;
    the rest has defaults. ``REQUIRED`` members are checked when the registry is read."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "help", "what", "cause", "build")

    #: The mode's word in a target spec (``cpu/fp32/NAME``).
    name: ClassVar[str]
    #: One line for the grammar's help.
    help: ClassVar[str]
    #: What it is called in blame lines ("the compiled graph").
    what: ClassVar[str]
    #: What a failure with a passing eager twin points at ("a compiler or fusion problem").
    cause: ClassVar[str]
    #: Device kinds it runs on (empty: any).
    kinds: ClassVar[tuple[str, ...]] = ()
    #: Dtypes it runs (empty: any); others are refused by the grammar.
    dtypes: ClassVar[tuple[str, ...]] = ()
    #: Runs outside torch's device (ONNX Runtime-like): torch keeps the module and input on
    #: the CPU, torch's device knobs do not apply, its settings replace the device's.
    host: ClassVar[bool] = False
    #: Why torch's device knobs do not apply to a ``host`` mode (the grammar's error says it).
    host_note: ClassVar[str] = "it takes its own runtime's settings"
    #: Its settings keys (``KEY=VALUE`` in a target).
    settings_keys: ClassVar[tuple[Setting, ...]] = ()
    #: The batch it is built with: 2 where the batch dimension is exported as dynamic (an
    #: example of 1 would specialise it), else 1.
    example_batch: ClassVar[int] = 1
    #: Its targets in the default matrix, per device kind (``{device}`` is the device).
    default_targets: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: Its default targets compile for long: in the matrix, left out of a default run.
    slow: ClassVar[bool] = False
    #: Keys of its ``describe()`` shown on the CLI's build line.
    summary_keys: ClassVar[tuple[str, ...]] = ()

    def build(
        self,
        module: torch.nn.Module,
        example: torch.Tensor,
        device: torch.device,
        options: dict[str, str],
        *,
        digest: str,
        dtype: str,
        context: Callable[[], Any],
    ) -> Engine:
        """Build the mode for ``module`` (placed) and make its first call on ``example``;
        raise :class:`BackendUnavailable` when this host cannot run it."""
        raise NotImplementedError

    def refuses(self, dtype: str) -> str:
        """Why a target of this mode in ``dtype`` is refused by the grammar (beyond
        :attr:`dtypes`), or ""."""
        return ""

    def precision_settings(self, kind: str, dtype: str, options: dict[str, str]) -> dict[str, Any]:
        """What the mode adds to the device's precision settings (a ``host`` mode: all of
        them), before its settings keys are described."""
        return {}

    def unavailable(self, kind: str, dtype: str) -> str:
        """Why its backend cannot run on ``kind`` here (checked cheaply, without building), or ""."""
        return ""

    def cpu_twin(self, kind: str, dtype: str) -> tuple[str, ...] | None:
        """The modes of its twin on the CPU for blame (a host runtime's CPU provider on the
        same export), or None."""
        return None

    def cpu_twin_line(self, name: str, passed: bool) -> str:
        """The blame line for its CPU twin's verdict."""
        return f"its CPU twin {name} " + ("passes" if passed else "fails too")

    #: The blame record's key for the CPU twin's verdict.
    cpu_twin_record: ClassVar[str] = "cpu_twin_verdict"

    def summary(self, info: dict[str, Any]) -> list[str]:
        """The extras of the CLI's build line for a built engine's ``describe()``."""
        return [f"{k} {info[k]}" for k in self.summary_keys if k in info]


def check_engine(cls: Any) -> ExecutionEngine:
    """An instance of ``cls`` after checking it is an :class:`ExecutionEngine` with every
    required member; else one line saying what is missing."""
    label = getattr(cls, "__qualname__", repr(cls))
    if not (isinstance(cls, type) and issubclass(cls, ExecutionEngine)):
        raise InputError(f"engine {label!r}: not a subclass of ExecutionEngine")
    missing = [m for m in ExecutionEngine.REQUIRED if not _defines(cls, m)]
    if missing:
        raise InputError(f"engine {label!r}: missing required member(s) {', '.join(missing)}")
    name = cls.name
    if not isinstance(name, str) or not name.isidentifier() or name == "eager":
        raise InputError(f"engine {label!r}: name {name!r} is not a word a target can hold")
    return cls()


def _defines(cls: type, member: str) -> bool:
    if member == "build":
        return cls.build is not ExecutionEngine.build
    return isinstance(getattr(cls, member, None), str) and bool(getattr(cls, member))


def build_engine(
    engine: ExecutionEngine,
    module: torch.nn.Module,
    example: torch.Tensor,
    device: torch.device,
    options: dict[str, str],
    *,
    digest: str = "",
    dtype: str = "fp32",
    context: Callable[[], Any],
) -> Engine:
    """Build ``engine`` for ``module`` (already on ``device`` in its dtype and layout) and make
    its first call on ``example`` under ``context()`` (inference mode, knobs, autocast)."""
    start = time.perf_counter()
    try:
        with _quiet_compilers():
            built = engine.build(module, example, device, options, digest=digest, dtype=dtype, context=context)
    except InputError:
        raise  # this host cannot run the mode (BackendUnavailable), or the target is wrong
    except Exception as exc:  # the compiler, capture, export or provider broke: the target fails
        return failed(engine.name, exc, time.perf_counter() - start)
    built.build_s = time.perf_counter() - start
    return built


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


def failed(mode: str, exc: BaseException, build_s: float) -> Engine:
    """The engine of a target whose compilation, capture or export raised (a compiler crash, a
    provider that would not start): each run raises :class:`BuildFailed` with the cause, so the
    target fails with that line wherever it runs, and is built only once."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2] if line.strip())[:500]
    line = f"its {mode} engine failed to build: {type(exc).__name__}" + (f": {text}" if text else "")

    def run(_x: torch.Tensor) -> Any:
        raise BuildFailed(line)

    return Engine(mode, run, build_s, {"backend": "none", "error": line})


def needs_compiler(device: torch.device, *, host_code: bool = False) -> None:
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


def torch_version() -> tuple[int, int]:
    import torch

    major, minor, *_ = (torch.__version__.split("+")[0].split(".") + ["0", "0"])[:3]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
