"""Files written so that a reader never sees half of one: a temporary file in the same folder,
fsync, then a rename; any failure (a full disk included) is one :class:`InputError` naming the
file, and no temporary file is left behind, whatever stops the write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import InputError, show


def write_atomic(path: Path, write: Callable[[BinaryIO], None], *, what: str, prefix: str, hint: str = "") -> None:
    """Write ``path`` with ``write(handle)``; ``what`` names the file in errors ("report"),
    ``prefix`` starts the temporary file's name, ``hint`` ends an error line."""
    hint = f"; {hint}" if hint else ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(
            f"{what} {show(path)}: cannot write in {show(path.parent)} ({exc.strerror or exc}){hint}"
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{what} {show(path)}: cannot write it ({exc.strerror or exc}){hint}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
