"""Weight specs: one parser and one loader, shared by the CLI, the library and the tests.

``seeded`` / ``seeded:N``
    ``torch.manual_seed(N)`` (N = 42 by default), then a fresh ResNet34, as the model card
    does. Generated once into the cache folder (``$RESNET34_NPU_CACHE``, default
    ``~/.cache/resnet34_npu``) with an atomic rename, loaded from there afterwards.
``imagenet``
    torchvision's IMAGENET1K_V1 checkpoint, from the local torch hub cache only.
a path
    A state-dict file, read with ``torch.load(..., weights_only=True)``.

Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import socket
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeAlias

from resnet34_npu.core.constants import (
    CACHE_ENV,
    DEFAULT_CACHE_DIR,
    DEFAULT_SEED,
    IMAGENET_CHECKPOINT,
    SEEDED_TENSOR_SHA256,
)
from resnet34_npu.core.errors import InputError, show
from resnet34_npu.core.files import write_atomic

if TYPE_CHECKING:
    import torch

StateDict: TypeAlias = "dict[str, torch.Tensor]"

#: How many offending keys an error message quotes.
_SHOWN_KEYS = 3


@dataclass(frozen=True)
class WeightsSpec:
    """A parsed weights spec: ``kind`` is ``seeded``, ``imagenet`` or ``file``."""

    text: str
    kind: str
    seed: int | None = None
    path: Path | None = None


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from: the spec, the file and two digests.

    ``sha256`` is the file's (what ``sha256sum`` prints); ``tensor_sha256`` covers only the
    tensors, so it stays the same when torch changes its file format."""

    spec: str
    path: str
    sha256: str
    tensor_sha256: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


#: What a weights spec may be, in the help of every option that takes one (CLI and pytest).
SPEC_HELP = "seeded, seeded:N, imagenet or a state-dict file"


def parse_weights_spec(text: str) -> WeightsSpec:
    """Parse ``seeded``, ``seeded:N``, ``imagenet`` or a file path."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(
            f"weights {text!r}: empty spec. Choose one of: seeded, seeded:N, imagenet, a path to a state-dict file"
        )
    if text == "seeded":
        return WeightsSpec(text, "seeded", seed=DEFAULT_SEED)
    if text.startswith("seeded:"):
        number = text.partition(":")[2]
        if not (number.isascii() and number.isdigit()) or int(number) >= 2**63:
            raise InputError(
                f"weights {text!r}: the seed must be a non-negative integer below 2**63, as in 'seeded:42'"
            )
        return WeightsSpec(text, "seeded", seed=int(number))
    if text == "imagenet":
        return WeightsSpec(text, "imagenet", path=imagenet_checkpoint_path())
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(
            f"weights {text!r}: no such file (and not a spec: choose one of seeded, seeded:N, imagenet, a path)"
        )
    return WeightsSpec(text, "file", path=path)


def cache_dir() -> Path:
    """The folder for generated weights: ``$RESNET34_NPU_CACHE`` or ``~/.cache/resnet34_npu``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def seeded_path(seed: int) -> Path:
    return cache_dir() / f"resnet34-seeded-{seed}.pth"


def imagenet_checkpoint_path() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_CHECKPOINT


