"""The comparison engine: the model card's compare_cpu_npu.py, for any targets.

A :class:`Session` holds what every comparison of one run shares: the model and its weights,
the reference target, the preprocessed images, and the reference's (and optionally the
float64 truth's) logits, each computed once and reused, so every extra target costs only its
own forward passes. ``compare`` and the pytest plugin both go through it.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resnet34_npu.core.errors import InputError, Terminated, blocking_threads
from resnet34_npu.judge.consistency import Policy, RunToRun, policy_for, run_to_run
from resnet34_npu.judge.criteria import (
    DEFAULT_PROFILE,
    Finding,
    Profile,
    Status,
    Verdict,
    get_profile,
    judge,
    worst_status,
)
from resnet34_npu.judge.localize import Localization, capture, localize
from resnet34_npu.judge.metrics import Comparison, compare_logits, rel_l2, worst_of
from resnet34_npu.model.images import load_image
from resnet34_npu.model.network import build_model_with_info
from resnet34_npu.model.preprocess import preprocess
from resnet34_npu.model.weights import WeightsInfo
from resnet34_npu.targets import determinism, emulation, engines, watchdog
from resnet34_npu.targets.runners import CustomRunner, ModelRunner, Runner, build_runner
from resnet34_npu.targets.spec import CustomSpec, TargetSpec, parse_target
from resnet34_npu.targets.timing import (
    DEFAULT_ITERS,
    DEFAULT_WARMUP,
    Timing,
    digest,
    p90_note,
    speedup,
    speedup_interval,
    speedup_text,
    time_interleaved,
)


@dataclass(frozen=True)
class CaseResult:
    """One target on one batch of images (batch 1 = one image): its verdict and metrics."""

    images: tuple[str, ...]
    verdict: Verdict
    comparison: Comparison
    truth: dict[str, float] = field(default_factory=dict)
    localization: Localization | None = None
    paths: tuple[str, ...] = ()
    #: What the target's code raised, when it did (the case then fails with it).
    error: str = ""
    #: A failing compiled, graph, exported or ONNX Runtime target: its eager twin's verdict
    #: and the layer blamed (``device`` or the execution mode).
    blame: dict[str, Any] | None = None
    #: the compared logits' digest (card-to-card), and at batch 1 the logits (to count ulps)
    output_digest: str = ""
    output: Any = field(default=None, compare=False, repr=False)

    @property
    def image(self) -> str:
        return "+".join(self.images)

    def metrics(self) -> dict[str, float]:
        """The case's metrics; none for a case whose target raised (it computed nothing to measure)."""
        return {} if self.error else {**self.comparison.metrics(), **self.truth}

    def to_dict(self) -> dict[str, Any]:
        detail = self.comparison.to_dict()
        return {
            "image": self.image,
            "paths": list(self.paths),
            "batch_size": len(self.images),
            "verdict": self.verdict.status.value,
            "failures": list(self.verdict.failure_lines),
            "warnings": list(self.verdict.warning_lines),
            "findings": self.verdict.findings_dict(),
            "metrics": self.metrics(),
            "worst_abs": None if self.error else detail["worst_abs"],
            "worst_rel": None if self.error else detail["worst_rel"],
            "first_nonfinite": None if self.error else detail["first_nonfinite"],
            # a target that raised computed nothing: no target top-5 (NaN logits would rank a made-up class)
            "samples": [{"reference_top5": x["reference_top5"]} for x in detail["samples"]]
            if self.error
            else detail["samples"],
            "localization": None if self.localization is None else self.localization.to_dict(),
            "error": self.error or None,
            "blame": self.blame,
        }


