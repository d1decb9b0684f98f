"""``report history import``: pytest-benchmark's saved runs (``.benchmarks/**/*.json``) as
history records, so the baselines users already have count. Raw samples come along where the
run was saved with ``--benchmark-save-data`` (``stats.data``, seconds); otherwise the record
carries the median alone and the gate compares run figures, not samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet34_npu.core.errors import InputError, show
from resnet34_npu.history.record import Record, TargetResult, new_run_id
from resnet34_npu.history.store import BadRecord, Skipped, parse, read_bounded


def _convert(doc: Any) -> Record:
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list) or "machine_info" not in doc:
        raise BadRecord("not a pytest-benchmark saved run (no machine_info and benchmarks)")
    machine = doc["machine_info"] if isinstance(doc["machine_info"], dict) else {}
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    env = {
        "host": str(machine.get("node", "")),
        "cpu": str(cpu.get("brand_raw", machine.get("processor", ""))),
        "python": str(machine.get("python_version", "")),
    }
    commit = doc.get("commit_info") if isinstance(doc.get("commit_info"), dict) else {}
    if commit.get("id"):
        env["commit"] = str(commit["id"])[:12]
    device = f"{env['host']} ({env['cpu']})"
    targets = []
    for i, bench in enumerate(doc["benchmarks"]):
        if not isinstance(bench, dict) or not isinstance(bench.get("stats"), dict):
            raise BadRecord(f"benchmarks[{i}] has no stats")
        stats = bench["stats"]
        data = stats.get("data") if isinstance(stats.get("data"), list) else []
        try:
            samples = tuple(float(v) * 1000.0 for v in data)
            median = float(stats["median"]) * 1000.0
        except (KeyError, TypeError, ValueError):
            raise BadRecord(f"benchmarks[{i}].stats has no numeric median") from None
        options = bench.get("options") if isinstance(bench.get("options"), dict) else {}
        methodology = {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool)) or v is None}
        methodology["iterations"] = stats.get("iterations") if isinstance(stats.get("iterations"), int) else None
        targets.append(
            TargetResult(
                target=str(bench.get("fullname") or bench.get("name")),
                device=device,
                batch=1,
                samples_ms=samples,
                median_ms=median,
                p90_ms=None,
                methodology={"benchmark": "pytest-benchmark", **methodology},
            )
        )
    created = str(doc.get("datetime") or "")
    if not created:
        raise BadRecord("no datetime")
    return Record(new_run_id(), created, "pytest-benchmark", env, {}, tuple(targets))


def import_benchmarks(source: str | Path) -> tuple[list[Record], list[Skipped]]:
    """The records of every saved run under ``source`` (a file or a folder searched for ``*.json``)."""
    root = Path(source)
    if not root.exists():
        raise InputError(f"benchmarks {show(root)}: does not exist")
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*.json") if not p.name.startswith("."))
    records, skipped = [], []
    for path in paths:
        try:
            records.append(_convert(parse(read_bounded(path))))
        except BadRecord as exc:
            skipped.append(Skipped(str(path), str(exc)))
        except OSError as exc:
            skipped.append(Skipped(str(path), f"cannot read it ({exc.strerror or exc})"))
    return records, skipped
