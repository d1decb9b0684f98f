"""The watchdog: a deadline per device call, a card's work watched from outside it (a thread, or
a child process that may die), device errors, and the emulated hazards that exercise them."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from resnet34_npu.core.errors import InputError
from resnet34_npu.targets import watchdog
from resnet34_npu.targets.emulation import hazards
from resnet34_npu.targets.timing import time_call


def _work(send, plan: str, seconds: float = 0.0) -> None:
    """A card's work for the tests: sends ``one``, then does what ``plan`` says inside a device call."""
    send(("one", 1))
    with watchdog.device_call("timing"):
        if plan == "hang":
            time.sleep(3600)
        elif plan == "slow":
            time.sleep(seconds)
        elif plan == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif plan == "exit":
            os._exit(7)
        elif plan == "oom":
            raise watchdog.DeviceError("timing", hazards.oom_message(3))
    send(("two", 2))


def _watch(plan: str, *, isolate: bool, deadline: float = 0.5, seconds: float = 0.0):
    got = []
    failure = watchdog.watch(
        _work, (plan, seconds), card="npu:3", deadline=deadline, isolate=isolate, on_message=got.append
    )
    return failure, got


def test_a_call_within_its_deadline_is_no_failure():
    failure, got = _watch("slow", isolate=False, seconds=0.2, deadline=5)
    assert failure is None and got == [("one", 1), ("two", 2)]


def test_a_call_past_its_deadline_is_hung_and_the_caller_goes_on():
    begin = time.monotonic()
    failure, got = _watch("hang", isolate=False, deadline=0.4)
    assert time.monotonic() - begin < 5  # walked away from, not waited for
    assert failure is not None and failure.kind == "hung" and failure.card == "npu:3" and failure.stage == "timing"
    assert failure.elapsed_s >= 0.4 and failure.deadline_s == 0.4
    assert got == [("one", 1)]  # what it sent before it hung is kept
    assert "npu:3 hung: no answer to timing for" in failure.line and "deadline 0.4 s" in failure.line


def test_a_device_error_fails_the_card_with_the_runtimes_message():
    failure, got = _watch("oom", isolate=False)
    assert failure.kind == "device_error" and failure.stage == "timing"
    assert failure.message.startswith("NPU out of memory. Tried to allocate") and "NPU 3" in failure.message


def test_builds_and_first_forward_passes_get_the_longer_deadline():
    assert watchdog.limit("build", 2.0) == watchdog.limit("first forward", 2.0) == 2.0 * watchdog.BUILD_FACTOR
    assert watchdog.limit("forward", 2.0) == watchdog.limit("timing", 2.0) == 2.0


def test_a_hung_timed_call_never_becomes_a_sample():
    def work(send):
        calls = iter([0.0, 0.0, 3600.0])
        send(("timing", time_call(lambda: time.sleep(next(calls)), torch.device("cpu"), warmup=0, iters=3)))

    got = []
    failure = watchdog.watch(work, (), card="cpu", deadline=0.5, isolate=False, on_message=got.append)
    assert failure.kind == "hung" and failure.stage == "timing" and got == []


def test_device_errors_are_told_from_other_errors():
    assert watchdog.device_error(torch.OutOfMemoryError(hazards.oom_message(0))).startswith("NPU out of memory")
    assert "lost heartbeat" in watchdog.device_error(RuntimeError(hazards.lost_message(5, "synchronize")))
    assert watchdog.device_error(RuntimeError("shape mismatch")) is None
    assert watchdog.device_error(ValueError("bad")) is None


@pytest.mark.parametrize("text", ["0", "-1", "abc", "nan", "inf", None])
def test_a_bad_deadline_is_one_line(text):
    with pytest.raises(InputError, match=r"^--deadline .*(not a number|positive, finite)"):
        watchdog.parse_deadline(text, "--deadline")


def test_a_deadline_shorter_than_the_references_forward_is_refused_with_the_measured_time():
    with pytest.raises(
        InputError, match=r"--deadline 0.05: shorter than the reference's own forward pass, measured at 0.120 s"
    ):
        watchdog.check_deadline(0.05, 0.12, "--deadline")
    watchdog.check_deadline(0.2, 0.12, "--deadline")
    assert watchdog.default_deadline(0.01) == watchdog.FLOOR
    assert watchdog.default_deadline(1.0) == watchdog.FACTOR * 1.0


def test_hazards_are_parsed_and_the_precision_faults_left_alone():
    found = hazards.parse("3,5:flip,6:ulp, 2:hang,6:crash@0,1:oom@12,4:lost")
    assert {k: h.item() for k, h in found.items()} == {
        2: f"2:hang@{hazards.DEFAULT_AFTER}",
        6: "6:crash@0",
        1: "1:oom@12",
        4: f"4:lost@{hazards.DEFAULT_AFTER}",
    }
    with pytest.raises(ValueError, match="'x:hang'"):
        hazards.parse("x:hang")
    with pytest.raises(ValueError, match="'2:hang@soon'"):
        hazards.parse("2:hang@soon")


def test_a_hazard_strikes_at_call_m_plus_one(monkeypatch):
    monkeypatch.setattr(hazards, "_HAZARDS", hazards.parse("1:oom@2,2:lost@0"))
    monkeypatch.setattr(hazards, "_CALLS", {})
    hazards.on_device_call(0, "aten::add")  # a healthy card: never
    hazards.on_device_call(1, "aten::add")
    hazards.on_device_call(1, "aten::add")
    with pytest.raises(torch.OutOfMemoryError, match=r"^NPU out of memory\. Tried to allocate .*\(NPU 1;"):
        hazards.on_device_call(1, "aten::convolution")
    with pytest.raises(RuntimeError, match=r"^synchronize: .*507010.*Device\[2\] lost heartbeat"):
        hazards.on_device_call(2, "synchronize")


@pytest.mark.slow
@pytest.mark.parametrize(
    "plan, kind, signal_name, status",
    [("segv", "crashed", "SIGSEGV", -11), ("exit", "crashed", None, 7), ("hang", "hung", None, None)],
)
def test_an_isolated_card_that_dies_or_hangs_is_named_and_its_sent_results_kept(plan, kind, signal_name, status):
    begin = time.monotonic()
    failure, got = _watch(plan, isolate=True, deadline=1.0)
    assert time.monotonic() - begin < 60
    assert failure is not None and failure.kind == kind and failure.card == "npu:3" and failure.stage == "timing"
    assert failure.signal == signal_name and failure.exit_status == status
    assert got == [("one", 1)]
    if plan == "segv":
        assert "crashed: its process was killed by SIGSEGV during timing" in failure.line
    if plan == "exit":
        assert "exited with status 7" in failure.line


@pytest.mark.slow
def test_an_isolated_card_that_finishes_sends_everything():
    failure, got = _watch("slow", isolate=True, deadline=30, seconds=0.1)
    assert failure is None and got == [("one", 1), ("two", 2)]
