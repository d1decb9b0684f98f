"""A history record: one run's environment, methodology and, per target, its raw latency samples
and accuracy figures; one immutable file per run, written so that concurrent writers on one
folder never tear or lose a record (a private temporary file, fsync, then ``os.link`` to a
name no other writer holds: the link fails rather than replace an existing record)."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from resnet34_npu.core.documents import dumps, utc_now
from resnet34_npu.core.errors import InputError, show

FORMAT = "resnet34-npu-history"
SCHEMA_VERSION = 1
#: the free space a history folder needs before a run starts (a record is a few kB to a few MB)
MIN_FREE_BYTES = 4 * 1024 * 1024

Scalar = Union[str, int, float, bool, None]


@dataclass(frozen=True)
class TargetResult:
    """One target of one run: raw latency samples (ms, every timed call) and accuracy figures
    (the worst over the images: ``rel_l2``, ``max_abs`` highest, ``cosine`` lowest), with the
    per-image figures where there are any."""

    target: str
    device: str
    batch: int
    samples_ms: tuple[float, ...] = ()
    median_ms: float | None = None
    p90_ms: float | None = None
    accuracy: dict[str, float] = field(default_factory=dict)
    images: tuple[dict[str, float], ...] = ()
    methodology: dict[str, Scalar] = field(default_factory=dict)
    status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "device": self.device,
            "batch": self.batch,
            "samples_ms": list(self.samples_ms),
            "median_ms": self.median_ms,
            "p90_ms": self.p90_ms,
            "accuracy": dict(self.accuracy),
            "images": [dict(i) for i in self.images],
            "methodology": dict(self.methodology),
            "status": self.status,
        }


@dataclass(frozen=True)
class Record:
    """One run: when, from what (``pytest``, ``compare``, ``pytest-benchmark``), on what software
    (``environment``: name -> version text) with which methodology, and its targets."""

    run_id: str
    created: str
    source: str
    environment: dict[str, str]
    methodology: dict[str, Scalar]
    targets: tuple[TargetResult, ...]
    name: str = ""  # the file it was read from (not stored in the file)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "created": self.created,
            "source": self.source,
            "environment": dict(self.environment),
            "methodology": dict(self.methodology),
            "targets": [t.to_dict() for t in self.targets],
        }


def new_run_id() -> str:
    return uuid.uuid4().hex


def digest_of(value: Any) -> str:
    """A short stable digest of a JSON-able value (the methodology's, for series keys)."""
    return hashlib.sha256(dumps(value).encode("utf-8")).hexdigest()[:12]


#: a label's key in the environment: ``label:release`` (shown as ``release=2026.11 -> 2026.12``)
LABEL_PREFIX = "label:"
#: the longest label key or value
MAX_LABEL = 200
#: environment variables that change results or speed, recorded by name (msprobe's config_check
#: compares these between two runs): prefixes, and whole names
VARIABLE_PREFIXES = (
    "ASCEND_",
    "HCCL_",
    "ACL_",
    "NPU_",
    "TORCH_NPU_",
    "OMP_",
    "MKL_",
    "KMP_",
    "OPENBLAS_",
    "ONEDNN_",
    "DNNL_",
    "ATEN_",
    "CUBLAS_",
    "CUDNN_",
    "NCCL_",
    "PYTORCH_",
    "TORCH_",
    "ORT_",
)
VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "TASK_QUEUE_ENABLE",
    "INF_NAN_MODE_ENABLE",
)


#: variables the suite sets itself (a failed torch_npu import leaves TORCH_DEVICE_BACKEND_AUTOLOAD=0)
IGNORED_VARIABLES = ("TORCH_DEVICE_BACKEND_AUTOLOAD",)