@dataclass(frozen=True)
class TargetResult:
    """One target over all images: identity, precision, verdict, latency and every case."""

    name: str
    device: str
    device_name: str
    dtype: str
    mode: str
    effective_precision: str
    precision_reason: str
    precision_settings: dict[str, Any]
    cases: tuple[CaseResult, ...]
    latency: Timing | None
    speedup_vs_reference: float | None
    #: The execution mode's engine (compile, graph, export, ONNX Runtime): its build time and
    #: backend; None for eager and custom targets.
    engine: dict[str, Any] | None = None
    #: the timed runs' outputs compared bit for bit (None when untimed)
    run_to_run: RunToRun | None = None
    #: the card hung, crashed or raised a device error while running this target
    card_failure: watchdog.CardFailure | None = None
    #: the speedup's 95 % interval (paired bootstrap over interleaved rounds; None when untimed)
    speedup_interval: tuple[float, float] | None = None

    @property
    def speedup_text(self) -> str:
        """``about 1x`` when the interval holds 1, else the speedup and its interval."""
        return speedup_text(self.speedup_vs_reference, self.speedup_interval)

    @property
    def verdict(self) -> Status:
        repeat = [Status.FAIL] if self.run_to_run is not None and not self.run_to_run.passed else []
        return worst_status([c.verdict.status for c in self.cases] + repeat)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device": self.device,
            "device_name": self.device_name,
            "dtype": self.dtype,
            "mode": self.mode,
            "effective_precision": self.effective_precision,
            "precision_reason": self.precision_reason,
            "precision_settings": self.precision_settings,
            "engine": self.engine,
            "verdict": self.verdict.value,
            "latency_ms": None if self.latency is None else self.latency.to_dict(),
            "throughput_ips": None if self.latency is None else self.latency.throughput_ips,
            "speedup_vs_reference": self.speedup_vs_reference,
            "speedup_interval_95": None if self.speedup_interval is None else list(self.speedup_interval),
            "speedup_text": self.speedup_text,
            "p90_note": None if self.latency is None else (p90_note(self.latency) or None),
            "images": [c.to_dict() for c in self.cases],
            "run_to_run": None if self.run_to_run is None else self.run_to_run.to_dict(),
            "card_failure": None if self.card_failure is None else self.card_failure.to_dict(),
        }


def _clocked(runner: Runner, batch: torch.Tensor) -> tuple[Any, torch.device, Any]:
    """``(call, clock device, synchronize)`` of ``runner`` as its own ``time`` times it."""
    if isinstance(runner, ModelRunner):
        return runner.timed_call(batch), runner.placement.torch_device, None
    return runner.timed_call(batch), torch.device("cpu"), runner.synchronize


def run_policy(runner: Runner) -> Policy:
    """The run-to-run policy of ``runner`` under the determinism settings in force."""
    emulated = emulation.active() is not None
    device = runner.device.type if isinstance(runner, ModelRunner) else "custom"
    return policy_for(
        device, determinism.recorded(), determinism.problems(), emulated=emulated, custom=device == "custom"
    )


#: The dtype a target computes its logits in, by its spec's dtype (its float32 logits came from it).
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def saturated_as_inf(logits: torch.Tensor, dtype: str = "fp32") -> torch.Tensor:
    """A card in saturation mode (CANN's float overflow mode; the only one of the 910A family)
    writes +-max of the dtype where the result overflowed: such a value (in the dtype the target
    computed in, ``fp16`` / ``bf16`` / else fp32) is judged as the Inf it stands for, so that "no
    NaN or Inf" still fires there."""
    big = torch.finfo(_DTYPES.get(dtype.split("-")[0], torch.float32)).max
    return torch.where(logits.abs() >= big, torch.sign(logits) * torch.inf, logits)


class LeftThreads(Exception):
    """A target left non-daemon threads running after its runs."""


def left_threads_line(names: Sequence[str]) -> str:
    """What a target that left non-daemon threads running is told (after its name)."""
    return f"left {len(names)} non-daemon thread(s) running after its runs: {', '.join(names)}"


