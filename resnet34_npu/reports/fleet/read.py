"""Reading and validating the hosts' reports for ``report merge``: finding the files, reading
each with a size cap (no FIFO, no device), parsing strict JSON, checking the schema version and
the JSON Schema (docs/report-schema.md), then turning a compare or acceptance report into a
:class:`~resnet34_npu.reports.fleet.model.HostReport`. A file that is not one raises
:class:`Invalid` with the reason only; :class:`RefusedReports` holds every refused file.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from resnet34_npu.core import schemas
from resnet34_npu.core.errors import InputError, plain, show
from resnet34_npu.judge.consistency import group_of, is_card
from resnet34_npu.judge.criteria import Status
from resnet34_npu.reports.fleet.model import GroupKey, HostReport, Refusal, Target, WorstMetric
from resnet34_npu.reports.report import SCHEMA_VERSION

#: The largest report read (a dataset-scale report with every image's metrics fits well under it).
MAX_REPORT_BYTES = 256 * 1024 * 1024
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class RefusedReports(InputError):
    """One or more reports could not be merged (and ``skip_invalid`` was not given): one line each."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        self.refusals = tuple(refusals)
        super().__init__("; ".join(r.line() for r in self.refusals))


class Invalid(ValueError):
    """Why a file is not a report we can merge (the reason only; the caller names the file)."""


def find_reports(paths: Iterable[str | Path], *, exclude: str | Path | None = None) -> list[Path]:
    """The report files named by ``paths``: files as given, folders searched for ``*.json``
    recursively (in name order). ``exclude`` (the fleet document being written) is left out of
    folder searches. A path that does not exist, or a folder with no ``*.json``, is an
    :class:`InputError`: a typo must not silently drop a host."""
    skip = Path(exclude).resolve() if exclude is not None and str(exclude) != "-" else None
    found: dict[Path, Path] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*.json") if p.resolve() != skip)
            if not inside:
                raise InputError(f"report folder {show(path)}: holds no *.json file")
            for p in inside:
                found.setdefault(p.resolve(), p)
        elif path.exists() or path.is_symlink():
            found.setdefault(path.resolve(), path)
        else:
            raise InputError(f"report {show(path)}: no such file or folder")
    if not found:
        raise InputError("report merge: no report given")
    return list(found.values())


