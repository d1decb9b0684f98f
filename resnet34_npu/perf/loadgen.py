"""MLPerf LoadGen, the real one (``mlcommons-loadgen``, module ``mlperf_loadgen``): its import, the
scenarios as data, the settings of a run, and its result read back from LoadGen's own detail log.

The result is what LoadGen wrote, never recomputed: ``result_validity`` (VALID / INVALID) and the
rules behind it, the scenario's metric, the early-stopping estimate and the percentiles. Nothing
here times anything; LoadGen does.
"""

from __future__ import annotations

import importlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from resnet34_npu.core.errors import InputError, show

#: What a host without LoadGen is told (one line, exit 2).
#: MLPerf's Server latency bound for ResNet50 (loadgen/mlperf.conf), the default one here.
SERVER_BOUND_MS = 15.0
INSTALL_HINT = "MLPerf LoadGen is not installed: pip install mlcommons-loadgen (the module mlperf_loadgen)"
MS = 1e-6  # LoadGen logs nanoseconds


def module() -> Any:
    """``mlperf_loadgen``, or one :class:`InputError` line saying how to install it."""
    try:
        return importlib.import_module("mlperf_loadgen")
    except ImportError:
        raise InputError(INSTALL_HINT) from None


@dataclass(frozen=True)
class Scenario:
    """One LoadGen scenario as MLPerf Inference states it (``loadgen/mlperf.conf``,
    ``early_stopping.cc``): its metric, the percentile its latency is judged at, the samples a
    query, and this suite's defaults (the batch the system under test runs, the queries a run
    needs at least: early stopping's minimum for the percentile)."""

    name: str
    metric: str
    unit: str
    percentile: float | None
    samples_per_query: int | None
    batch_size: int
    min_queries: int
    help: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "SingleStream",
            "early-stopping p90 latency",
            "ms",
            0.90,
            1,
            1,
            64,
            "one query of one sample at a time; p90 latency (early stopping needs >= 64 queries)",
        ),
        Scenario(
            "MultiStream",
            "early-stopping p99 latency per query",
            "ms",
            0.99,
            8,
            8,
            662,
            "one query of 8 samples at a time; p99 latency per query (early stopping needs >= 662 queries)",
        ),
        Scenario(
            "Offline",
            "samples per second",
            "samples/s",
            None,
            None,
            16,
            1,
            "one query of every sample; throughput (submissions need >= 24,576 samples)",
        ),
        Scenario(
            "Server",
            "scheduled samples per second",
            "samples/s",
            0.99,
            1,
            1,
            500,
            "Poisson arrivals at a target QPS; valid when the p99 latency meets the bound",
        ),
    )
}


def parse_scenario(text: str) -> Scenario:
    """The scenario named ``text`` (case-insensitive), or one line listing the choices."""
    for name, scenario in SCENARIOS.items():
        if text.lower() == name.lower():
            return scenario
    raise InputError(f"Unknown scenario {text!r}. Choose one of: {', '.join(SCENARIOS)}.")


@dataclass(frozen=True)
class Settings:
    """What a LoadGen run is asked for (``TestSettings``); ``to_dict`` is what the report keeps."""

    scenario: str
    mode: str = "PerformanceOnly"
    min_duration_s: float = 10.0
    min_queries: int = 1
    max_queries: int = 0
    samples: int = 0
    expected_qps: float | None = None
    target_qps: float | None = None
    latency_bound_ms: float | None = None
    expected_latency_ms: float | None = None
    issue_same: bool = False
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def test_settings(self, lg: Any) -> Any:
        ts = lg.TestSettings()
        ts.scenario = getattr(lg.TestScenario, self.scenario)
        ts.mode = getattr(lg.TestMode, self.mode)
        ts.min_duration_ms = max(1, round(self.min_duration_s * 1000))
        ts.min_query_count = self.min_queries
        ts.max_query_count = self.max_queries
        if self.samples:
            ts.performance_sample_count_override = self.samples
        if self.expected_qps:
            ts.offline_expected_qps = self.expected_qps
        if self.expected_latency_ms:
            ns = max(1, round(self.expected_latency_ms * 1e6))
            ts.single_stream_expected_latency_ns = ns
            ts.multi_stream_expected_latency_ns = ns
        if self.target_qps:
            ts.server_target_qps = self.target_qps
        if self.latency_bound_ms:
            ts.server_target_latency_ns = max(1, round(self.latency_bound_ms * 1e6))
        if self.issue_same:  # TEST04: every query the same sample (index 0)
            ts.performance_issue_same = True
            ts.performance_issue_same_index = 0
        else:
            ts.performance_issue_unique = False
        ts.qsl_rng_seed = ts.sample_index_rng_seed = ts.schedule_rng_seed = self.seed
        return ts


PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")


@dataclass(frozen=True)
class Result:
    """A LoadGen run as its detail log states it (``mlperf_log_detail.txt``)."""

    scenario: str
    mode: str
    validity: str
    reasons: tuple[str, ...]
    metric: str
    unit: str
    value: float | None
    early_stopping: dict[str, Any]
    percentiles_ms: dict[str, float]
    query_count: int
    sample_count: int
    duration_s: float
    settings: dict[str, Any]
    logs: dict[str, str]
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.validity == "VALID"

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "mode": self.mode,
            "valid": self.valid,
            "validity": self.validity,
            "reasons": list(self.reasons),
            "metric": {"name": self.metric, "value": self.value, "unit": self.unit},
            "early_stopping": self.early_stopping,
            "percentiles_ms": self.percentiles_ms,
            "query_count": self.query_count,
            "sample_count": self.sample_count,
            "duration_s": self.duration_s,
            "settings": self.settings,
            "logs": self.logs,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            **self.extra,
        }


def read_detail(path: Path) -> tuple[dict[str, Any], list[str], list[str]]:
    """The ``:::MLLOG`` records of a detail log by key (the last of each), and its errors and warnings."""
    values: dict[str, Any] = {}
    errors, warnings = [], []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"LoadGen detail log {show(path)}: cannot be read ({exc.strerror})") from None
    for line in lines:
        if not line.startswith(":::MLLOG "):
            continue
        try:
            record = json.loads(line[len(":::MLLOG ") :])
        except ValueError:
            continue
        values[record.get("key")] = record.get("value")
        meta = record.get("metadata") or {}
        if meta.get("is_error"):
            errors.append(f"{record.get('key')}: {record.get('value')}")
        elif meta.get("is_warning"):
            warnings.append(f"{record.get('key')}: {record.get('value')}")
    return values, errors, warnings


def _ms(value: Any) -> float | None:
    return None if not isinstance(value, (int, float)) else float(value) * MS


