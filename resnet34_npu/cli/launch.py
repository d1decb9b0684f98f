"""The command's entry point (``python -m resnet34_npu``, the ``resnet34-npu`` script): it
imports the command line, and so torch, inside a guard, so that a torch that cannot even be
imported (``TORCH_DEVICE_BACKEND_AUTOLOAD=1`` with a broken torch_npu) is one line and the
internal-error exit code, never a traceback read as a verdict."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence

from resnet34_npu.core.errors import blocking_threads

EXIT_CRASH = 3


def cannot_import(exc: BaseException) -> str:
    """The one line for an ``import torch`` (or torchvision) that failed, with the fix."""
    first = (str(exc).strip().splitlines() or [""])[0]
    line = f"resnet34-npu: error: importing torch failed: {type(exc).__name__}: {first}"
    if "backend extension" in first or os.environ.get("TORCH_DEVICE_BACKEND_AUTOLOAD") == "1":
        line += (
            f" (TORCH_DEVICE_BACKEND_AUTOLOAD={os.environ.get('TORCH_DEVICE_BACKEND_AUTOLOAD')} makes torch load"
            " torch_npu at import, and it is broken here: unset the variable, or fix the torch_npu install"
            " (CANN installed and its set_env.sh sourced))"
        )
    return line


def _terminate(signum: int, frame: object) -> None:
    from resnet34_npu.core.errors import Terminated

    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    from resnet34_npu import IMPORT_ERROR

    try:
        if IMPORT_ERROR is not None:
            raise IMPORT_ERROR
        from resnet34_npu.cli.main import main as cli_main
    except Exception as exc:
        print(cannot_import(exc), file=sys.stderr)
        return EXIT_CRASH
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM cleans up (temporary files)
    try:
        code = cli_main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if blocking_threads(threading.enumerate()):
        # A target left a non-daemon thread running (its verdict says so): the report is written,
        # so exit now with the run's code instead of waiting for that thread forever.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
