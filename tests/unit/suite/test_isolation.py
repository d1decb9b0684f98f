"""Crash isolation under pytest, piece by piece (the whole path, with an emulated card that
crashes and one that hangs, is ``tests/integration/test_hung_cards.py``): when a run isolates its
tests in a pytest-xdist worker, how the controller names the card of a worker that died, the file
through which the run's processes share the cards that are down, and the emulated cards' shared
cost table."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from resnet34_npu.core.errors import InputError
from resnet34_npu.suite import options, plugin
from resnet34_npu.targets import watchdog
from resnet34_npu.targets.emulation.native import card


def _values(isolate: str, *require: str) -> dict:
    return {"r34_isolate": isolate, "r34_require": list(require)}


@pytest.mark.parametrize(
    ("isolate", "require", "workers", "xdist", "debugging", "expected"),
    [
        ("auto", ("npu",), None, True, False, True),  # the acceptance run as users type it
        ("auto", ("cuda", "cpu"), None, True, False, True),
        ("auto", ("cpu",), None, True, False, False),  # the CPU: nothing to crash but the suite
        ("auto", (), None, True, False, False),  # the default run
        ("auto", ("npu",), 2, True, False, False),  # -n 2: workers already
        ("auto", ("npu",), 0, True, False, False),  # -n 0: xdist turned off by hand
        ("auto", ("npu",), None, False, False, False),  # -p no:xdist
        ("auto", ("npu",), None, True, True, False),  # --collect-only, --pdb, --trace
        ("on", (), None, True, False, True),
        ("off", ("npu",), None, True, False, False),
    ],
)
def test_when_a_run_isolates_its_tests(isolate, require, workers, xdist, debugging, expected):
    found = options.isolates(_values(isolate, *require), workers=workers, xdist=xdist, debugging=debugging)
    assert found is expected


def test_isolation_asked_for_without_xdist_is_one_line():
    with pytest.raises(InputError, match=r"--r34-isolate=on needs pytest-xdist.*-p no:xdist"):
        options.isolates(_values("on"), workers=None, xdist=False, debugging=False)
    with pytest.raises(InputError, match="not one of: auto, on, off"):
        options.parse_isolate("sometimes")


@pytest.fixture
def cards_down(tmp_path, monkeypatch):
    path = tmp_path / "down.jsonl"
    path.write_text("")
    monkeypatch.setenv(watchdog.CARDS_DOWN_ENV, str(path))
    return path


def test_the_first_failure_of_a_card_is_the_one_every_process_reads(cards_down):
    assert watchdog.read_cards_down() == {}
    hung = watchdog.CardFailure("hung", "npu:2", "npu:2/fp32", "forward", 31.0, 30.0)
    watchdog.write_card_down(hung)
    watchdog.write_card_down(watchdog.CardFailure("crashed", "npu:2", "npu:2/fp16", "forward", signal="SIGSEGV"))
    watchdog.write_card_down(watchdog.CardFailure("crashed", "npu:6", "npu:6/fp32", "t", signal="SIGSEGV"))
    found = watchdog.read_cards_down()
    assert found == {"npu:2": hung, "npu:6": found["npu:6"]} and found["npu:6"].kind == "crashed"


def test_a_line_being_written_or_garbled_is_not_a_card(cards_down):
    cards_down.write_text('not json\n{"card": "npu:1"}\n{"kind": "hung", "card": "npu:3", "target": "npu:3", "st')
    assert watchdog.read_cards_down() == {}  # nothing whole yet
    with cards_down.open("a") as f:
        f.write('age": "forward"}\n')
    assert set(watchdog.read_cards_down()) == {"npu:3"}


def _crash(nodeid: str, status: int | None, targets=("npu:1/fp32", "cpu/fp32")):
    """pytest-xdist's crash report for ``nodeid`` from a worker that ended with ``status``, passed
    to the plugin's hook with a suite whose matrix holds ``targets``."""
    suite = SimpleNamespace(targets=[SimpleNamespace(name=n) for n in targets], on_card=lambda n: n.startswith("npu"))
    popen = SimpleNamespace(wait=lambda timeout: status)
    node = SimpleNamespace(
        config=SimpleNamespace(stash={plugin.SUITE: suite}), gateway=SimpleNamespace(_io=SimpleNamespace(popen=popen))
    )
    message = f"worker 'gw0' crashed while running {nodeid!r}"
    report = SimpleNamespace(node=node, when="???", longrepr=message)
    plugin.pytest_handlecrashitem(crashitem=nodeid, report=report, sched=None)
    return report


def test_a_worker_that_died_in_a_cards_test_names_the_card_and_the_signal(cards_down):
    nodeid = "tests/conformance/test_conformance.py::test_verdict[npu:1/fp32-cat.jpg-batch1]"
    report = _crash(nodeid, -signal.SIGSEGV)
    assert report.when == "call" and report.r34_params == {"r34_target": "npu:1/fp32"}
    assert report.longrepr.startswith("npu:1 (npu:1/fp32) crashed: its process was killed by SIGSEGV during")
    assert report.r34_card_failure["kind"] == "crashed" and set(watchdog.read_cards_down()) == {"npu:1"}
    exited = _crash(nodeid, 3)
    assert "exited with status 3" in exited.longrepr


@pytest.mark.parametrize(
    "nodeid",
    ["tests/conformance/test_conformance.py::test_verdict[cpu/fp32-cat.jpg-batch1]", "tests/unit/x.py::test_y"],
)
def test_a_worker_that_died_elsewhere_blames_no_card(cards_down, nodeid):
    report = _crash(nodeid, -signal.SIGSEGV)
    assert report.when == "???" and "crashed while running" in report.longrepr
    assert watchdog.read_cards_down() == {}


def test_emulated_kernel_costs_settle_and_the_first_process_to_fix_one_decides(tmp_path, monkeypatch):
    monkeypatch.setenv(card.COSTS_ENV, str(tmp_path / "costs.txt"))
    (tmp_path / "costs.txt").write_text("")
    first, second = card.Costs(), card.Costs()  # two processes of one run
    kernel = ("aten::convolution", ((1, 64, 56, 56), "torch.float32"))
    charged = [first.measured(kernel, spent) for spent in (5.0, 3.0, 4.0, 2.0, 6.0, 7.0, 8.0, 9.0)]
    assert charged == [5.0, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0] and first.fixed[kernel] == 2.0
    assert first.measured(kernel, 0.5) == 2.0  # fixed: a faster run no longer moves it
    assert second.measured(kernel, 0.1) == 2.0  # another process reads the fixed cost, not its own run
    monkeypatch.delenv(card.COSTS_ENV)
    alone = card.Costs()
    assert [alone.measured(kernel, s) for s in (4.0,) * 7 + (1.0, 0.5)] == [4.0] * 7 + [1.0, 1.0]
