"""A deadline per device call, and a card's work watched from outside it.

Every device call the suite makes (a build, a forward pass with its synchronize, a timed call) is
bracketed by :func:`device_call`, which stamps a *beat*: the stage and when the call began. A card's
work runs in a *worker*, watched by the caller's :func:`watch`:

* ``isolate=True``: a child process of ``multiprocessing``'s ``forkserver`` context (torch and the
  suite are imported once, in the server; each child is forked from it, clean of the parent's
  device state and threads). The beat lives in shared memory; a call past its deadline gets the
  child killed (``hung``); a child that dies (a signal, ``os._exit``, the OOM killer) is
  ``crashed``, with the signal or the exit status. Other cards' results are kept.
* ``isolate=False``: a daemon thread of this process. A hung call is walked away from (a call
  blocked in native code cannot be interrupted, but it does not keep the process from ending);
  a crash takes the process down.

The deadline rule: ``--deadline`` / ``--r34-deadline`` seconds for a forward pass (default
:func:`default_deadline`: :data:`FACTOR` times the reference's own forward pass, at least
:data:`FLOOR` seconds); a build (compiling, capturing, exporting, a custom factory: an eager target's
build is a ``copy to device``, one call like any other), a capture and a target's first forward pass
after its build (where a device compiles its kernels) get :data:`BUILD_FACTOR` times that.

A device error raised by a call (the runtime's out of memory, a device lost) is a ``device_error``
of the card (:func:`device_error`).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import queue
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Callable

from resnet34_npu.core.errors import InputError

#: The default deadline is this many reference forward passes ...
FACTOR = 100
#: ... and at least this many seconds.
FLOOR = 30.0
#: A build, a capture, or a target's first forward pass (kernel compilation) may take this many deadlines.
BUILD_FACTOR = 10
LONG_STAGES = ("build", "capture", "first forward")
#: How often the watcher looks at a worker (seconds).
POLL = 0.1
KINDS = ("hung", "crashed", "device_error")


def default_deadline(reference_forward_s: float) -> float:
    """:data:`FACTOR` reference forward passes, at least :data:`FLOOR` seconds."""
    return max(FLOOR, FACTOR * reference_forward_s)


def parse_deadline(text: Any, where: str) -> float:
    """A deadline in seconds: a positive, finite number, or an :class:`InputError` naming ``where``."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{where} {text!r}: not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{where} {text!r}: must be a positive, finite number of seconds")
    return value


def check_deadline(seconds: float, reference_forward_s: float, where: str) -> None:
    """Refuse a deadline shorter than the reference's own forward pass (a card could not meet it)."""
    if seconds < reference_forward_s:
        raise InputError(
            f"{where} {seconds:g}: shorter than the reference's own forward pass, measured at "
            f"{reference_forward_s:.3f} s here; give at least that"
        )


def limit(stage: str, deadline: float) -> float:
    return deadline * BUILD_FACTOR if stage.startswith(LONG_STAGES) else deadline


@dataclass(frozen=True)
class CardFailure:
    """A card that hung, crashed or raised a device error: what the finding says."""

    kind: str
    card: str
    target: str
    stage: str
    elapsed_s: float | None = None
    deadline_s: float | None = None
    signal: str | None = None
    exit_status: int | None = None
    message: str = ""

    @property
    def line(self) -> str:
        where = f"{self.card} ({self.target})" if self.target and self.target != self.card else self.card
        if self.kind == "hung":
            return (
                f"{where} hung: no answer to {self.stage} for {self.elapsed_s:.1f} s "
                f"(deadline {self.deadline_s:g} s); its remaining cases were not run"
            )
        if self.kind == "crashed":
            how = f"killed by {self.signal}" if self.signal else f"exited with status {self.exit_status}"
            return f"{where} crashed: its process was {how} during {self.stage}; its remaining cases were not run"
        return f"{where} device error during {self.stage}: {self.message}; its remaining cases were not run"

    @property
    def not_run(self) -> str:
        """What a case of the card that did not run says."""
        return f"not run: {self.card} {self.kind.replace('_', ' ')} ({self.stage})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "line": self.line}


_OOM = ("out of memory",)
_LOST = ("lost heartbeat", "device lost", "507010", "507033", "device not found", "device_absent", "ecc error")


def device_error(exc: BaseException) -> str | None:
    """The runtime's message when ``exc`` is a device error (out of memory, a device lost), else None."""
    try:  # a target's exception may not even print
        text = str(exc) if not isinstance(exc, MemoryError) else "out of memory"
    except Exception:
        return None
    low = text.lower()
    if type(exc).__name__ == "OutOfMemoryError" or any(k in low for k in _OOM + _LOST):
        return text.splitlines()[0] if text else type(exc).__name__
    return None


