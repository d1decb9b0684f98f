"""``report history import``: pytest-benchmark's saved runs (``.benchmarks/**/*.json``) as
history records, so the baselines users already have count.

- **Once.** A saved run's ``run_id`` is derived from what identifies it (the machine, its
  ``datetime``, its commit and the file's sha256), so a second import of the same folder finds
  every run already there and writes nothing.
- **What matters kept.** ``machine_info``: host, CPU, Python, OS and commit; the suite's own
  block (``machine_info["resnet34_npu"]``, written by the suite's
  ``pytest_benchmark_update_machine_info`` hook: the same environment a history record carries,
  software stack, devices, threads, variables, labels); and any other key, from other projects'
  hooks, as an environment label (``"cann": "8.5.1"`` reads ``cann 8.5.0 -> 8.5.1`` at a step).
  Each benchmark's ``extra_info`` gives its target, device name, batch and methodology (the
  suite's benchmarks write them), so its series joins the series of the same target, device,
  batch and methodology that ``compare --history`` and ``pytest --r34-history`` write; without
  them the series is the test's node id on this host at batch 1, its methodology
  pytest-benchmark's options.
- **Raw samples** come along where the run was saved with ``--benchmark-save-data``
  (``stats.data``, seconds); otherwise the record carries the median alone and the gate ranks
  run figures, not samples.
- **Refused by name.** A file that is not a pytest-benchmark saved run, a run with no
  benchmarks, a torn, foreign or hostile file (read by :mod:`store`'s bounded, strict reader;
  every converted record checked against the ``history-record`` schema) is a :class:`~resnet34_npu.core.refused.Refused`
  with its reason."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from resnet34_npu.core.errors import InputError, show
from resnet34_npu.core.refused import Refused
from resnet34_npu.core.schemas import problem
from resnet34_npu.history.record import Record, Scalar, TargetResult
from resnet34_npu.history.store import SCHEMA, BadRecord, parse, read_bounded

#: machine_info keys pytest-benchmark itself writes (read by name; any other key is a label)
KNOWN = frozenset(
    {
        "node",
        "processor",
        "machine",
        "python_compiler",
        "python_implementation",
        "python_implementation_version",
        "python_version",
        "python_build",
        "release",
        "system",
        "cpu",
    }
)
#: the suite's block in machine_info (see tests/benchmarks/conftest.py)
BLOCK = "resnet34_npu"
#: what a refused file was read as (its line: ``saved benchmark run PATH: why``)
SAVED_RUN = "saved benchmark run"
#: the longest label value kept (a longer one is cut, never refused: it is another project's data)
MAX_LABEL = 200


def _text(value: Any) -> str:
    return str(value)[:MAX_LABEL]


def _scalars(value: Any) -> dict[str, Scalar]:
    if not isinstance(value, dict):
        return {}
    return {
        str(k)[:MAX_LABEL]: (_text(v) if isinstance(v, str) else v)
        for k, v in value.items()
        if v is None or isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v))
    }


def environment_of(machine: dict[str, Any], commit: dict[str, Any]) -> dict[str, str]:
    """A saved run's environment: pytest-benchmark's fields, the suite's block, other keys as labels."""
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    env = {
        "host": _text(machine.get("node", "")),
        "cpu": _text(cpu.get("brand_raw", machine.get("processor", ""))),
        "python": _text(machine.get("python_version", "")),
    }
    if machine.get("system") or machine.get("release"):
        env["os"] = _text(f"{machine.get('system', '')} {machine.get('release', '')}".strip())
    if commit.get("id"):
        env["commit"] = _text(commit["id"])[:12]
    for key, value in machine.items():
        if key in KNOWN or key == BLOCK or isinstance(value, (dict, list)) or value is None:
            continue
        env[_text(key)] = _text(value)
    block = machine.get(BLOCK) if isinstance(machine.get(BLOCK), dict) else {}
    env.update({k: _text(v) for k, v in _scalars(block.get("environment")).items() if v is not None})
    return env


