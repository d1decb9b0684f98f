"""The JSON reports of ``compare`` and of the pytest suite (docs/report-schema.md), and the one
text-table layout both print.

Written atomically: a temporary file in the same folder, then a rename, so a reader never
sees half a report. Non-finite floats are written as the strings "nan", "inf", "-inf" (JSON
has no NaN).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import socket
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torchvision

from . import __version__, devices
from .criteria import Status, worst_status
from .errors import InputError, plain, show
from .files import write_atomic
from .timing import Timing, speedup

if TYPE_CHECKING:
    from .suite import Suite

#: 2: "localisation" became "localization" (one spelling across the suite).
SCHEMA_VERSION = 2


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _cann_version() -> str | None:
    home = os.environ.get("ASCEND_TOOLKIT_HOME") or "/usr/local/Ascend/ascend-toolkit/latest"
    for candidate in (Path(home) / "version.cfg", *Path(home).glob("*/ascend_toolkit_install.info")):
        try:
            for line in candidate.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip().lower() in ("version", "toolkit_version", "runtime_running_version"):
                    return value.strip().strip('"[]').split(":")[0] or None
        except OSError:
            continue
    return None


def machine_info(device_names: Iterable[str] = ()) -> dict[str, Any]:
    """Host, CPU, Python, torch, torchvision, torch_npu and CANN (where present), device names."""
    torch_npu = sys.modules.get("torch_npu")
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": devices.cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_npu": getattr(torch_npu, "__version__", None) if torch_npu else None,
        "cann": _cann_version(),
        "cuda_runtime": torch.version.cuda,
        "resnet34_npu": __version__,
        "devices": sorted(set(device_names)),
    }


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(document: Any) -> str:
    """Strict JSON (no NaN or Infinity tokens: non-finite floats become "nan", "inf", "-inf")."""
    return json.dumps(_clean(document), indent=2, allow_nan=False) + "\n"


def dumps_line(record: Any) -> bytes:
    """One strict-JSON line (as :func:`dumps`, unindented): a record of a results file."""
    return (json.dumps(_clean(record), allow_nan=False) + "\n").encode("utf-8")


#: ``--output -``: the report goes to standard output.
STDOUT = "-"


def _mount_point(path: Path) -> bool:
    """Whether ``path`` is itself a mount point (Linux: /proc/self/mountinfo; a file bind-mounted
    from the same filesystem keeps its device number, so ``st_dev`` alone cannot tell)."""
    try:
        text = Path("/proc/self/mountinfo").read_text(errors="replace")
    except OSError:
        return False
    where = str(path.resolve())
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4 and re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]) == where:
            return True
    return False


def _target(path: str | Path, what: str = "report") -> Path:
    """Where a report for ``path`` really goes: a symlink's target; never a non-regular file or
    a mount point (a bind-mounted file, which the atomic rename cannot replace)."""
    path = Path(path)
    if path.is_symlink():
        try:
            path = path.resolve()
        except (OSError, RuntimeError):  # a loop of links
            raise InputError(f"{what} {show(path)}: a loop of symbolic links") from None
    if path.is_dir():
        raise InputError(f"{what} {show(path)}: is a directory")
    if path.exists() and not path.is_file():
        raise InputError(
            f"{what} {show(path)}: is not a regular file (a device, FIFO or socket); "
            + (
                f"reports are written to regular files, or to standard output with {STDOUT}"
                if what == "report"
                else f"a {what} is written to a regular file"
            )
        )
    try:
        if path.exists() and (_mount_point(path) or path.stat().st_dev != path.parent.stat().st_dev):
            raise InputError(
                f"{what} {show(path)}: is a mount point (a bind-mounted file) that a rename cannot "
                "replace; write the report to another path"
            )
    except OSError as exc:
        raise InputError(f"{what} {show(path)}: cannot be examined ({exc.strerror or exc})") from None
    return path


def write_json_atomic(path: str | Path, document: Any) -> Path | None:
    """Write ``document`` to ``path`` via a temporary file in the same folder and a rename, so a
    reader never sees half a report; ``-`` prints it. Any failure (a full disk included) is one
    :class:`InputError` naming the file, and leaves no temporary file behind."""
    text = dumps(document)
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    path = _target(path)
    write_atomic(
        path,
        lambda handle: handle.write(text.encode("utf-8")),
        what="report",
        prefix=f".{path.name}.",
        hint="the previous file, if any, is unchanged",
    )
    return path


def check_writable(path: str | Path, what: str = "report") -> Path | str:
    """Fail early, before any work, when the report cannot be written at ``path``: not a
    regular file, a mount point, or a folder where a file cannot be created (the folder is made
    if missing, a probe file created and removed). ``-`` (standard output) always can."""
    if str(path) == STDOUT and what == "report":
        return STDOUT
    path = _target(path, what)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{what} {show(path)}: cannot write in {show(parent)} ({exc.strerror or exc})") from None
    return path


def unfinished_report(command: str) -> dict[str, Any]:
    """What stands at a report's path while a run is under way: a run that never finishes
    (killed, interrupted) leaves this, never the previous run's verdict."""
    return {
        "schema_version": SCHEMA_VERSION,
        "created": utc_now(),
        "verdict": Status.INTERRUPTED,
        "interrupted": True,
        "note": f"{command} started and has not finished; a finished run replaces this file",
    }