class CardDown(Exception):
    """A call on a card that failed (``first``: this call is where it failed; else the card had
    failed before and the call was not made)."""

    def __init__(self, failure: CardFailure, first: bool) -> None:
        super().__init__(failure.line if first else f"{failure.not_run}: {failure.line}")
        self.failure = failure
        self.first = first


def watched_call(
    fn: Callable[[], Any], *, card: str, target: str, deadline: float, failures: dict[str, CardFailure]
) -> Any:
    """``fn()`` on a watched thread of this process: its value, what it raised, or :class:`CardDown`
    when ``card`` hangs now (``failures`` records it) or had failed before."""
    first = card not in failures
    if first:
        box: list[Any] = []
        failure = watch(
            lambda send: send(("__value__", fn())),
            (),
            card=card,
            deadline=deadline,
            isolate=False,
            on_message=box.append,
            target=lambda: target,
        )
        if failure is None:
            return box[0][1]
        failures[card] = failure
    # one raise for both (Hypothesis tells failures apart by where they were raised: a replayed
    # example that finds the card down must read as the same failure)
    raise CardDown(failures[card], first=first)


#: A file the processes of one pytest run share the cards that failed through (JSON lines of
#: :meth:`CardFailure.to_dict`): the pytest-xdist controller writes a card whose worker died
#: (crashed), and every worker reads it before a device call, so that a replacement worker does
#: not run the dead card again.
CARDS_DOWN_ENV = "R34_CARDS_DOWN"
_READ: dict[str, Any] = {"path": None, "size": -1, "found": {}}


def write_card_down(failure: CardFailure) -> None:
    """Add ``failure`` to ``$R34_CARDS_DOWN`` (one line, appended whole), when the run has one."""
    import json
    import os

    path = os.environ.get(CARDS_DOWN_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(failure.to_dict()) + "\n")


def read_cards_down() -> dict[str, CardFailure]:
    """The cards named in ``$R34_CARDS_DOWN`` (the first failure of each), or {}; read again only
    when the file has grown, a line not yet ended (being written) left for the next read."""
    import dataclasses
    import json
    import os

    path = os.environ.get(CARDS_DOWN_ENV)
    try:
        size = os.stat(path).st_size if path else -1
    except OSError:
        size = -1
    if (path, size) == (_READ["path"], _READ["size"]):
        return _READ["found"]
    found: dict[str, CardFailure] = {}
    if size > 0:
        names = [f.name for f in dataclasses.fields(CardFailure)]
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    size = -1  # read it again next time, whole
                    break
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    data = json.loads(line)
                    found.setdefault(data["card"], CardFailure(**{k: data[k] for k in names if k in data}))
    _READ.update(path=path, size=size, found=found)
    return found


class DeviceError(Exception):
    """A card's work stopped by a device error (the runtime's message)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message


# --- the beat ---------------------------------------------------------------------------------


class Beat:
    """The call in progress of one worker: its stage and start (``time.monotonic``; 0: none)."""

    def __init__(self, shared: bool = False) -> None:
        if shared:
            ctx = multiprocessing.get_context("forkserver")
            self._start = ctx.RawArray("d", 1)
            self._stage = ctx.RawArray("c", 96)
        else:
            self._start, self._stage = [0.0], [b""]
        self.shared = shared
        self.forwards = 0  # forward passes since the last build (the worker's own count)

    def set(self, stage: str, start: float) -> None:
        if self.shared:
            self._stage.value = stage.encode()[:95]
        else:
            self._stage[0] = stage.encode()
        self._start[0] = start

    def get(self) -> tuple[str, float]:
        start = self._start[0]
        stage = self._stage.value if self.shared else self._stage[0]
        return stage.decode(errors="replace"), start


_LOCAL = threading.local()


@contextlib.contextmanager
def device_call(stage: str) -> Iterator[None]:
    """Bracket a device call (``build``, ``capture``, ``forward``, ``timing``, ``synchronize``) for the
    watcher of this worker; nothing at all outside a watched worker. Calls nest: the outer call's
    beat is restored when the inner one ends."""
    beat: Beat | None = getattr(_LOCAL, "beat", None)
    if beat is None:
        yield
        return
    if stage in ("build", "capture", "copy to device"):
        beat.forwards = 0
    elif stage == "forward" and beat.forwards == 0:
        stage = "first forward"
    outer = beat.get()
    beat.set(stage, time.monotonic())
    try:
        yield
    except BaseException as exc:
        if not hasattr(exc, "r34_stage"):  # the innermost call's stage: where a device error struck
            with contextlib.suppress(Exception):
                exc.r34_stage = stage  # type: ignore[attr-defined]
        raise
    finally:
        if stage.endswith("forward"):
            beat.forwards += 1
        beat.set(*outer)


def isolated() -> bool:
    """Whether this is a watched child process (its results travel pickled)."""
    beat: Beat | None = getattr(_LOCAL, "beat", None)
    return beat is not None and beat.shared


def stage_of(exc: BaseException) -> str:
    """The stage of the device call ``exc`` was raised in ("" outside a watched worker)."""
    return str(getattr(exc, "r34_stage", ""))


# --- workers ----------------------------------------------------------------------------------

#: Work: ``work(send, *args)``, calling ``send(message)`` for each of its results.
Work = Callable[..., None]


def _serve(work: Work, args: tuple, send: Callable[[Any], Any], beat: Beat, raised: Callable[[Any], Any]) -> None:
    """Run ``work`` for a watcher: its messages, then ``__done__``, ``__device_error__`` or
    ``__raised__`` (what ``raised`` makes of the exception: a child sends text, as an exception
    may not pickle; a thread sends the exception itself)."""
    _LOCAL.beat = beat
    try:
        work(send, *args)
        send(("__done__", None))
    except DeviceError as exc:
        send(("__device_error__", (exc.stage, exc.message)))
    except BaseException as exc:  # a bug of the work itself, reported to the watcher to raise
        send(("__raised__", raised(exc)))


def _child(work: Work, args: tuple, conn: Any, start: Any, stage: Any) -> None:
    beat = Beat.__new__(Beat)
    beat._start, beat._stage, beat.shared, beat.forwards = start, stage, True, 0
    try:
        _serve(work, args, conn.send, beat, lambda exc: f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    finally:
        conn.close()


def _thread(work: Work, args: tuple, out: queue.Queue, beat: Beat) -> None:
    _serve(work, args, out.put, beat, lambda exc: exc)


def preload(modules: list[str]) -> None:
    """Import ``modules`` once in the forkserver, so that each child starts without importing them."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(modules)


