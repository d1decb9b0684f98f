"""A file refused, and why: one type for every reader that names a file it will not use (a
history folder's records, pytest-benchmark's saved runs on import, a fleet merge's reports)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnet34_npu.core.errors import show


@dataclass(frozen=True)
class Refused:
    """``path`` (as the user named it, or a name within a folder), ``reason`` in words, and
    ``what`` the file was read as (``report``, ``history record``, ``saved benchmark run``)."""

    path: str
    reason: str
    what: str = "file"

    @property
    def name(self) -> str:
        return self.path

    def line(self) -> str:
        return f"{self.what} {show(self.path)}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason}