def tensor_digest(state: StateDict) -> str:
    """sha256 over each tensor's name, dtype, shape and bytes, in state-dict order."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def weights_digest(text: str) -> str:
    """The sha256 of the file a spec names, without building anything: for the pytest header."""
    spec = parse_weights_spec(text)
    path = seeded_path(spec.seed) if spec.kind == "seeded" else spec.path
    if path is None or not path.is_file():
        return "(file not there yet: generated on first use)" if spec.kind == "seeded" else "(file missing)"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256 {digest.hexdigest()}"


def load_weights(text: str, factory: Callable[[], torch.nn.Module]) -> tuple[WeightsInfo, StateDict]:
    """Resolve a weights spec into a checked state dict for the model ``factory`` builds.

    Raises :class:`InputError` naming the spec or file and the reason for anything wrong."""
    spec = parse_weights_spec(text)
    if spec.kind == "seeded":
        assert spec.seed is not None
        path = seeded_path(spec.seed)
        if not path.exists():
            _generate_seeded(spec.seed, path, factory)
    elif spec.kind == "imagenet":
        assert spec.path is not None
        path = spec.path
        if not path.is_file():
            raise InputError(
                f"weights 'imagenet': {IMAGENET_CHECKPOINT} is not in the local torch hub cache; "
                f"put torchvision's file (https://download.pytorch.org/models/{IMAGENET_CHECKPOINT}) at "
                f"{path} (nothing is downloaded)"
            )
    else:
        assert spec.path is not None
        path = spec.path
    key = (text, str(path.resolve()))
    stat = _stat(path)
    cached = _LOADED.get(key)
    if cached is None or stat is None or cached[0] != stat:
        data = _read_file(path)
        sha256 = hashlib.sha256(data).hexdigest()
        if cached is None or cached[1][0].sha256 != sha256:
            cached = (None, _check(spec, path, data, sha256, factory))
        _LOADED.clear()  # one weights file at a time is plenty: the suite uses one per run
        # Trusted by its stat from now on only if it had not changed for a while when read (git's
        # "racy" rule): a rewrite in the same timestamp tick would otherwise keep the same stat.
        settled = stat is not None and stat[3] < time.time_ns() - _SETTLED_NS  # ctime: touch cannot set it
        _LOADED[key] = (stat if settled else None, cached[1])
    info, state = _LOADED[key][1]
    return info, {name: tensor.clone() for name, tensor in state.items()}


#: The last weights file loaded and checked in this process, by spec and path, with the file's
#: stat when it was read and the sha256 of its bytes: tests and the suite's sessions build the
#: same model many times. An unchanged stat skips reading; a changed one rereads and compares
#: the sha256; a changed sha256 checks the file again.
_LOADED: dict[tuple[str, str], tuple[tuple[int, ...] | None, tuple[WeightsInfo, StateDict]]] = {}
_SETTLED_NS = 3_000_000_000


def _stat(path: Path) -> tuple[int, ...] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_ctime_ns, stat.st_mtime_ns)


def _check(
    spec: WeightsSpec, path: Path, data: bytes, sha256: str, factory: Callable[[], torch.nn.Module]
) -> tuple[WeightsInfo, StateDict]:
    import torch

    text = spec.text
    if spec.kind == "imagenet" and not sha256.startswith(IMAGENET_CHECKPOINT.split("-")[1].split(".")[0]):
        raise InputError(
            f"weights file {show(path)}: sha256 {sha256[:8]}... does not match torchvision's {IMAGENET_CHECKPOINT}"
        )
    state = _unpickle(path, data)
    with torch.device("meta"):
        expected = factory().state_dict()
    _check_fits(path, state, expected)
    digest = tensor_digest(state)
    if spec.kind == "seeded":
        # Every generated file is checked, whatever N: against the published digest (seed 42)
        # or against the tensors generated again here.
        known = SEEDED_TENSOR_SHA256.get(spec.seed) or _seeded_digest(spec.seed, factory)
        if digest != known:
            raise InputError(
                f"weights file {show(path)}: its tensors (sha256 {digest[:12]}...) are not seeded:{spec.seed} "
                f"(expected {known[:12]}...); delete the file to regenerate it"
            )
    return WeightsInfo(spec=text, path=str(path), sha256=sha256, tensor_sha256=digest), state


def _seeded_state(seed: int, factory: Callable[[], torch.nn.Module]) -> StateDict:
    """``torch.manual_seed(seed)`` then ``factory()``; the caller's RNG state is left as it was.
    Its tensor digest is remembered for this process (what a cached file must match)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = factory().state_dict()
    _SEEDED_DIGESTS[seed] = tensor_digest(state)
    return state


_SEEDED_DIGESTS: dict[int, str] = {}


def _seeded_digest(seed: int, factory: Callable[[], torch.nn.Module]) -> str:
    if seed not in _SEEDED_DIGESTS:
        _seeded_state(seed, factory)
    return _SEEDED_DIGESTS[seed]


def _temporary_prefix(path: Path) -> str:
    """``NAME.HOST.PID.``: whose generation a temporary file is (a cache may be shared by hosts)."""
    host = socket.gethostname().replace(".", "-") or "host"
    return f"{path.name}.{host}.{os.getpid()}."


def _sweep_temporaries(folder: Path) -> None:
    """Remove temporary files left in the cache by generations of this host whose process is
    gone (killed): ``NAME.HOST.PID.XXXX.tmp``."""
    host = socket.gethostname().replace(".", "-") or "host"
    for tmp in folder.glob(f"*.pth.{host}.*.tmp"):
        pid = tmp.name.split(".")[-3]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:
            continue


def _generate_seeded(seed: int, path: Path, factory: Callable[[], torch.nn.Module]) -> None:
    """Save ``seeded:N``'s state dict atomically: a temporary file in the same folder (named
    with this process's id, so a later run can sweep it if this one is killed), then a rename,
    so racing processes never see half a file. A full disk or an unwritable folder is one
    :class:`InputError` naming the file, and leaves no temporary file."""
    import torch

    state = _seeded_state(seed, factory)
    if path.parent.is_dir():
        _sweep_temporaries(path.parent)
    write_atomic(
        path,
        lambda handle: torch.save(state, handle),
        what="weights file",
        prefix=_temporary_prefix(path),
        hint=f"free space or set {CACHE_ENV}",
    )