def result_of(folder: Path, scenario: Scenario, settings: Settings) -> Result:
    """The run logged in ``folder``: validity and the reasons (each rule LoadGen checked that
    failed, and its stated reason), the metric, early stopping, percentiles."""
    values, errors, warnings = read_detail(folder / "mlperf_log_detail.txt")
    validity = str(values.get("result_validity", "INVALID" if settings.mode == "PerformanceOnly" else "-"))
    reasons = []
    checks = (
        ("result_min_duration_met", f"min duration not met ({settings.min_duration_s:g} s)"),
        ("result_min_queries_met", f"min queries not met ({settings.min_queries})"),
        ("result_perf_constraints_met", f"performance constraints not met (p99 above {settings.latency_bound_ms} ms)"),
        ("early_stopping_met", "early stopping not met"),
    )
    for key, line in checks:
        if values.get(key) is False:
            reasons.append(line)
    text = " ".join(str(values.get("early_stopping_result") or "").split())
    if values.get("early_stopping_met") is False and text:
        reasons[-1] += f": {text}"
    invalid = str(values.get("result_invalid_reason") or "").strip()
    if invalid:
        reasons.append(invalid)
    if validity != "VALID" and not reasons and settings.mode == "PerformanceOnly":
        reasons.append("LoadGen stated INVALID without a reason in its detail log")
    reasons += [f"LoadGen error: {e}" for e in errors]
    per_query = scenario.name == "MultiStream"
    percentiles = {
        f"p{p.rstrip('0').rstrip('.')}": _ms(
            values.get(
                f"result_{p}_percentile_per_query_latency_ns" if per_query else f"result_{p}_percentile_latency_ns"
            )
        )
        for p in PERCENTILES
    }
    percentiles = {k: v for k, v in percentiles.items() if v is not None}
    for key in ("min", "max", "mean"):
        value = _ms(values.get(f"result_{key}_query_latency_ns" if per_query else f"result_{key}_latency_ns"))
        if value is not None:
            percentiles[key] = value
    estimate_key = {"SingleStream": "early_stopping_latency_ss", "MultiStream": "early_stopping_latency_ms"}
    estimate = _ms(values.get(estimate_key.get(scenario.name, "")))
    early = {
        "met": values.get("early_stopping_met"),
        "estimate_ms": estimate if estimate else None,
        "percentile": scenario.percentile,
        "text": text,
    }
    queries = int(values.get("result_query_count") or 0)
    samples_per_query = int(values.get("generated_samples_per_query") or 1)
    if scenario.name == "Offline":
        value = values.get("result_samples_per_second")
    elif scenario.name == "Server":
        value = values.get("result_scheduled_samples_per_sec")
    else:
        value = early["estimate_ms"]
    extra: dict[str, Any] = {"min_duration_met": values.get("result_min_duration_met")}
    if scenario.name == "Server":
        extra |= {
            "completed_samples_per_s": values.get("result_completed_samples_per_sec"),
            "overlatency_queries": values.get("result_overlatency_query_count"),
            "latency_bound_ms": settings.latency_bound_ms,
            "target_qps": settings.target_qps,
        }
    if "result_qps_with_loadgen_overhead" in values:
        extra["qps_with_loadgen_overhead"] = values["result_qps_with_loadgen_overhead"]
        extra["qps_without_loadgen_overhead"] = values.get("result_qps_without_loadgen_overhead")
    return Result(
        scenario=scenario.name,
        mode=settings.mode,
        validity=validity,
        reasons=tuple(reasons) if validity != "VALID" else tuple(f"LoadGen error: {e}" for e in errors),
        metric=scenario.metric,
        unit=scenario.unit,
        value=None if value is None else float(value),
        early_stopping=early,
        percentiles_ms=percentiles,
        query_count=queries,
        sample_count=queries * samples_per_query,
        duration_s=_duration(scenario, values, queries * samples_per_query),
        settings=settings.to_dict(),
        logs={name: str(folder / f"mlperf_log_{name}.txt") for name in ("summary", "detail")},
        errors=tuple(errors),
        warnings=tuple(warnings),
        extra=extra,
    )


def _duration(scenario: Scenario, values: dict[str, Any], samples: int) -> float:
    """The performance run's length, from LoadGen's own rates (samples over samples a second)."""
    key = {
        "Offline": "result_samples_per_second",
        "Server": "result_completed_samples_per_sec",
    }.get(scenario.name, "result_qps_with_loadgen_overhead")
    rate = values.get(key)
    mean = values.get("result_mean_query_latency_ns")
    if scenario.name == "MultiStream" and isinstance(mean, (int, float)):  # queries one after another
        return samples / int(values.get("generated_samples_per_query") or 1) * mean * 1e-9
    if not isinstance(rate, (int, float)) or rate <= 0:
        return 0.0
    per_query = 1 if scenario.name in ("Offline", "Server") else int(values.get("generated_samples_per_query") or 1)
    return samples / per_query / rate if per_query > 1 else samples / rate


class Interrupted(Exception):
    """Ctrl-C during a LoadGen run: what completed before it is kept."""


def start_test(
    lg: Any,
    sut: Any,
    qsl: Any,
    settings: Settings,
    folder: Path,
    *,
    abort: Callable[[], None],
) -> None:
    """Run LoadGen's ``StartTestWithLogSettings`` with its logs in ``folder``. It runs on a
    thread of its own so that Ctrl-C reaches the main thread at once: ``abort()`` then makes
    the system under test answer every query empty, LoadGen finishes, and :class:`Interrupted`
    is raised."""
    folder.mkdir(parents=True, exist_ok=True)
    logs = lg.LogSettings()
    logs.log_output.outdir = str(folder)
    logs.log_output.copy_summary_to_stdout = False
    logs.enable_trace = False
    failure: list[BaseException] = []

    def run() -> None:
        try:
            lg.StartTestWithLogSettings(sut, qsl, settings.test_settings(lg), logs)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="loadgen", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        abort()
        thread.join(30.0)
        raise Interrupted("interrupted during a LoadGen run") from None
    if failure:
        raise failure[0]
