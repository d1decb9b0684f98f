"""The text forms of the suite's documents: strict JSON (non-finite floats written as the strings
"nan", "inf", "-inf", since JSON has no NaN), JSON lines, the UTC timestamp every document
carries, and the one text-table layout the commands and the plugin print."""

from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any

from resnet34_npu.core.errors import plain


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Columns left-aligned to their widest cell, two spaces apart."""
    cells = [[plain(v) for v in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
