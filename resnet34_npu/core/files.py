"""Files written so that a reader never sees half of one: a temporary file in the same folder,
fsync, then a rename; any failure (a full disk included) is one :class:`InputError` naming the
file, and no temporary file is left behind, whatever stops the write."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from resnet34_npu.core.documents import dumps
from resnet34_npu.core.errors import InputError, show


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
