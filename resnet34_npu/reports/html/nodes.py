"""The page's view model, its building blocks: a report's values read as text (status words,
numbers, the CSS class of a status from a fixed set) and the nodes and blocks that
``templates/report.html.j2`` turns into markup. Every section module builds its blocks from these.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from resnet34_npu.judge.criteria import format_bound

#: The CSS class of each status; anything else a report says is "unknown" (grey).
STATUS_CLASSES = {
    "pass": "pass",
    "warn": "warn",
    "fail": "fail",
    "skipped": "skip",
    "not run": "skip",
    "interrupted": "intr",
}


def _status(value: Any) -> str:
    """A report's status word, lower-cased: only for choosing a class and for display."""
    return str(value).lower() if isinstance(value, str) else "unknown"


def _cls(value: Any) -> str:
    return STATUS_CLASSES.get(_status(value), "unknown")


def _float(value: Any) -> float:
    """A number from a report: JSON numbers, and the "nan", "inf", "-inf" strings; else NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    return math.nan


def _num(value: Any, spec: str = "") -> str:
    """A number formatted (``spec``, else as a bound is in failure lines); "-" when absent."""
    if value is None:
        return "-"
    number = _float(value)
    if math.isnan(number) and not (isinstance(value, str) and value.lower() == "nan"):
        return str(value)  # not a number at all: shown as it is
    return format(number, spec) if spec and math.isfinite(number) else format_bound(number)


# ---------------------------------------------------------------- the view model
# The page is a plain view model of already-formatted text handed to the Jinja2 template
# ``templates/report.html.j2`` (autoescape on): a section is a list of blocks ({"k": "table" ...}),
# a block's content a list of nodes (a string is text; {"t": "b"|"code"|"badge"|"small"|...}).
# Nothing here writes markup, so nothing here can forget to escape.

Nodes = list[Any]
Block = dict[str, Any]


def _t(value: Any) -> str:
    """Any value from a report as text (the template escapes it)."""
    return "" if value is None else str(value)


def _b(value: Any) -> dict[str, Any]:
    return {"t": "b", "v": _t(value)}


def _code(value: Any) -> dict[str, Any]:
    return {"t": "code", "v": _t(value)}


def _small(content: Nodes, cls: str = "") -> dict[str, Any]:
    return {"t": "small", "cls": cls, "c": content}


OUTLIER = {"t": "outlier"}


def _badge(status: Any) -> dict[str, Any]:
    return {"t": "badge", "cls": _cls(status), "v": _status(status).upper()}


def _nodes(content: Any) -> Nodes:
    if isinstance(content, list):
        return content
    if isinstance(content, dict):
        return [content]
    return [_t(content)]


def _td(content: Any, cls: str | None = None, *, title: Any = None, colspan: int | None = None) -> dict[str, Any]:
    return {
        "td": True,
        "cls": cls,
        "title": None if title is None else _t(title),
        "colspan": colspan,
        "c": _nodes(content),
    }


def _status_cell(status: Any) -> dict[str, Any]:
    return _td(_status(status).upper(), f"cell c-{_cls(status)}")


def _summary(pairs: Iterable[tuple[str, Any]]) -> Block:
    shown = [(label, _nodes(value)) for label, value in pairs if value not in (None, "", [])]
    return {"k": "summary", "pairs": shown}


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]], cls: str = "", *, wide: bool = False) -> Block:
    """Header cells are text; a row's cell is text, a node, a node list or a :func:`_td`."""
    body = [[c if isinstance(c, dict) and c.get("td") else {"td": False, "c": _nodes(c)} for c in row] for row in rows]
    return {"k": "table", "header": list(header), "rows": body, "cls": cls, "wide": wide}


def _lines(lines: Iterable[Any]) -> Block:
    return {"k": "lines", "v": [_t(line) for line in lines]}


def _p(*content: Any, cls: str = "") -> Block:
    return {"k": "p", "cls": cls, "c": [n for part in content for n in _nodes(part)]}


def _h(level: int, *content: Any) -> Block:
    return {"k": "h", "level": level, "c": [n for part in content for n in _nodes(part)]}


def _section(title: str, blocks: list[Block], anchor: str) -> dict[str, Any]:
    return {"title": title, "blocks": blocks, "anchor": anchor}


def _cases(target: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(target.get("images") or [])


def _case_key(case: Mapping[str, Any]) -> tuple[str, str]:
    return (str(case.get("image", "?")), str(case.get("batch_size", 1)))


def _image_label(case: Mapping[str, Any]) -> str:
    """A batch is named ``a.jpg+b.jpg+...``: its first image and the batch size say enough."""
    name = str(case.get("image", "?"))
    return name.split("+")[0] + (f" (+{name.count('+')})" if "+" in name else "")