#: The largest weights file read: a ResNet34 state dict is 87 MB in fp32, 175 MB in fp64, and a
#: training checkpoint with an optimizer's state a few times that.
MAX_WEIGHTS_BYTES = 1 << 30


def _read_file(path: Path) -> bytes:
    """The file's bytes, after refusing what is not a regular file (a FIFO would hang, a device
    like /dev/zero never ends) or is far larger than a ResNet34 checkpoint (before reading it)."""
    if path.is_dir():
        raise InputError(f"weights file {show(path)}: is a directory, not a state-dict file")
    try:
        # Opened without blocking and examined through the open descriptor: a FIFO swapped in
        # after a check cannot make the read hang.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"weights file {show(path)}: is not a regular file (a device, FIFO or socket)")
            if info.st_size > MAX_WEIGHTS_BYTES:
                raise InputError(
                    f"weights file {show(path)}: is {info.st_size} bytes, far larger than a ResNet34 checkpoint "
                    f"(at most {MAX_WEIGHTS_BYTES} bytes are read)"
                )
            data = handle.read(MAX_WEIGHTS_BYTES + 1)
    except OSError as exc:
        raise InputError(f"weights file {show(path)}: cannot be read ({exc.strerror})") from None
    if len(data) > MAX_WEIGHTS_BYTES:
        raise InputError(f"weights file {show(path)}: grew past {MAX_WEIGHTS_BYTES} bytes while being read")
    if not data:
        raise InputError(f"weights file {show(path)}: is empty (0 bytes)")
    return data


def _unpickle(path: Path, data: bytes) -> StateDict:
    import torch

    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsupported = next((line.strip() for line in str(exc).splitlines() if "Unsupported global" in line), None)
        if unsupported:
            # a real pickle of more than tensors, which weights_only refuses to run
            reason = unsupported.split("WeightsUnpickler error:")[-1].strip().split(" was not")[0]
            raise InputError(
                f"weights file {show(path)}: refused by torch.load(weights_only=True), "
                f"it pickles more than tensors ({reason})"
            ) from None
        raise InputError(
            f"weights file {show(path)}: not a PyTorch checkpoint (torch.load cannot unpickle it)"
        ) from None
    except Exception as exc:  # torch.load raises RuntimeError, KeyError, EOFError... on arbitrary bytes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(
            f"weights file {show(path)}: not a readable PyTorch checkpoint, truncated or another format "
            f"({type(exc).__name__}{': ' + first if first else ''})"
        ) from None
    for wrapper in ("state_dict", "model"):
        # Training checkpoints: {"state_dict": ..., "epoch": ..., "optimizer": ...}
        if (
            isinstance(obj, dict)
            and isinstance(obj.get(wrapper), dict)
            and not isinstance(obj.get(wrapper), torch.Tensor)
        ):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"weights file {show(path)}: holds a {type(obj).__name__}, not a state dict of tensors")
    if not all(isinstance(k, str) for k in obj):
        bad = next(k for k in obj if not isinstance(k, str))
        raise InputError(f"weights file {show(path)}: key {bad!r} is not a parameter name (a string)")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _shape(tensor: torch.Tensor) -> str:
    return "[" + ", ".join(str(d) for d in tensor.shape) + "]"


def _check_fits(path: Path, state: StateDict, expected: StateDict) -> None:
    """One error listing the first missing, unexpected and wrongly shaped keys."""
    # BatchNorm's num_batches_tracked is unused in eval mode and absent from old checkpoints.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    not_float = [
        k for k in expected if k in state and expected[k].is_floating_point() and not state[k].is_floating_point()
    ]
    found = (
        ("missing key(s)", missing, lambda k: f"{k} {_shape(expected[k])}"),
        ("unexpected key(s)", unexpected, lambda k: f"{k} {_shape(state[k])}"),
        ("wrong shape(s)", wrong, lambda k: f"{k} expected {_shape(expected[k])} found {_shape(state[k])}"),
        ("non-float tensor(s)", not_float, lambda k: f"{k} is {state[k].dtype}"),
    )
    parts = [f"{len(keys)} {what}: {', '.join(map(show, keys[:_SHOWN_KEYS]))}" for what, keys, show in found if keys]
    if parts:
        raise InputError(f"weights file {show(path)}: does not fit ResNet34: " + "; ".join(parts))
