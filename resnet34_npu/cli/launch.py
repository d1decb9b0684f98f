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

from resnet34_npu.core.errors import blocking_threads, cannot_import

EXIT_CRASH = 3
EXIT_USAGE = 2


def _terminate(signum: int, frame: object) -> None:
    from resnet34_npu.core.errors import Terminated

    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    import resnet34_npu
    from resnet34_npu import import_error
    from resnet34_npu.targets.emulation import refused

    args = sys.argv[1:] if argv is None else list(argv)
    if refused() and not {"-h", "--help", "--version"} & set(args) and args[:1] != ["emulation"]:
        print(f"resnet34-npu: error: {refused()}", file=sys.stderr)
        return 2
    try:
        # help and the version need no torch: every other command imports it here, inside the guard
        error = None if {"-h", "--help", "--version"} & set(args) else import_error()
        if error is not None:
            raise error
        from resnet34_npu.cli.main import main as cli_main
    except Exception as exc:
        # torch itself cannot be imported here: a broken install, said in one line with its fix (exit 2)
        print(f"resnet34-npu: error: {cannot_import(exc, resnet34_npu.USER_AUTOLOAD)}", file=sys.stderr)
        return EXIT_USAGE
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM cleans up (temporary files)
    try:
        code = cli_main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if blocking_threads(threading.enumerate()) or code == 130:
        # An interrupted run (130) may leave a native backend's threads (LoadGen's) running: their
        # teardown at interpreter exit aborts the process; the report is written, so end it here.
        # A target left a non-daemon thread running (its verdict says so): the report is written,
        # so exit now with the run's code instead of waiting for that thread forever.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