def read_text(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the merge
    except OSError as exc:
        raise Invalid(f"cannot be read ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # a folder named x.json, a FIFO, a device
        os.close(fd)
        raise Invalid("is a folder" if stat.S_ISDIR(mode) else "is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_REPORT_BYTES + 1)
        except OSError as exc:
            raise Invalid(f"cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise Invalid("is empty")
    if len(data) > MAX_REPORT_BYTES:
        raise Invalid(f"is larger than {MAX_REPORT_BYTES // 2**20} MiB, the most a report may be")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"is not JSON: not UTF-8 text (byte {exc.start})") from None


def _no_constant(token: str) -> Any:
    raise Invalid(f'is not a resnet34-npu report: it holds the token {token} (our reports write "nan", "inf")')


def parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        rest = text[exc.pos :].strip()  # the text ends inside a literal or number, or right after a token
        literal = any(word.startswith(rest) for word in ("true", "false", "null")) and text.strip() != rest
        if literal or re.fullmatch(r"-?[\d.eE+-]*", rest) or exc.msg.startswith("Unterminated string"):
            raise Invalid(
                f"is truncated: the JSON stops after {len(text.encode('utf-8'))} bytes before the document closes"
            ) from None
        raise Invalid(f"is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise Invalid("is not JSON that can be read: nested too deeply") from None


def _quote(value: Any) -> str:
    text = show(value) if isinstance(value, str) else plain(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> float:
    """A number of a validated report as a float ("nan", "inf", "-inf" are JSON's stand-ins)."""
    return _NON_FINITE[value] if isinstance(value, str) else float(value)


def _worst(images: list[dict[str, Any]]) -> WorstMetric | None:
    worst: WorstMetric | None = None
    for case in images:
        # a case whose target raised measured nothing: it counts as NaN, the worst there is
        value = _number(case["metrics"].get("rel_l2_error", "nan"))
        if worst is None or math.isnan(value) and not math.isnan(worst.value) or value > worst.value:
            worst = WorstMetric("rel_l2_error", value, case["image"])
    return worst


#: The software environment a card-to-card group shares: outputs are bit-identical only on one stack.
SOFTWARE = ("torch", "torchvision", "torch_npu", "cann", "cuda_runtime", "resnet34_npu")


def _software(machine: dict[str, Any]) -> str:
    return ", ".join(f"{k} {machine[k]}" for k in SOFTWARE if machine.get(k))


def _consistency(obj: dict[str, Any], software: str) -> tuple[str | None, tuple[tuple[str, tuple[str, ...]], ...]]:
    """A target's card-to-card group and its timed image's digests (none for the CPU, custom
    targets, untimed ones)."""
    digests = (obj.get("latency_ms") or {}).get("digests") or ()
    images = obj.get("images") or []
    if not digests or not images or not is_card(str(obj.get("device") or "custom")):
        return None, ()
    group = f"{group_of(obj['name'], str(obj.get('device_name') or ''), str(obj.get('dtype') or ''))} ({software})"
    return group, ((str(images[0]["image"]), tuple(map(str, digests))),)


def _target(obj: dict[str, Any], software: str = "") -> Target:
    name, device, device_name = obj["name"], obj.get("device"), obj.get("device_name")
    latency = obj.get("latency_ms")
    median = None
    if latency is not None:
        median = _number(latency["median"])
        median = median if math.isfinite(median) and median > 0 else None
    worst = _worst(obj.get("images") or [])
    card = device or name.split("/")[0]  # a skipped target has no device keys: its spec starts with it
    population = None
    if median is not None:
        kind = card.split(":")[0]
        spec = kind + name[len(card) :] if name.startswith(card) else name  # npu:3/fp16 -> npu/fp16
        batch = latency.get("batch_size") if latency else None
        population = f"{spec} on {device_name or 'an unnamed device'}" + (
            f" at batch {batch}" if batch not in (None, 1) else ""
        )
    return Target(name, card, population, Status(obj["verdict"]), worst, median, *_consistency(obj, software))


def _dataset_cards(obj: dict[str, Any]) -> tuple[Target, ...]:
    """A dataset-scale target (``compare --dataset``, one rank per card under torchrun): a
    target per card, its worst image's relative L2 as the worst metric, and its time per image
    (1000 / images per second) as its latency, compared only with other dataset runs."""
    name, device_name = obj["name"], obj.get("device_name")
    out = []
    for row in obj["dataset"].get("cards") or []:
        card = row["card"]
        worst = None
        if row.get("worst_rel_l2") is not None:
            worst = WorstMetric("rel_l2_error", _number(row["worst_rel_l2"]), row.get("worst_image") or "-")
        rate = row.get("images_per_s")
        per_image = 1000.0 / _number(rate) if rate else None
        kind = card.split(":")[0].split(" ")[0]
        spec = (
            kind + name[name.index("/") :] if "/" in name and not name.startswith(("tests.", "resnet34_npu.")) else name
        )
        population = f"dataset {spec} on {device_name or 'an unnamed device'}" if per_image else None
        out.append(Target(f"{name} [{card}]", card, population, Status(row["verdict"]), worst, per_image))
    return tuple(out)


def _key(document: dict[str, Any]) -> GroupKey:
    weights = document.get("weights") or {}
    digest = weights.get("tensor_sha256")
    if digest is None:
        file_digest = weights.get("sha256")
        digest = None if file_digest is None else f"sha256:{file_digest}"
    return GroupKey(
        weights=digest,
        profile=document.get("profile"),
        resnet34_npu=(document.get("machine") or {}).get("resnet34_npu"),
        schema_version=document["schema_version"],
    )


def check_version(document: Any) -> None:
    """What no schema says: a document that is not one of ours, or one a newer version wrote."""
    if not isinstance(document, dict):
        raise Invalid(f"is not a resnet34-npu report: the JSON is {type(document).__name__}, not an object")
    if "schema_version" not in document:
        keys = ", ".join(plain(k) for k in list(document)[:5]) or "none"
        raise Invalid(f"is not a resnet34-npu report: no schema_version (its keys: {keys})")
    version = document["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Invalid(f"is not a resnet34-npu report: schema_version is {_quote(version)}")
    if version > SCHEMA_VERSION:
        raise Invalid(
            f"was written by a newer resnet34-npu (schema_version {version}; this one reads up to "
            f"{SCHEMA_VERSION}): upgrade resnet34-npu to merge it"
        )


def check_schema(document: Any) -> str:
    """The document checked against its JSON Schema (:mod:`resnet34_npu.core.schemas`); returns
    the schema's name, raises the first rule it breaks as an :class:`Invalid`."""
    check_version(document)
    name = schemas.schema_for(document)
    found = schemas.problem(document, name)
    if found is not None:
        raise Invalid(f"does not match the report schema: {found}")
    return name


def validate(document: Any, path: str) -> HostReport:
    """The host's report at ``path`` checked against its JSON Schema (compare or acceptance
    report), then read. Raises the reason, without the file name, as an :class:`Invalid`."""
    check_version(document)
    if document.get("kind") == "fleet":
        raise Invalid("is a fleet report, not a host's report: merge the hosts' reports themselves")
    check_schema(document)
    verdict = Status(document["verdict"])
    if document.get("interrupted") is True:
        verdict = Status.INTERRUPTED
    host = (document.get("machine") or {}).get("host")
    if "targets" not in document and verdict == Status.INTERRUPTED:  # what `compare` leaves while it runs
        return HostReport(path, host, verdict, _key(document), (), 0)
    software = _software(document.get("machine") or {})
    targets = tuple(
        target
        for t in document["targets"]
        for target in (_dataset_cards(t) if isinstance(t.get("dataset"), dict) else (_target(t, software),))
    )
    tests = document.get("tests") or []
    failed = sum(1 for t in tests if t.get("outcome") in ("failed", "error"))
    return HostReport(path, host, verdict, _key(document), targets, failed)


def check_file(path: str | Path) -> str:
    """Read the JSON document at ``path`` (the merge's reader: size cap, no FIFO, no NaN token)
    and check it against its schema (compare, acceptance or fleet report); returns the schema's
    name, raises the reason as an :class:`Invalid`."""
    return check_schema(parse_json(read_text(Path(path))))


def read_report(path: str | Path) -> HostReport:
    """Read and validate one report; a file that is not one raises :class:`Invalid`."""
    path = Path(path)
    return validate(parse_json(read_text(path)), str(path))