def parse_label(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (``release=2026.12``): a key of letters, digits and ``._-``, a value of printable
    text, each at most :data:`MAX_LABEL` characters; anything else is an :class:`InputError`."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"label {text[:80]!r}: expected KEY=VALUE, e.g. release=2026.12")
    if len(key) > MAX_LABEL or len(value) > MAX_LABEL:
        raise InputError(f"label {text[:80]!r}...: longer than {MAX_LABEL} characters (key or value)")
    if not all(c.isalnum() or c in "._-" for c in key):
        raise InputError(f"label {text[:80]!r}: the key may hold letters, digits, '.', '_' and '-' only")
    if not value.isprintable():
        raise InputError(f"label {text[:80]!r}: the value holds a control character")
    return key, value


def label_fields(labels: dict[str, str] | list[tuple[str, str]] | None) -> dict[str, str]:
    """The environment fields of ``labels``: ``{"label:release": "2026.12"}``."""
    items = labels.items() if isinstance(labels, dict) else (labels or [])
    return {f"{LABEL_PREFIX}{key}": value for key, value in items}


def variables() -> dict[str, str]:
    """The environment variables that change results or speed (:data:`VARIABLE_PREFIXES`,
    :data:`VARIABLES`) set in this process, each cut to :data:`MAX_LABEL` characters."""
    return {
        name: value[:MAX_LABEL]
        for name, value in sorted(os.environ.items())
        if (name in VARIABLES or name.startswith(VARIABLE_PREFIXES)) and name not in IGNORED_VARIABLES
    }


def environment(labels: dict[str, str] | list[tuple[str, str]] | None = None) -> dict[str, str]:
    """This host's software stack, thread counts, the variables that change results and the
    user's ``labels``: what a release or a setting can change. Fields that cannot be read are left out."""
    env: dict[str, str] = {"host": platform.node(), "python": platform.python_version(), "cpu": _cpu_name()}
    env.update(variables())
    env.update(label_fields(labels))
    from importlib import metadata

    for dist, label in (
        ("torch", "torch"),
        ("torchvision", "torchvision"),
        ("torch-npu", "torch_npu"),
        ("onnxruntime", "onnxruntime"),
        ("onnxruntime-gpu", "onnxruntime"),
        ("resnet34-npu", "resnet34-npu"),
    ):
        try:
            env.setdefault(label, metadata.version(dist))
        except metadata.PackageNotFoundError:
            continue
    try:
        import torch

        env["torch threads"] = str(torch.get_num_threads())
        env["torch interop threads"] = str(torch.get_num_interop_threads())
        npu = sys.modules.get("torch_npu")
        if npu is not None:
            env["emulated"] = "yes" if getattr(npu, "EMULATED", False) else "no"
        if torch.version.cuda:
            env["CUDA"] = str(torch.version.cuda)
            if torch.backends.cudnn.is_available():
                env["cuDNN"] = str(torch.backends.cudnn.version())
            if torch.cuda.is_available():
                env["devices"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001 - a record never fails a run for a version it cannot read
        pass
    for path, label in (
        ("/usr/local/Ascend/ascend-toolkit/latest/version.cfg", "CANN"),
        ("/usr/local/Ascend/driver/version.info", "driver"),
        ("/usr/local/Ascend/firmware/version.info", "firmware"),
    ):
        version = _version_file(Path(path))
        if version:
            env[label] = version
    return env


def _version_file(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")[:4096]
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if value and "version" in key.lower():
            return value.strip().strip('"')[:80]
    return ""


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def check_history_dir(path: str | Path) -> Path:
    """Fail before any work when records cannot be written in ``path``: a file, unwritable, or
    with less than :data:`MIN_FREE_BYTES` free. The folder is made if missing."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"history {show(folder)}: is not a folder (history records are files in a folder)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise InputError(f"history {show(folder)}: cannot write in it ({exc.strerror or exc})") from None
    if free < MIN_FREE_BYTES:
        raise InputError(
            f"history {show(folder)}: the disk is full ({free} bytes free, a record needs up to {MIN_FREE_BYTES})"
        )
    return folder


def write_record(folder: str | Path, record: Record) -> Path:
    """Write ``record`` as a new file in ``folder`` and return its path. The file appears whole
    or not at all, and never replaces another record (``os.link`` refuses an existing name)."""
    folder = Path(folder)
    data = dumps(record.to_dict()).encode("utf-8")
    stamp = record.created.replace(":", "").replace("-", "").replace("+0000", "Z")[:15]
    try:
        fd, tmp = tempfile.mkstemp(prefix=".record.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InputError(f"history {show(folder)}: cannot write a record ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o444)
        for attempt in range(100):
            final = folder / f"{stamp}-{record.run_id[:12]}{'-' + str(attempt) if attempt else ''}.json"
            try:
                os.link(tmp, final)
                return final
            except FileExistsError:
                continue
        raise InputError(f"history {show(folder)}: no free record name for run {record.run_id!r}")
    except OSError as exc:
        raise InputError(f"history {show(folder)}: cannot write a record ({exc.strerror or exc})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def make_record(
    targets: list[TargetResult],
    *,
    source: str,
    methodology: dict[str, Scalar],
    env: dict[str, str] | None = None,
    created: str | None = None,
    labels: dict[str, str] | list[tuple[str, str]] | None = None,
) -> Record:
    return Record(
        run_id=new_run_id(),
        created=created or utc_now(),
        source=source,
        environment={**(environment() if env is None else env), **label_fields(labels)},
        methodology=methodology,
        targets=tuple(targets),
    )