def build_report(
    *,
    profile: str,
    weights: dict[str, Any],
    reference: dict[str, Any],
    targets: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report document: verdict "fail" when any target failed, else "pass"."""
    names = [reference.get("device_name", "")] + [t.get("device_name", "") for t in targets]
    return {
        "schema_version": SCHEMA_VERSION,
        "created": utc_now(),
        "verdict": Status.FAIL if any(t["verdict"] == Status.FAIL for t in targets) else Status.PASS,
        "profile": profile,
        "machine": machine_info(n for n in names if n),
        "weights": weights,
        "reference": reference,
        "targets": targets,
        **(extra or {}),
    }


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Columns left-aligned to their widest cell, two spaces apart."""
    cells = [[plain(v) for v in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, float) else str(value)


SUMMARY_HEADER = ("target", "image", "batch", "verdict", "rel L2", "cosine", "max abs", "top-1", "top-5", "median ms")


def summary_rows(records: Iterable[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row per verdict record (target x image x batch) for the suite's terminal summary."""
    rows = {}
    for record in records:
        if record.get("kind") != "verdict":
            continue
        case, m = record["case"], record["case"]["metrics"]
        latency = record.get("latency_ms")
        rows[(record["target"], tuple(case["paths"]), case["batch_size"])] = (
            record["target"],
            case["image"].split("+")[0],
            str(case["batch_size"]),
            case["verdict"].upper(),
            _number(m["rel_l2_error"], ".2e"),
            _number(m["cosine_similarity"], ".8f"),
            _number(m["max_abs_error"], ".2e"),
            f"{m['top1_match']:.2f}",
            f"{m['top5_overlap']:.2f}/5",
            "-" if not latency else f"{latency['median']:.2f}",
        )
    return list(rows.values())


def acceptance_report(
    suite: Suite,
    entries: list[dict[str, Any]],
    *,
    interrupted: bool = False,
    left_threads: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The compare report's schema, built from the records of every test (from every xdist
    worker), plus each test's outcome. A target nothing was compared on is "not run" (or
    "skipped", with the reason); a run that compared nothing is "not run" as a whole; any
    failed test makes the whole report "fail"; a session that did not finish (interrupted, or
    stopped by an internal error) is "interrupted" whatever ran, with what ran. A target in
    ``left_threads`` (name -> line) left non-daemon threads running: it fails, with the line."""
    targets: dict[str, dict[str, Any]] = {
        choice.name: {
            "name": choice.name,
            "skipped": suite.skip_reason(choice) or None,
            "images": [],
            "checks": [],
        }
        for choice in suite.targets
    }
    reference: dict[str, Any] = {}
    weights: dict[str, Any] = {"spec": suite.weights}
    reference_latency: dict[str, Any] | None = None
    for entry in entries:
        for record in entry["records"]:
            target = targets.setdefault(
                record["target"], {"name": record["target"], "skipped": None, "images": [], "checks": []}
            )
            for key, value in record["target_info"].items():
                target.setdefault(key, value)
            reference = reference or record["reference"]
            weights = record["weights"]
            if record["kind"] == "dataset":
                target["dataset"] = record["dataset"]
                target.setdefault("dataset_info", record.get("dataset_info"))
            elif record["kind"] == "verdict":
                target["images"].append(record["case"])
                if record["case"]["batch_size"] == 1 and record["latency_ms"] and "latency_ms" not in target:
                    target["latency_ms"] = record["latency_ms"]
                    reference_latency = reference_latency or record["reference_latency_ms"]
            else:
                target["checks"].append(
                    {
                        "kind": record["kind"],
                        "test": entry["test"],
                        **record["case"],
                        **({"nondeterministic": record["nondeterministic"]} if "nondeterministic" in record else {}),
                    }
                )
    skipped_at_run_time: dict[str, str] = {}  # a backend this host cannot run skips a target's tests: say why
    for entry in entries:
        name = entry["params"].get("r34_target")
        if name and entry["outcome"] == "skipped":
            skipped_at_run_time.setdefault(name, entry["message"] or "skipped")
        elif name:
            skipped_at_run_time[name] = ""  # some test of it did not skip: not "skipped" as a whole
    for target in targets.values():
        statuses = [c["verdict"] for c in target["images"] + target["checks"]]
        if target.get("dataset"):
            statuses.append(target["dataset"]["verdict"])
        if not statuses and not target["skipped"] and skipped_at_run_time.get(target["name"]):
            target["skipped"] = skipped_at_run_time[target["name"]]
        target["verdict"] = (
            worst_status(statuses) if statuses else (Status.SKIPPED if target["skipped"] else Status.NOT_RUN)
        )
        unfinished = (target.get("dataset") or {}).get("verdict")
        if unfinished in (Status.INTERRUPTED, Status.NOT_RUN) and target["verdict"] != Status.FAIL:
            target["verdict"] = unfinished  # a dataset not compared to its end is not a pass
        choice = suite.choice(target["name"])
        if choice is not None and suite.missing_required(choice):
            target["verdict"], target["required_missing"] = Status.FAIL, suite.missing_required(choice)
        latency = target.setdefault("latency_ms", None)
        timing = None if not latency else Timing.from_dict(latency)
        target["throughput_ips"] = None if timing is None or timing.median <= 0 else timing.throughput_ips
        target["speedup_vs_reference"] = speedup(
            Timing.from_dict(reference_latency) if reference_latency else None, timing
        )
    if reference_latency is not None:
        reference["latency_ms"] = reference_latency
    for name, line in (left_threads or {}).items():  # its threads would have kept the process from exiting
        if name in targets:
            targets[name]["verdict"], targets[name]["left_threads"] = Status.FAIL, line
    tested = {
        c.kind
        for c in suite.targets
        if targets[c.name]["images"] or targets[c.name]["checks"] or targets[c.name].get("dataset")
    }
    for choice in suite.targets:  # a required kind must have been tested at least once
        target = targets[choice.name]
        if choice.kind in suite.required and choice.kind not in tested and target["verdict"] != Status.FAIL:
            target["verdict"] = Status.FAIL
            target["required_missing"] = f"required (--r34-require={choice.kind}) but not tested in this run"
    tests = [{k: v for k, v in e.items() if k != "records"} for e in entries]
    document = build_report(
        profile=suite.profile,
        weights=weights,
        reference=reference,
        targets=list(targets.values()),
        extra={"fp64_truth": suite.fp64_truth, "images": [str(p) for p in suite.images], "tests": tests},
    )
    document["interrupted"] = interrupted
    if interrupted:
        document["verdict"] = Status.INTERRUPTED
    elif any(t["outcome"] == "failed" for t in tests):
        document["verdict"] = Status.FAIL
    elif document["verdict"] != Status.FAIL and not any(
        t["images"] or t["checks"] or t.get("dataset") for t in targets.values()
    ):
        document["verdict"] = Status.NOT_RUN
    return document
