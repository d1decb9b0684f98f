"""Reading a history folder: every ``*.json`` record in it, each checked before it is believed.
A record that is torn, foreign, of a newer format or hostile (deep nesting, numbers of a thousand
digits, NaN tokens, an oversized file, a FIFO or other non-regular file, which is never opened) is
named and skipped with its reason, or, with ``strict``, refused. The file and its JSON are checked
here (what a schema cannot say); its structure by the ``history-record`` JSON Schema
(:mod:`resnet34_npu.core.schemas`), shipped for users' own tools too."""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet34_npu.core.errors import InputError, show
from resnet34_npu.core.refused import Refused
from resnet34_npu.core.schemas import problem
from resnet34_npu.history.record import FORMAT, SCHEMA_VERSION, Record, TargetResult

#: the largest record file read (a record with 10,000 raw samples per target is well under 1 MiB)
MAX_RECORD_BYTES = 16 * 1024 * 1024
#: the most digits a number may have (a float64 needs 17; 1000-digit integers are refused)
MAX_DIGITS = 40
#: the JSON Schema a record is checked against (resnet34_npu/core/schemas/history-record.schema.json)
SCHEMA = "history-record"


#: what a skipped file of a history folder was read as (its :class:`Refused` line: ``history record NAME: why``)
RECORD = "history record"


@dataclass(frozen=True)
class History:
    """The records of a folder, oldest first, and the files skipped."""

    folder: str
    records: tuple[Record, ...]
    skipped: tuple[Refused, ...]


class BadRecord(ValueError):
    pass


def _refuse_constant(token: str) -> float:
    raise BadRecord(f"a {token} token (not JSON; the suite writes non-finite numbers as strings)")


def _parse_int(text: str) -> int:
    if len(text) > MAX_DIGITS:
        raise BadRecord(f"a number of {len(text)} digits (at most {MAX_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_DIGITS + 10:
        raise BadRecord(f"a number of {len(text)} characters (at most {MAX_DIGITS + 10})")
    value = float(text)
    if not math.isfinite(value):
        raise BadRecord(f"a number out of range ({text[:20]}...)")
    return value


def parse(data: bytes) -> Any:
    """Strict JSON of a record: NaN/Infinity tokens, huge numbers and deep nesting refused."""
    try:
        return json.loads(
            data.decode("utf-8"), parse_constant=_refuse_constant, parse_int=_parse_int, parse_float=_parse_float
        )
    except RecursionError:
        raise BadRecord("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise BadRecord(f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadRecord(f"torn or not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def _figures(value: dict[str, Any]) -> dict[str, float]:
    return {key: float(item) for key, item in value.items()}  # a number, or "nan"/"inf"/"-inf" (the schema's)


def from_document(doc: Any, name: str = "") -> Record:
    """The :class:`Record` of a parsed document, or :class:`BadRecord` naming what is wrong: a
    foreign document or a newer schema_version by name, any other structure by the
    ``history-record`` JSON Schema (the JSON path and what was expected)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BadRecord(f'not a resnet34-npu history record (no "format": {FORMAT!r})')
    version = doc.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise BadRecord(f"$.schema_version is {version}: of a newer format (this suite reads up to {SCHEMA_VERSION})")
    try:
        found = problem(doc, SCHEMA)
    except RecursionError:
        raise BadRecord("nested too deeply") from None
    if found is not None:
        raise BadRecord(found)
    results = tuple(
        TargetResult(
            target=t["target"],
            device=t["device"],
            batch=t["batch"],
            samples_ms=tuple(float(s) for s in t["samples_ms"]),
            median_ms=None if t["median_ms"] is None else float(t["median_ms"]),
            p90_ms=None if t["p90_ms"] is None else float(t["p90_ms"]),
            accuracy=_figures(t["accuracy"]),
            images=tuple(_figures(im) for im in t["images"]),
            methodology=t["methodology"],
            status=t["status"],
        )
        for t in doc["targets"]
    )
    return Record(
        run_id=doc["run_id"],
        created=doc["created"],
        source=doc["source"],
        environment=doc["environment"],
        methodology=doc["methodology"],
        targets=results,
        name=name,
    )


def read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most :data:`MAX_RECORD_BYTES`; anything else (a FIFO,
    a device, a link, a folder) is refused from its ``lstat``, before any ``open``."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a symbolic link" if stat.S_ISLNK(info.st_mode) else None
        raise BadRecord(f"not a regular file ({kind or 'a device, socket or folder'}); not opened")
    if info.st_size > MAX_RECORD_BYTES:
        raise BadRecord(f"{info.st_size} bytes, larger than a record can be ({MAX_RECORD_BYTES}); not read")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # replaced between lstat and open
            raise BadRecord("not a regular file; not read")
        data = handle.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise BadRecord(f"larger than a record can be ({MAX_RECORD_BYTES} bytes); not read")
    return data


def load(folder: str | Path, *, strict: bool = False) -> History:
    """Every record of ``folder`` (``*.json``, not hidden), oldest first. A bad one is skipped
    with its reason; with ``strict`` the first is an :class:`InputError`."""
    root = Path(folder)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise InputError(f"history {show(root)}: {what}")
    records: list[Record] = []
    skipped: list[Refused] = []
    try:
        names = sorted(e.name for e in os.scandir(root) if e.name.endswith(".json") and not e.name.startswith("."))
    except OSError as exc:
        raise InputError(f"history {show(root)}: cannot list it ({exc.strerror or exc})") from None
    for name in names:
        try:
            records.append(from_document(parse(read_bounded(root / name)), name))
        except BadRecord as exc:
            if strict:
                raise InputError(f"history record {show(root / name)}: {exc} (--strict)") from None
            skipped.append(Refused(name, str(exc), RECORD))
        except OSError as exc:
            if strict:
                raise InputError(
                    f"history record {show(root / name)}: cannot read it ({exc.strerror or exc})"
                ) from None
            skipped.append(Refused(name, f"cannot read it ({exc.strerror or exc})", RECORD))
    records.sort(key=lambda r: (r.created, r.name))
    return History(str(root), tuple(records), tuple(skipped))