def _positive_int(value: Any, what: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise BadRecord(f"{what} is {value!r}, expected a whole number from 1")
    return value


def _target(i: int, bench: Any, host_device: str) -> TargetResult:
    if not isinstance(bench, dict) or not isinstance(bench.get("stats"), dict):
        raise BadRecord(f"benchmarks[{i}] has no stats")
    stats = bench["stats"]
    data = stats.get("data") if isinstance(stats.get("data"), list) else []
    try:
        samples = tuple(float(v) * 1000.0 for v in data)
        median = float(stats["median"]) * 1000.0
    except (KeyError, TypeError, ValueError):
        raise BadRecord(f"benchmarks[{i}].stats has no numeric median") from None
    if not all(math.isfinite(v) and v >= 0 for v in (*samples, median)):
        raise BadRecord(f"benchmarks[{i}].stats: a negative or non-finite time")
    extra = bench.get("extra_info") if isinstance(bench.get("extra_info"), dict) else {}
    options = bench.get("options") if isinstance(bench.get("options"), dict) else {}
    methodology = _scalars(extra.get("methodology"))
    if not methodology:  # another project's benchmark: pytest-benchmark's options are its methodology
        methodology = {"benchmark": "pytest-benchmark", **_scalars(options)}
        methodology["iterations"] = stats.get("iterations") if isinstance(stats.get("iterations"), int) else None
    target = extra.get("target") or bench.get("fullname") or bench.get("name")
    device = extra.get("device_name") or extra.get("device") or host_device
    batch = _positive_int(extra.get("batch_size", extra.get("batch")), f"benchmarks[{i}].extra_info batch", 1)
    return TargetResult(
        target=_text(target),
        device=_text(device),
        batch=batch,
        samples_ms=samples,
        median_ms=median,
        p90_ms=None,
        methodology=methodology,
    )


def run_id_of(machine: dict[str, Any], created: str, commit: dict[str, Any], digest: str) -> str:
    """What identifies a saved run: its machine, datetime, commit and file digest (32 hex digits)."""
    key = "\n".join((_text(machine.get("node", "")), created, _text(commit.get("id", "")), digest))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def convert(data: bytes) -> Record:
    """The record of one saved run's bytes, or :class:`BadRecord` saying why it is not one."""
    doc = parse(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list) or "machine_info" not in doc:
        raise BadRecord("not a pytest-benchmark saved run (no machine_info and benchmarks)")
    if not doc["benchmarks"]:
        raise BadRecord("a pytest-benchmark saved run with no benchmarks: nothing to import")
    machine = doc["machine_info"] if isinstance(doc["machine_info"], dict) else {}
    commit = doc.get("commit_info") if isinstance(doc.get("commit_info"), dict) else {}
    env = environment_of(machine, commit)
    host_device = f"{env['host']} ({env['cpu']})"
    targets = tuple(_target(i, bench, host_device) for i, bench in enumerate(doc["benchmarks"]))
    created = doc.get("datetime")
    if not isinstance(created, str) or not created:
        raise BadRecord("no datetime")
    created = created[:64]
    run_id = run_id_of(machine, created, commit, hashlib.sha256(data).hexdigest())
    record = Record(run_id, created, "pytest-benchmark", env, {}, targets)
    found = problem(record.to_dict(), SCHEMA)
    if found is not None:
        raise BadRecord(f"its record would not be valid: {found}")
    return record


def import_benchmarks(source: str | Path) -> tuple[list[Record], list[Refused]]:
    """The records of every saved run under ``source`` (a file or a folder searched for ``*.json``)."""
    root = Path(source)
    if not root.exists():
        raise InputError(f"benchmarks {show(root)}: does not exist")
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*.json") if not p.name.startswith("."))
    records, skipped = [], []
    for path in paths:
        try:
            records.append(convert(read_bounded(path)))
        except BadRecord as exc:
            skipped.append(Refused(str(path), str(exc), SAVED_RUN))
        except OSError as exc:
            skipped.append(Refused(str(path), f"cannot read it ({exc.strerror or exc})", SAVED_RUN))
    return records, skipped
