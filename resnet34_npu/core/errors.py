"""The suite's error and warning types: one error for bad input, and the warnings a passing
test can carry (documented in the README)."""

from __future__ import annotations

import concurrent.futures.thread
import os
import sys
import threading
from collections.abc import Iterable


class InputError(ValueError):
    """A user error, reported as one line: the CLI exits 2, the pytest plugin raises
    ``pytest.UsageError``. The message names the offending input and the reason."""


class NonDeterminismWarning(UserWarning):
    """Two runs of the same target on the same input differed."""


class RankingWarning(UserWarning):
    """A ranking (top-1, top-5) differs where the profile only warns about it."""


def _escaped(text: object, backslash: bool) -> str:
    value = os.fsdecode(text) if isinstance(text, (bytes, os.PathLike)) else str(text)
    out = []
    for ch in value:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid UTF-8, kept as a lone surrogate
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\" and backslash:
            out.append("\\\\")
        elif not ch.isprintable():
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def plain(text: object) -> str:
    """Text made safe for one line of output: control characters escaped (a newline in a file
    name cannot forge a second line such as ``verdict: PASS``), backslashes doubled (so the
    escapes are unambiguous), and bytes that were not valid UTF-8 shown as ``\\xNN``."""
    return _escaped(text, backslash=True)


def one_line(message: object) -> str:
    """A message (whose names are already :func:`show`-n) made one printable line: what is
    still a control character or an undecodable byte is escaped; backslashes are left alone."""
    return _escaped(message, backslash=False)


def show(name: object) -> str:
    """A file name (or any user-given text) quoted for a message: ``'name'``, made :func:`plain`."""
    return f"'{plain(name)}'"


class Terminated(BaseException):
    """SIGTERM, raised where the program is (by the entry point's handler), so that cleanup runs:
    temporary files are removed and the run says it was terminated."""


def blocking_threads(threads: Iterable[threading.Thread]) -> list[str]:
    """The names of ``threads`` that would keep the process from exiting: alive, not daemon,
    and not an idle ``concurrent.futures`` pool worker (torch.compile's inductor starts such
    pools; the interpreter stops and joins idle workers at exit, but waits for a busy one)."""
    pools = getattr(concurrent.futures.thread, "_threads_queues", {})
    frames = sys._current_frames()  # noqa: SLF001 - where each thread is now

    def idle_worker(thread: threading.Thread) -> bool:
        frame = frames.get(thread.ident)  # an idle worker waits in the C queue: _worker is its top frame
        return thread in pools and frame is not None and frame.f_code.co_name == "_worker"

    return sorted(
        t.name
        for t in threads
        if t.is_alive() and not t.daemon and t is not threading.main_thread() and not idle_worker(t)
    )


#: The fix for a host whose CANN is missing or not set up in this shell.
SOURCE_CANN = "source /usr/local/Ascend/ascend-toolkit/set_env.sh"


def cannot_import(exc: BaseException, autoload: str | None) -> str:
    """The one line for an ``import torch`` (or torchvision) that failed, with the fix.
    ``autoload`` is ``TORCH_DEVICE_BACKEND_AUTOLOAD`` as the user set it (``resnet34_npu.USER_AUTOLOAD``:
    torch_npu rewrites the variable while it imports)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    line = f"importing torch failed: {type(exc).__name__}: {first}"
    if "backend extension" in first or autoload == "1":
        cause = exc.__cause__ or exc.__context__
        why = f" ({type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0]})" if cause else ""
        line += (
            f"{why}. TORCH_DEVICE_BACKEND_AUTOLOAD={autoload if autoload is not None else '(unset)'} makes torch "
            f"load torch_npu at import, and torch_npu cannot load here: {SOURCE_CANN} (CANN installed and set "
            "up), or set TORCH_DEVICE_BACKEND_AUTOLOAD=0 (the suite imports torch_npu itself and says why it fails)"
        )
    return line