def is_target_error(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a target's own code, is only that target's failure: anything
    (SystemExit included: a target that calls sys.exit() fails) but Ctrl-C, SIGTERM or a
    generator's close, which stop the run, and a backend this host cannot run (a skip)."""
    return not isinstance(exc, (KeyboardInterrupt, GeneratorExit, Terminated, engines.BackendUnavailable))


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # an exception whose __str__ raises
        return "(its message could not be read)"


#: What every Session of this process shares (tests build many): preprocessed images, and the
#: reference's and the float64 truth's logits, keyed by everything that decides them (the
#: weights' tensor digest, the reference target, CPU threads, each image file's identity).
_SHARED: dict[tuple[Any, ...], torch.Tensor] = {}


def _image_key(image: str | Path) -> tuple[Any, ...]:
    path = Path(image).resolve()
    try:
        stat = path.stat()
    except OSError:
        return (str(path),)
    return (str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_dev)


def truth_metrics(truth: torch.Tensor, reference: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """Each side's error against the float64 ``truth`` (the worst sample's relative L2) and
    their ratio: how much further from the truth the target is than the reference."""

    def worst_rel_l2(x: torch.Tensor) -> float:
        diff = x.double() - truth
        return worst_of([rel_l2(diff[i], truth[i]) for i in range(truth.shape[0])])

    target_error = worst_rel_l2(logits)
    reference_error = worst_rel_l2(reference)
    if reference_error == 0.0:
        ratio = 1.0 if target_error == 0.0 else float("inf")
    else:
        ratio = target_error / reference_error
    return {
        "truth_rel_l2_error": target_error,
        "reference_truth_rel_l2_error": reference_error,
        "error_ratio_vs_cpu": ratio,
    }


class Session:
    """Shared state of one comparison run; see the module docstring."""

    def __init__(
        self,
        weights: str = "seeded",
        reference: str = "cpu",
        *,
        fp64_truth: bool = False,
        profile: str | Profile = DEFAULT_PROFILE,
    ) -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        if isinstance(parse_target(reference), CustomSpec):
            raise InputError(
                f"reference {reference!r}: the reference must be a built-in target (e.g. cpu), "
                "not a custom one; compare custom targets against it with --target"
            )
        self.model, self.weights_info = build_model_with_info(weights)
        self.reference = build_runner(reference, self.model)
        self.fp64_truth = fp64_truth
        self._truth_model: torch.nn.Module | None = None
        self._reference_timing: dict[int, Timing] = {}
        self._stages: tuple[tuple[Any, ...], dict[str, torch.Tensor]] | None = None
        self._twins: dict[Any, tuple[Runner, Runner | None]] = {}
        #: per failing target (its runner, kept in ``_twins``... or alive in the caller): blame, localization, lines
        self._localized: dict[int, tuple[Any, Any, tuple[str, ...]]] = {}
        self._threads_of: dict[int, set[threading.Thread]] = {}  # started by a target's factory
        self._used_cards: set[str | None] = set()  # cards a target was built on (the first use starts them)

    @property
    def weights(self) -> WeightsInfo:
        return self.weights_info

    def runner(self, spec: str) -> Runner:
        """A target (built-in or custom) running this session's model. The threads alive before
        it was built are remembered: those it starts, from its factory on, are its own."""
        before = set(threading.enumerate())
        parsed = parse_target(spec) if isinstance(spec, str) else spec
        # an eager target's build is a copy of the weights: a device call like any other; compiling,
        # capturing, exporting, a factory's own code, and a card's first use in this process (the
        # runtime starts it: context, streams) get the longer deadline of a build
        card = card_of(spec) if isinstance(spec, str) else None
        eager = isinstance(parsed, TargetSpec) and not parsed.execution and card in self._used_cards
        self._used_cards.add(card)
        with watchdog.device_call("copy to device" if eager else "build"):
            runner = build_runner(spec, self.model)
        self._threads_of[id(runner)] = set(threading.enumerate()) - before
        return runner

    def forget(self, runner: Runner) -> None:
        """Drop what this session keeps for ``runner`` (its eager twins, its localisation, its
        threads), so that a target whose tests are done frees its model copy."""
        for key in [k for k, (kept, _) in self._twins.items() if kept is runner]:
            del self._twins[key]
        self._localized.pop(id(runner), None)
        self._threads_of.pop(id(runner), None)

    def input(self, image: str | Path) -> torch.Tensor:
        """The preprocessed image [3, 224, 224], loaded once per process."""
        key = ("input", *_image_key(image))
        if key not in _SHARED:
            _SHARED[key] = preprocess(load_image(image))
        return _SHARED[key].clone()  # callers may edit what they get

    def batch(self, images: Sequence[str | Path]) -> torch.Tensor:
        return torch.stack([self.input(i) for i in images])

    def _key(self, what: str, images: Sequence[str | Path]) -> tuple[Any, ...]:
        return (
            what,
            self.weights_info.tensor_sha256,
            self.reference.name,
            repr(sorted(self.reference.describe()["precision_settings"].items())),
            torch.get_num_threads(),
            *(_image_key(i) for i in images),
        )

    def reference_logits(self, images: Sequence[str | Path]) -> torch.Tensor:
        """The reference's logits for the batch of ``images``, computed once per process."""
        key = self._key("reference", images)
        if key not in _SHARED:
            _SHARED[key] = self.reference.run(self.batch(images))
        return _SHARED[key].clone()  # callers may edit what they get

    def reference_stages(self, images: Sequence[str | Path]) -> dict[str, torch.Tensor]:
        """The reference's stage outputs for the batch of ``images``; the last batch's are kept
        (every control, every failing case of a run, localises the same image again)."""
        key = self._key("stages", images)
        if self._stages is None or self._stages[0] != key:
            self._stages = None  # free the old ones first: a batch of 8 holds hundreds of MB
            batch = self.batch(images)
            self._stages = (key, capture(self.reference.module, lambda: self.reference.run(batch)))
        return self._stages[1]

    def truth_logits(self, images: Sequence[str | Path]) -> torch.Tensor:
        """The same model in float64 on the CPU: the truth both sides are measured against."""
        key = self._key("truth", images)
        if key not in _SHARED:
            _SHARED[key] = self.truth_run(self.batch(images))
        return _SHARED[key].clone()  # callers may edit what they get

    def truth_run(self, batch: torch.Tensor) -> torch.Tensor:
        """The float64 truth's logits for a preprocessed ``batch``."""
        if self._truth_model is None:
            self._truth_model = copy.deepcopy(self.model).double().eval()
        with torch.inference_mode():
            return self._truth_model(batch.double())

    def truth_metrics(self, images: Sequence[str | Path], logits: torch.Tensor) -> dict[str, float]:
        return truth_metrics(self.truth_logits(images), self.reference_logits(images), logits)

    def compare(self, runner: Runner, images: Sequence[str | Path], logits: torch.Tensor | None = None) -> CaseResult:
        """Run ``runner`` on the batch of ``images`` (unless ``logits`` are given) and judge it
        against the reference with the session's profile."""
        if logits is None:
            try:
                logits = runner.run(self.batch(images))
            except BaseException as exc:
                if not is_target_error(exc):
                    raise
                return self.raised(runner, images, exc)
        computed = logits  # what the card gave: its digest is what card-to-card compares, in both doors
        settings = getattr(runner, "precision_settings", {}) or {}
        if settings.get("npu.overflow_mode") == "SATURATION":  # judged at the precision it computed in
            logits = saturated_as_inf(logits, runner.precision)
        comparison = compare_logits(self.reference_logits(images), logits, precision=runner.precision)
        truth = self.truth_metrics(images, logits) if self.fp64_truth else {}
        verdict = judge(comparison, self.profile, truth)
        localization = blame = None
        if not verdict.passed:
            # Localised once per target, on its first failing case: every later failing case of
            # the target says the same (a second localisation costs a stage-by-stage run each).
            if id(runner) not in self._localized:
                twin = self.twin(runner)
                if twin is None:
                    # A failure says where: the first stage that breaks the profile, when a module exists.
                    found = self.localize(runner, images)
                    self._localized[id(runner)] = (None, found, (found.finding(),))
                else:
                    # Who is to blame: the same computation run eagerly (and, for ONNX Runtime on a
                    # device, ONNX Runtime's CPU provider); localised on the eager twin where it fails.
                    self._localized[id(runner)] = self.blame(runner, twin, images)
            blame, localization, lines = self._localized[id(runner)]
            verdict = verdict.with_failures(*lines)
        return CaseResult(
            tuple(Path(i).name for i in images),
            verdict,
            comparison,
            truth,
            localization,
            tuple(map(str, images)),
            blame=blame,
            output_digest=digest(computed) or "",
            output=computed.detach().cpu().float().numpy() if computed.shape[0] == 1 else None,
        )

    def twin(self, runner: Runner) -> Runner | None:
        """The eager twin of a compiled, graph, exported or ONNX Runtime target (or of a custom
        target that is a ``torch.compile``d module: its ``_orig_mod``), built once."""
        if id(runner) not in self._twins:
            twin: Runner | None = None
            spec = runner.eager_twin() if isinstance(runner, ModelRunner) else None
            if spec is not None:
                twin = build_runner(spec, self.model)
            elif isinstance(runner, CustomRunner):
                twin = runner.eager_twin()
            self._twins[id(runner)] = (runner, twin)  # the runner is kept, so its id is not reused
        return self._twins[id(runner)][1]

    def blame(
        self, runner: Runner, twin: Runner, images: Sequence[str | Path]
    ) -> tuple[dict[str, Any], Localization, tuple[Finding, ...]]:
        """Compare the eager twin with the reference and say which layer broke (see
        :meth:`twin`): the blame record, the localisation and the failure findings."""
        mode = runner.spec.execution if isinstance(runner, ModelRunner) else "compile"
        engine = engines.get(mode)
        what = engine.what
        case = self.compare(twin, images)
        error = case.comparison.rel_l2_error
        record: dict[str, Any] = {"eager_twin": twin.name, "eager_verdict": case.verdict.status.value}
        if case.verdict.passed:
            record["blamed"] = mode
            lines = [
                Finding(
                    "blame",
                    f"blame: its eager twin {twin.name} passes (rel L2 {error:.3e}); only {what} fails: "
                    f"{engine.cause}, not the device's kernels",
                )
            ]
            localization = Localization(
                (),
                None,
                f"only {what} fails, and layer-wise localisation needs module hooks, which it has not; "
                f"its eager twin {twin.name} passes",
            )
            lines.append(localization.finding())
        else:
            record["blamed"] = "device"
            lines = [
                Finding(
                    "blame",
                    f"blame: its eager twin {twin.name} fails too (rel L2 {error:.3e}): the device's kernels or "
                    f"settings, not {what}",
                )
            ]
            localization = case.localization or self.localize(twin, images)
            lines.append(localization.finding(suffix=f" (localised on the eager twin {twin.name})"))
        cpu = self.twin_on_cpu(runner) if isinstance(runner, ModelRunner) else None
        if cpu is not None:
            cpu_case = self.compare(cpu, images)
            record[engine.cpu_twin_record] = cpu_case.verdict.status.value
            lines.append(Finding("blame", engine.cpu_twin_line(cpu.name, cpu_case.verdict.passed)))
        return record, localization, tuple(lines)

    def twin_on_cpu(self, runner: ModelRunner) -> Runner | None:
        """The twin of a target on its engine's CPU twin (``cpu_twin``: for ONNX Runtime on a
        device, ONNX Runtime's CPU provider on the same export), built once; None without one."""
        mode = runner.spec.execution
        modes = engines.get(mode).cpu_twin(runner.device.type, runner.spec.dtype) if mode else None
        if modes is None:
            return None
        key = ("cpu", id(runner))
        if key not in self._twins:
            self._twins[key] = (runner, build_runner(TargetSpec("cpu", runner.spec.dtype, modes), self.model))
        return self._twins[key][1]

    def raised(self, runner: Runner, images: Sequence[str | Path], exc: BaseException) -> CaseResult:
        """The case of a target whose code raised (SystemExit included): it fails, named, with
        the exception; it has no metrics and no target top-5 (its comparison, of logits that are
        all NaN, only keeps the reference's side)."""
        reference = self.reference_logits(images)
        comparison = compare_logits(reference, torch.full_like(reference, math.nan), precision=runner.precision)
        kind = "raised"
        if isinstance(exc, LeftThreads):
            line = f"target {runner.name!r} {exc}"
        elif watchdog.device_error(exc) is not None:  # out of memory, a device lost: the card fails
            kind = "device_error"
            stage = watchdog.stage_of(exc) or "forward"
            line = f"target {runner.name!r}: device error during {stage}: {watchdog.device_error(exc)}"
        else:
            text = _text(exc)
            line = f"target {runner.name!r} raised {type(exc).__name__}" + (f": {text}" if text else "")
        verdict = Verdict(Status.FAIL, (Finding(kind, line.splitlines()[0], stage=watchdog.stage_of(exc) or None),))
        names = tuple(Path(i).name for i in images)
        return CaseResult(names, verdict, comparison, paths=tuple(map(str, images)), error=line.splitlines()[0])

    def localize(self, runner: Runner, images: Sequence[str | Path]) -> Localization:
        """Stage-by-stage comparison of ``runner`` with the reference on ``images``."""
        batch = self.batch(images)
        return localize(
            lambda: self.reference_stages(images),
            runner.module,
            lambda: runner.run(batch),
            runner.precision,
            self.profile,
        )

    def reference_timing(self, batch_size: int, warmup: int, iters: int, image: str | Path) -> Timing:
        if batch_size not in self._reference_timing:
            self._reference_timing[batch_size] = self.reference.time(
                self.batch([image] * batch_size), warmup=warmup, iters=iters
            )
        return self._reference_timing[batch_size]

    def evaluate(
        self, runner: Runner, images: Sequence[str | Path], *, warmup: int = DEFAULT_WARMUP, iters: int = DEFAULT_ITERS
    ) -> TargetResult:
        """Every image at batch 1, then latency on the first image (``iters`` = 0: no timing).
        A target that leaves non-daemon threads running (they would keep the process from
        exiting) fails, with their names."""
        before = set(threading.enumerate())
        cases = tuple(self.compare(runner, [image]) for image in images)
        latency = reference = None
        if iters > 0 and not any(c.error for c in cases):  # a target that raised is not timed
            try:
                reference, latency = self.time_against_reference(runner, images[0], warmup, iters)
            except BaseException as exc:
                if not is_target_error(exc):
                    raise
                cases += (self.raised(runner, images[:1], exc),)
        own = (set(threading.enumerate()) - before) | self._threads_of.get(id(runner), set())
        left = blocking_threads(own)
        if left:
            cases += (self.raised(runner, images[:1], LeftThreads(left_threads_line(left))),)
        return TargetResult(
            **runner.describe(),
            cases=cases,
            latency=latency,
            speedup_vs_reference=speedup(reference, latency),
            run_to_run=None if latency is None else run_to_run(latency, run_policy(runner)),
            speedup_interval=speedup_interval(reference, latency),
        )

    def time_against_reference(
        self, runner: Runner, image: str | Path, warmup: int, iters: int
    ) -> tuple[Timing, Timing]:
        """The reference and ``runner`` timed in interleaved rounds on one image (ABAB...), so the
        speedup's interval holds the host's drift; the reference's timing is kept for the report."""
        batch = self.batch([image])
        calls = [_clocked(self.reference, batch), _clocked(runner, batch)]
        reference, latency = time_interleaved(calls, warmup=warmup, iters=iters, batch_size=1)
        self._reference_timing.setdefault(1, reference)
        return reference, latency


# --- a card's work, watched (see resnet34_npu.targets.watchdog) ----------------------------------


@dataclass(frozen=True)
class CardJob:
    """What one card runs: its targets on the images, and what a fresh session in a child process
    needs to judge them as the parent would (the parent's reference logits and timing, seeded)."""

    card: str
    specs: tuple[str, ...]
    images: tuple[str, ...]
    warmup: int
    iters: int
    weights: str = "seeded"
    reference: str = "cpu"
    fp64_truth: bool = False
    profile: str = DEFAULT_PROFILE
    seeds: tuple[tuple[tuple[Any, ...], torch.Tensor], ...] = ()
    reference_timing: tuple[tuple[int, Timing], ...] = ()


def card_of(spec: str) -> str:
    """The card a target runs on: ``npu:2`` for ``npu:2/fp16``; its own name for a custom target."""
    parsed = parse_target(spec)
    if isinstance(parsed, CustomSpec):
        return parsed.name
    device = parsed.device
    return f"{device}:0" if device in ("npu", "cuda", "xpu", "mps") else device


def run_card(send: Any, job: CardJob, session: Session | None = None) -> None:
    """Build and evaluate each of ``job``'s targets, sending ``("target", spec)`` before each,
    ``("result", spec, TargetResult)`` after it and ``("missing", spec, reason)`` for one whose
    engine cannot be built here. A device error stops the card (:class:`watchdog.DeviceError`)."""
    if session is None:  # a child process: a session of its own, seeded with the parent's figures
        session = Session(job.weights, job.reference, fp64_truth=job.fp64_truth, profile=job.profile)
        _SHARED.update(dict(job.seeds))
        session._reference_timing.update(dict(job.reference_timing))
    for spec in job.specs:
        send(("target", spec))
        try:
            runner = session.runner(spec)
        except engines.BackendUnavailable as exc:
            send(("missing", spec, f"{parse_target(spec).name}: {exc}"))
            continue
        except Exception as exc:
            message = watchdog.device_error(exc)
            if message is None:
                raise
            raise watchdog.DeviceError(watchdog.stage_of(exc) or "build", message) from None
        send(("built", spec, runner.describe()) if watchdog.isolated() else ("runner", spec, runner))
        result = session.evaluate(runner, list(job.images), warmup=job.warmup, iters=job.iters)
        send(("result", spec, result))
        for case in result.cases:
            for finding in case.verdict.failures:
                if finding.kind == "device_error":
                    raise watchdog.DeviceError(finding.stage or "forward", finding.detail)


def card_seeds(session: Session, images: Sequence[str | Path]) -> tuple[tuple[tuple[Any, ...], torch.Tensor], ...]:
    """The reference's logits of each image, for a child's session."""
    keys = [session._key("reference", [i]) for i in images]
    for image in images:
        session.reference_logits([image])
    return tuple((k, _SHARED[k]) for k in keys if k in _SHARED)


def failed_target(
    session: Session,
    spec: str,
    images: Sequence[str | Path],
    failure: watchdog.CardFailure,
    described: dict[str, Any] | None,
) -> TargetResult:
    """The target a card failed in: one failing case (on the images it was running) with the
    ``hung``, ``crashed`` or ``device_error`` finding."""
    parsed = parse_target(spec)
    precision = parsed.dtype if isinstance(parsed, TargetSpec) else "fp32"
    reference = session.reference_logits([images[0]])
    comparison = compare_logits(reference, torch.full_like(reference, math.nan), precision=precision)
    finding = Finding(failure.kind, failure.line, stage=failure.stage)
    case = CaseResult(
        tuple(Path(i).name for i in images[:1]),
        Verdict(Status.FAIL, (finding,)),
        comparison,
        paths=tuple(map(str, images[:1])),
        error=failure.line,
    )
    identity = described or {
        "name": parsed.name,
        "device": failure.card,
        "device_name": "",
        "dtype": precision,
        "mode": parsed.mode if isinstance(parsed, TargetSpec) else "custom",
        "effective_precision": precision,
        "precision_reason": "",
        "precision_settings": {},
    }
    return TargetResult(**identity, cases=(case,), latency=None, speedup_vs_reference=None, card_failure=failure)
