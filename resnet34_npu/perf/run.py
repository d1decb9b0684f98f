"""One target (on one card, or on every card of a host at once) measured in one LoadGen scenario:
the accuracy run, the performance run (Server: the bisection for the highest QPS that meets the
latency bound), TEST01 and TEST04, accuracy against the reference and the fraction of the peak.

Every run of LoadGen keeps its own logs under ``folder/<phase>/`` (``mlperf_log_summary.txt``,
``mlperf_log_detail.txt``). The verdict: pass when the performance run is VALID and every
compliance test and the accuracy check pass; else fail, with the reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnet34_npu.core.errors import InputError
from resnet34_npu.perf import compliance, peak
from resnet34_npu.perf.loadgen import (
    SCENARIOS,
    SERVER_BOUND_MS,
    Interrupted,
    Result,
    Scenario,
    Settings,
    module,
    result_of,
    start_test,
)
from resnet34_npu.perf.sut import CardLog, SampleLibrary, SystemUnderTest
from resnet34_npu.targets import devices
from resnet34_npu.targets.runners import Runner, build_runner
from resnet34_npu.targets.spec import CustomSpec, TargetSpec, parse_target

#: MLPerf's p99 bound for ResNet50 in the Server scenario (ms): the default bound.
#: Offline: LoadGen is told this much more than the warm-up's rate, so its one query lasts the
#: min duration even when the warm-up ran faster than the system under load.
OFFLINE_HEADROOM = 1.25
#: Server: the bisection stops when the passing and failing QPS are this close (relative).
SERVER_PRECISION = 0.05


@dataclass(frozen=True)
class Options:
    """What the user asked of a measurement (the CLI's and pytest's options)."""

    scenario: Scenario
    duration_s: float = 10.0
    min_queries: int | None = None
    batch_size: int | None = None
    target_qps: float | None = None
    latency_bound_ms: float = SERVER_BOUND_MS
    server_tries: int = 6
    compliance: bool = True
    compliance_duration_s: float = 1.0
    compliance_queries: int = 32
    warmup: int = 3

    @property
    def batch(self) -> int:
        return self.batch_size or self.scenario.batch_size

    @property
    def queries(self) -> int:
        return self.scenario.min_queries if self.min_queries is None else self.min_queries


@dataclass
class Measurement:
    """A target's LoadGen measurement (``to_dict`` is the report's ``loadgen`` object)."""

    scenario: str
    result: Result | None = None
    cards: list[CardLog] = field(default_factory=list)
    tries: list[dict[str, Any]] = field(default_factory=list)
    test01: compliance.Test01 | None = None
    test04: compliance.Test04 | None = None
    accuracy: compliance.Accuracy | None = None
    limit: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    batch_size: int = 1
    overhead: dict[str, Any] | None = None
    interrupted: bool = False
    #: the settings of a second performance run, when the first ended before its min duration
    calibrated: dict[str, float] | None = None

    @property
    def failures(self) -> list[str]:
        lines = []
        if self.interrupted:
            lines.append("interrupted before the measurement finished")
        if self.result is not None and not self.result.valid:
            lines += [f"LoadGen {self.scenario}: INVALID: {r}" for r in self.result.reasons] or [
                f"LoadGen {self.scenario}: INVALID"
            ]
        lines += [f"target raised: {e}" for e in self.errors[:3]]
        if self.tries and not any(t["valid"] for t in self.tries):
            lines.append(f"Server: none of {len(self.tries)} QPS tried met the p99 bound with a VALID run")
        for check in (self.test01, self.test04, self.accuracy):
            if check is not None and not check.passed:
                lines.append(check.line)
        return lines

    @property
    def passed(self) -> bool:
        return self.result is not None and not self.failures

    def to_dict(self) -> dict[str, Any]:
        body = self.result.to_dict() if self.result is not None else {"scenario": self.scenario, "valid": False}
        return {
            **body,
            "verdict": "pass" if self.passed else "fail",
            "failures": self.failures,
            "batch_size": self.batch_size,
            "cards": [c.to_dict() for c in self.cards],
            "server_tries": self.tries or None,
            "compliance": {
                "TEST01": None if self.test01 is None else self.test01.to_dict(),
                "TEST04": None if self.test04 is None else self.test04.to_dict(),
            },
            "accuracy": None if self.accuracy is None else self.accuracy.to_dict(),
            "limit": self.limit,
            "overhead": self.overhead,
            "calibrated_rerun": self.calibrated,
            "interrupted": self.interrupted,
        }


def samples_per_second(result: Result) -> float | None:
    """The result's rate of samples: Offline and Server state it; the stream scenarios from the
    mean latency of a query."""
    if result.scenario in ("Offline", "Server"):
        return result.value
    mean = result.percentiles_ms.get("mean")
    per_query = SCENARIOS[result.scenario].samples_per_query or 1
    return None if not mean else per_query * 1000.0 / mean


class Bench:
    """Runs LoadGen for one system under test (``runners``: one, or every card) on ``library``."""

    def __init__(
        self,
        runners: Sequence[Runner],
        library: SampleLibrary,
        options: Options,
        folder: Path,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.lg = module()
        self.runners = list(runners)
        self.library = library
        self.options = options
        self.folder = folder
        self.say = say
        self.batch_time_s = 0.0

    def warm(self) -> None:
        """Untimed calls at the batch size on every card; the last one's time estimates the
        expected QPS and latency LoadGen is told (Offline sizes its one query from it)."""
        batch = self.library.batch(list(range(min(len(self.library), self.options.batch))), self.options.batch)
        times = []
        for runner in self.runners:
            for _ in range(max(1, self.options.warmup)):
                begin = time.perf_counter()
                runner.run(batch)
                times.append(time.perf_counter() - begin)
        self.batch_time_s = min(times)

    @property
    def capacity(self) -> float:
        """Samples a second every card together manages, from the warm-up."""
        return len(self.runners) * self.options.batch / max(self.batch_time_s, 1e-6)

    def run(self, phase: str, settings: Settings, *, keep_logits: bool = False) -> tuple[Result, SystemUnderTest]:
        scenario = SCENARIOS[settings.scenario]
        sut = SystemUnderTest(
            self.runners, self.library, self.options.batch, coalesce=scenario.name == "Server", keep_logits=keep_logits
        )
        lg = self.lg
        handle = lg.ConstructSUT(sut.issue, sut.flush)
        qsl = lg.ConstructQSL(len(self.library), len(self.library), lambda _i: None, lambda _i: None)
        sut.start(lg)
        try:
            start_test(lg, handle, qsl, settings, self.folder / phase, abort=sut.abort)
        finally:
            sut.stop()
            lg.DestroyQSL(qsl)
            lg.DestroySUT(handle)
        return result_of(self.folder / phase, scenario, settings), sut

    def settings(self, **changes: Any) -> Settings:
        o, s = self.options, self.options.scenario
        values: dict[str, Any] = {
            "scenario": s.name,
            "min_duration_s": o.duration_s,
            "min_queries": o.queries,
            "samples": len(self.library),
            # a twentieth of the warm-up's latency: LoadGen pre-generates more queries than the run
            # needs and stops issuing once the duration and count are met (too few is INVALID; a
            # warm-up on a busy host can be several times slower than the run)
            "expected_latency_ms": self.batch_time_s * 50.0 if s.name != "Offline" else None,
        }
        if s.name == "Offline":  # one query sized to outlast the duration at the warm-up's rate
            values["expected_qps"] = self.capacity * OFFLINE_HEADROOM
        if s.name == "Server":
            values["latency_bound_ms"] = o.latency_bound_ms
            values["target_qps"] = o.target_qps or self.capacity
        values.update(changes)
        return Settings(**values)

    def measure(self, reference: Runner | None = None) -> Measurement:
        o = self.options
        out = Measurement(o.scenario.name, batch_size=o.batch)
        try:
            self._measure(out, reference)
        except (Interrupted, KeyboardInterrupt):  # Ctrl-C: what completed is kept
            out.interrupted = True
        return out

    def _measure(self, out: Measurement, reference: Runner | None) -> None:
        o, name = self.options, self.options.scenario.name
        self.say(f"{name}: warm-up ({o.warmup} calls of batch {o.batch} a card)")
        self.warm()
        self.say(f"{name}: accuracy run ({len(self.library)} samples)")
        accuracy, acc_sut = self.run("accuracy", self.settings(mode="AccuracyOnly"), keep_logits=True)
        out.errors += acc_sut.errors
        if name == "Server" and o.target_qps is None:
            result, sut = self.server_search(out)
        else:
            self.say(f"{name}: performance run (min {o.duration_s:g} s, min {o.queries} queries)")
            result, sut = self.run("performance", self.settings())
            if not result.valid and result.extra.get("min_duration_met") is False:
                # LoadGen sized the run from the warm-up's rate and it ran faster: as submitters do,
                # once more with the rate this run measured
                changes = self.calibrated(result)
                self.say(f"{name}: the run ended before its min duration; once more calibrated ({changes})")
                out.calibrated = changes
                result, sut = self.run("performance", self.settings(**changes))
        out.result, out.cards = result, sut.cards
        out.errors += sut.errors
        rate = samples_per_second(result)
        device = getattr(self.runners[0], "device", None)
        device_name = self.runners[0].describe().get("device_name", "custom") if device is not None else "custom"
        out.limit = peak.limit(device_name, self.runners[0].precision, rate, len(self.runners))
        busy = max(c.busy_s for c in sut.cards) if sut.cards else 0.0
        out.overhead = {"sut_busy_s": busy, "duration_s": result.duration_s}
        if o.compliance:
            out.test01 = compliance.test01(acc_sut.outputs.digests, sut.outputs.digests, self.library.names)
            out.test04 = self.test04()
        if reference is not None and acc_sut.outputs.logits and not acc_sut.errors:
            out.accuracy = self.check_accuracy(acc_sut, reference)

    def calibrated(self, result: Result) -> dict[str, float]:
        """Settings from a run's own rate: Offline's expected QPS, the stream scenarios' expected latency."""
        if result.scenario == "Offline" and result.value:
            return {"expected_qps": result.value * OFFLINE_HEADROOM}
        fastest = result.percentiles_ms.get("min") or self.batch_time_s * 1000.0
        return {"expected_latency_ms": fastest / 20.0}

    def check_accuracy(self, acc_sut: SystemUnderTest, reference: Runner) -> compliance.Accuracy:
        indices = sorted(acc_sut.outputs.logits)
        target = np.stack([acc_sut.outputs.logits[i] for i in indices])
        rows = []
        for start in range(0, len(indices), self.options.batch):
            chunk = indices[start : start + self.options.batch]
            rows.append(reference.run(self.library.batch(chunk, len(chunk))).numpy())
        labels = tuple(self.library.labels[i] for i in indices)
        return compliance.accuracy(target, np.concatenate(rows), labels)

    def test04(self) -> compliance.Test04:
        """TEST04 in the scenario's own settings, shortened: distinct samples, then one sample repeated."""
        o, name = self.options, self.options.scenario.name
        short = {"min_duration_s": o.compliance_duration_s, "min_queries": min(o.queries, o.compliance_queries)}
        if name == "Server":
            short["target_qps"] = (o.target_qps or self.capacity) / 2
        figures = []
        # distinct samples before and after the repeated one, the faster of the two kept: a host
        # that slows down or speeds up during the test cannot make a repeated sample look cached
        for phase, same in (("TEST04-unique", False), ("TEST04-same", True), ("TEST04-unique-after", False)):
            self.say(f"{name}: {phase}")
            result, _ = self.run(phase, self.settings(issue_same=same, **short))
            figures.append(result.value if name == "Offline" else result.percentiles_ms.get("p50"))
        unique = [f for f in (figures[0], figures[2]) if f]
        best = (max(unique) if name == "Offline" else min(unique)) if unique else None
        return compliance.test04(best, figures[1], throughput=name == "Offline")

    def server_search(self, out: Measurement) -> tuple[Result, SystemUnderTest]:
        """The highest QPS whose run is VALID (p99 within the bound), by bisection from the
        warm-up's capacity: up while tries pass, then halving the gap between the best passing
        and the lowest failing QPS, at most ``server_tries`` runs; every try is listed."""
        o = self.options
        low, high = 0.0, None
        qps = self.capacity
        best: tuple[Result, SystemUnderTest] | None = None
        last: tuple[Result, SystemUnderTest] | None = None
        for attempt in range(o.server_tries):
            self.say(f"Server: try {attempt + 1} at {qps:.4g} QPS (p99 bound {o.latency_bound_ms:g} ms)")
            last = self.run(f"server-try-{attempt + 1}", self.settings(target_qps=qps))
            result = last[0]
            out.tries.append(
                {
                    "target_qps": qps,
                    "valid": result.valid,
                    "p99_ms": result.percentiles_ms.get("p99"),
                    "scheduled_samples_per_s": result.value,
                    "reasons": list(result.reasons),
                }
            )
            if result.valid:
                low, best = qps, last
            else:
                high = qps
            if high is not None and low > 0 and (high - low) / high <= SERVER_PRECISION:
                break
            qps = qps * 2 if high is None else ((low + high) / 2 if low > 0 else qps / 2)
        assert last is not None
        return best if best is not None else last


def system(spec: str, model: Any, *, every_card: bool = False) -> list[Runner]:
    """The runners of one system under test: the target, or with ``every_card`` the same target
    on every visible card of its device kind (``npu`` on an 8-card host: npu:0 .. npu:7)."""
    parsed = parse_target(spec)
    if not every_card or isinstance(parsed, CustomSpec):
        return [build_runner(parsed, model)]
    kind = devices.parse_device(parsed.device)[0]
    if kind == "auto":
        kind = devices.resolve_device("auto").type
    status = devices.probe(kind)
    if not status.available:
        raise InputError(f"target {spec!r}: device {kind!r} is not available: {status.reason}")
    count = status.count if devices.KINDS[kind].indexed else 1
    return [
        build_runner(parsed.on(f"{kind}:{i}" if devices.KINDS[kind].indexed else kind), model) for i in range(count)
    ]


def system_name(runners: Sequence[Runner]) -> str:
    """The system's name in reports: the target's, or ``NAME x N cards`` over several."""
    if len(runners) == 1:
        return runners[0].name
    spec = getattr(runners[0], "spec", None)
    base = spec.on(spec.kind).name if isinstance(spec, TargetSpec) else runners[0].name
    return f"{base} x{len(runners)} cards"