class WorkerError(RuntimeError):
    """The watched work raised something that is not a card's failure (a bug): re-raised here."""


def watch(
    work: Work,
    args: tuple,
    *,
    card: str,
    deadline: float,
    isolate: bool,
    on_message: Callable[[Any], None],
    target: Callable[[], str] = lambda: "",
) -> CardFailure | None:
    """Run ``work(send, *args)`` for ``card`` in its own process (``isolate``) or a daemon thread,
    passing each message it sends to ``on_message`` here; None when it ended, or the card's failure:
    ``hung`` (a call past its deadline: the process is killed, the thread walked away from),
    ``crashed`` (the process died) or ``device_error``. ``target`` names the target in progress."""
    beat = Beat(shared=isolate)
    if isolate:
        ctx = multiprocessing.get_context("forkserver")
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(work, args, send, beat._start, beat._stage), daemon=True)
        proc.start()
        send.close()

        def next_message() -> Any:
            return receive.recv() if receive.poll(POLL) else None

        def alive() -> bool:
            return proc.is_alive()

    else:
        out: queue.Queue = queue.Queue()
        thread = threading.Thread(target=_thread, args=(work, args, out, beat), name=f"r34-{card}", daemon=True)
        thread.start()

        def next_message() -> Any:
            try:
                return out.get(timeout=POLL)
            except queue.Empty:
                return None

        def alive() -> bool:
            return thread.is_alive()

    try:
        while True:
            try:
                message = next_message()
            except (EOFError, OSError):  # the child's end of the pipe closed: it died
                message = None
            if message is not None:
                tag, value = message if isinstance(message, tuple) and len(message) == 2 else (None, None)
                if tag == "__done__":
                    return None
                if tag == "__device_error__":
                    return CardFailure("device_error", card, target(), value[0], message=value[1])
                if tag == "__raised__":
                    if isinstance(value, BaseException):
                        raise value
                    raise WorkerError(f"{card}: the card's worker raised {value}")
                on_message(message)
                continue
            stage, start = beat.get()
            now = time.monotonic()
            if start and now - start > limit(stage, deadline):
                if isolate:
                    proc.kill()
                    proc.join(5)
                return CardFailure("hung", card, target(), stage, now - start, limit(stage, deadline))
            if not alive():
                if isolate:
                    while receive.poll(0):  # what it sent before it died
                        try:
                            message = receive.recv()
                        except (EOFError, OSError):
                            break
                        if isinstance(message, tuple) and message and message[0] == "__done__":
                            return None
                        on_message(message)
                    proc.join(5)
                    code = proc.exitcode
                    name = None
                    if code is not None and code < 0:
                        with contextlib.suppress(ValueError):
                            name = signal.Signals(-code).name
                    return CardFailure("crashed", card, target(), stage or "its work", signal=name, exit_status=code)
                while True:  # a thread ended: what it left in the queue
                    try:
                        message = out.get_nowait()
                    except queue.Empty:
                        return None
                    tag = message[0] if isinstance(message, tuple) and message else None
                    if tag in ("__done__", "__device_error__", "__raised__"):
                        out.put(message)
                        break
                    on_message(message)
    finally:
        if isolate and proc.is_alive():
            proc.kill()
            proc.join(5)
