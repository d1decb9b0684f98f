"""The conformance suite's session: its options, its target matrix, and (lazily) the comparison
session with the runners, logits and latencies every test shares, each computed once.

The pytest plugin keeps one :class:`Suite` per pytest session and hands it to the tests as the
``r34`` fixture; the tests ask it for cases and records. Records are plain dicts, made where a
test ran (a pytest-xdist worker), so the controller builds the acceptance report from them
alone (``suite.acceptance``).
"""

from __future__ import annotations

import base64
import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet34_npu.core.constants import IMAGES_DIR, PHOTOS
from resnet34_npu.core.errors import InputError, blocking_threads
from resnet34_npu.core.files import check_writable
from resnet34_npu.dataset.reference_file import StoredReference
from resnet34_npu.dataset.reference_file import load as load_reference
from resnet34_npu.dataset.sources import Dataset, default_workers
from resnet34_npu.dataset.sources import scan as scan_dataset
from resnet34_npu.history.record import check_history_dir
from resnet34_npu.judge.burnin import BurnIn, burn_in
from resnet34_npu.judge.compare import CaseResult, Session, is_target_error, left_threads_line, run_policy
from resnet34_npu.judge.consistency import CardToCard, run_to_run
from resnet34_npu.model.images import find_images, load_image
from resnet34_npu.targets import devices
from resnet34_npu.targets.engines import BackendUnavailable
from resnet34_npu.targets.matrix import TargetChoice, choose_targets
from resnet34_npu.targets.runners import Runner
from resnet34_npu.targets.spec import TargetSpec
from resnet34_npu.targets.timing import Timing, digest

BATCH_SIZES = (1, 8)
#: The batch sizes the latency column times: batch 1, what the acceptance report's
#: ``latency_ms`` holds. Throughput at batch 8 is the benchmarks' job (``pytest -m benchmark``).
TIMED_BATCHES = (1,)


@dataclass
class Suite:
    """See the module docstring. ``report`` is None on pytest-xdist workers and with
    ``--r34-report=none``."""

    targets: list[TargetChoice]
    weights: str
    images: list[Path]
    profile: str
    fp64_truth: bool
    report: Path | None
    iters: int
    update_golden: bool = False
    #: ``-m slow`` asked for the slow cases: targets left out for slowness run.
    slow_selected: bool = False
    #: Device kinds that must be present (``--r34-require``): their absence fails, not skips.
    required: tuple[str, ...] = ()
    #: ``--r34-html``: the acceptance report as an HTML page too (None on workers and by default).
    html: Path | None = None
    #: ``--r34-history``: the history folder this run's record goes to (None on workers and by default).
    history: Path | None = None
    #: ``--r34-history-check``: the history's gate judges this run at session end.
    history_check: bool = False
    #: ``--r34-dataset`` / ``--r34-reference-file``: the dataset-scale agreement test's inputs.
    dataset: Dataset | None = None
    reference_file: StoredReference | None = None
    #: The targets the user named (``--r34-target`` / ``R34_TARGETS``, or ``-k`` / node ids selecting
    #: their cases, added by the plugin at collection): one that cannot run here fails, not skips.
    named: set[str] = field(default_factory=set)
    #: ``--r34-allow-missing``: named targets that cannot run skip, as in the default matrix.
    allow_missing: bool = False
    #: ``--r34-burn-in``: seconds of burn-in after the session's tests (None: no burn-in).
    burn_in: float | None = None
    _session: Session | None = None
    _runners: dict[str, Runner] = field(default_factory=dict)
    _described: dict[str, dict[str, Any]] = field(default_factory=dict)
    _logits: dict[tuple[str, tuple[str, ...]], torch.Tensor] = field(default_factory=dict)
    _latency: dict[tuple[str, int], Timing] = field(default_factory=dict)
    _cases: dict[tuple[str, tuple[str, ...]], CaseResult] = field(default_factory=dict)
    _threads: dict[str, set[threading.Thread]] = field(default_factory=dict)
    _unavailable: dict[str, BackendUnavailable] = field(default_factory=dict)
    #: ``--r34-deadline`` (None: the default rule, measured on first use) and the cards that failed
    deadline: float | None = None
    _deadline_s: float | None = None
    _card_failures: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, values: dict[str, Any], *, worker: bool) -> Suite:
        """Check every option before any test runs (bad images, targets, report folder and
        custom targets are :class:`InputError`), then build the suite."""
        images = list(
            dict.fromkeys(p.resolve() for p in find_images(values["r34_images"] or [IMAGES_DIR / p for p in PHOTOS]))
        )
        for image in images:
            load_image(image)
        report = values["r34_report"]
        suite = cls(
            targets=choose_targets(values["r34_targets"]),
            weights=values["r34_weights"],
            images=images,
            profile=values["r34_profile"],
            fp64_truth=bool(values["r34_fp64_truth"]),
            report=None if report == "none" or worker else check_writable(Path(report)),
            iters=values["r34_iters"],
            update_golden=bool(values["r34_update_golden"]),
            required=tuple(dict.fromkeys(values["r34_require"] or ())),
            allow_missing=bool(values.get("r34_allow_missing")),
            html=None if not values.get("r34_html") or worker else check_writable(Path(values["r34_html"])),
            history=None if not values.get("r34_history") or worker else check_history_dir(values["r34_history"]),
            history_check=bool(values.get("r34_history_check")),
            burn_in=values.get("r34_burn_in"),
            deadline=values.get("r34_deadline"),
        )
        if suite.history_check and not values.get("r34_history"):
            raise InputError("--r34-history-check needs --r34-history DIR")
        if values.get("r34_dataset"):
            suite.dataset = scan_dataset(values["r34_dataset"])
        elif values.get("r34_reference_file"):
            raise InputError("--r34-reference-file needs --r34-dataset DIR")
        if values.get("r34_reference_file"):
            suite.reference_file = load_reference(values["r34_reference_file"])
            suite.reference_file.check(suite.session.weights_info.to_dict(), suite.dataset)
            if suite.fp64_truth and suite.reference_file.truth is None:
                raise InputError(
                    f"--r34-fp64-truth: the reference file {values['r34_reference_file']!r} holds no float64 truth; "
                    "rebuild it with `reference build --fp64-truth`"
                )
        suite.named = {choice.name for choice in suite.targets} if values["r34_targets"] else set()
        for kind in suite.required:  # a required kind is in the matrix, as a target or as its absence
            if not any(choice.kind == kind for choice in suite.targets):
                suite.targets += choose_targets([devices.KINDS[kind].label(0)])
        for choice in suite.targets:
            if choice.kind == "custom":
                suite.runner(choice.name)  # import, build and check it now: a broken one is a usage error
        if suite.deadline is not None and not worker:
            suite.deadline_s()  # one shorter than the reference's forward pass is a usage error, before any test
        return suite

    def deadline_s(self) -> float:
        """The deadline of a device call (:mod:`resnet34_npu.targets.watchdog`), measured once."""
        if self._deadline_s is None:
            from resnet34_npu.judge.cards import deadline_for

            self._deadline_s = deadline_for(
                self.deadline, self.session, self.images, 1, max(self.iters, 1), "--r34-deadline"
            )
        return self._deadline_s

    def cards_down(self) -> set[str]:
        """The cards that hung, crashed or raised a device error in this run (here, or in a worker
        process that died: :data:`CARDS_DOWN_ENV`)."""
        self._read_cards_down()
        return set(self._card_failures)

    def failure_of(self, name: str) -> Any:
        """The failure of target ``name``'s card when it hung, crashed or raised a device error
        earlier in this run (its tests are then not run), else None."""
        from resnet34_npu.judge.compare import card_of

        if not self.on_card(name):
            return None
        self._read_cards_down()
        return self._card_failures.get(card_of(name))

    def on_card(self, name: str) -> bool:
        """Whether target ``name`` of this run runs on a device card (not the CPU, not a custom target)."""
        choice = self.choice(name)
        return choice is not None and choice.kind not in ("cpu", "custom")

    def _read_cards_down(self) -> None:
        from resnet34_npu.targets.watchdog import read_cards_down

        for card, failure in read_cards_down().items():
            self._card_failures.setdefault(card, failure)

    def watched(self, name: str, fn: Any) -> Any:
        """``fn()`` for target ``name`` under the watchdog: a card that hangs is named (CardDown) and
        its later calls are not made; the calls of the reference (the CPU) are not watched."""
        from resnet34_npu.judge.compare import card_of
        from resnet34_npu.targets import watchdog

        choice = self.choice(name)
        if choice is not None and choice.kind in ("cpu", "custom"):
            return fn()
        self._read_cards_down()
        try:
            return watchdog.watched_call(
                fn, card=card_of(name), target=name, deadline=self.deadline_s(), failures=self._card_failures
            )
        except watchdog.CardDown as exc:
            if exc.first:  # a worker that replaces this process (pytest-xdist) must not call the card again
                watchdog.write_card_down(exc.failure)
            raise

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session(self.weights, "cpu", fp64_truth=self.fp64_truth, profile=self.profile)
        return self._session

    def warm_up(self, timed: bool) -> None:
        """The session's shared start: the weights, the model, the reference's logits for the
        first image and, when ``timed`` tests are selected, the reference's own timing, done before
        the first test so that no test's duration carries them."""
        self.session.reference_logits([self.images[0]])
        if timed:
            for batch in TIMED_BATCHES:
                self.reference_latency(batch)

    def skip_reason(self, choice: TargetChoice) -> str:
        """Why this run skips the target ("" when it runs): its device is absent, or it is
        left out for slowness and ``-m slow`` did not ask for it."""
        return choice.reason or ("" if self.slow_selected else choice.slow_reason)

    def missing_required(self, choice: TargetChoice) -> str:
        """The failure of a required target whose device is missing ("" otherwise)."""
        if choice.kind in self.required and choice.reason and not choice.backend:
            return f"required device missing (--r34-require={choice.kind}): {choice.reason}"
        return ""

    def must_run(self, name: str) -> bool:
        """Whether the target ``name`` was named and ``--r34-allow-missing`` was not given: then
        what keeps it from running here fails its tests instead of skipping them."""
        return name in self.named and not self.allow_missing

    def missing_named(self, choice: TargetChoice) -> str:
        """The failure of a named target whose device or backend is missing ("" otherwise):
        the skip reason, with how to accept its absence."""
        if choice.reason and self.must_run(choice.name):
            return f"{choice.reason} (named target {choice.name!r}; --r34-allow-missing skips it instead)"
        return ""

    def unavailable(self, exc: BaseException) -> str:
        """The target whose engine build raised ``exc`` (a :class:`BackendUnavailable` this suite
        caught in :meth:`runner`), or "" when ``exc`` came from anywhere else."""
        return next((name for name, seen in self._unavailable.items() if seen is exc), "")

    def choice(self, name: str) -> TargetChoice | None:
        return next((t for t in self.targets if t.name == name), None)

    def runner(self, name: str) -> Runner:
        """The target's runner, built once; a backend this host cannot run
        (:class:`~resnet34_npu.targets.engines.BackendUnavailable`) is raised again for each test,
        which the plugin turns into a skip with the reason."""
        if name in self._unavailable:
            raise self._unavailable[name]
        if name not in self._runners:
            with self._owning_threads(name):
                try:
                    self._runners[name] = self.watched(name, lambda: self.session.runner(name))
                except BackendUnavailable as exc:
                    self._unavailable[name] = exc
                    raise
        if name not in self._described:
            self._described[name] = self._runners[name].describe()
        return self._runners[name]

    def describe(self, name: str) -> dict[str, Any]:
        """The target's description (device, device name, precision...), kept after its runner is released."""
        if name not in self._described:
            self.runner(name)
        return self._described[name]

    def release(self, name: str) -> None:
        """Free the target's runner (its model copy on the device) once its tests are done; what
        they computed (logits, latency, cases) stays. A later use builds it again."""
        runner = self._runners.pop(name, None)
        if runner is not None:
            self.session.forget(runner)

    @contextlib.contextmanager
    def _owning_threads(self, name: str) -> Any:
        """The threads started while the target ``name`` is built or runs are its own."""
        before = set(threading.enumerate())
        try:
            yield
        finally:
            self._threads.setdefault(name, set()).update(set(threading.enumerate()) - before)

    def left_threads(self) -> dict[str, str]:
        """Targets that left non-daemon threads running (they would keep the process from
        exiting): target name -> the failure line, as ``compare`` words it."""
        left = {}
        for name, threads in self._threads.items():
            alive = blocking_threads(threads)
            if alive:
                left[name] = left_threads_line(alive)
        return left

    def batch_images(self, image: Path, batch: int) -> tuple[Path, ...]:
        """``image`` first, then the next images of the list, cyclically, up to ``batch``."""
        start = self.images.index(image)
        return tuple(self.images[(start + k) % len(self.images)] for k in range(batch))

    def logits(self, name: str, images: tuple[Path, ...]) -> torch.Tensor:
        """The target's logits for the batch, computed once per session."""
        key = (name, tuple(map(str, images)))
        if key not in self._logits:
            runner = self.runner(name)
            with self._owning_threads(name):
                batch = self.session.batch(images)
                self._logits[key] = self.watched(name, lambda: runner.run(batch))
        return self._logits[key]

    def case(self, name: str, images: tuple[Path, ...]) -> CaseResult:
        """The comparison (and, when it fails, the localization), computed once per session."""
        key = (name, tuple(map(str, images)))
        if key not in self._cases:
            try:
                logits = self.logits(name, images)
            except BaseException as exc:
                if not is_target_error(exc) or type(exc).__name__ == "CardDown":
                    raise
                self._cases[key] = self.session.raised(self.runner(name), images, exc)
            else:
                self._cases[key] = self.session.compare(self.runner(name), images, logits=logits)
        return self._cases[key]

    def latency(self, name: str, batch: int) -> Timing | None:
        if self.iters == 0:
            return None
        key = (name, batch)
        if key not in self._latency:
            images = self.batch_images(self.images[0], batch)
            runner = self.runner(name)
            with self._owning_threads(name):
                batch = self.session.batch(images)
                self._latency[key] = self.watched(name, lambda: runner.time(batch, warmup=1, iters=self.iters))
        return self._latency[key]

    def reference_latency(self, batch: int) -> Timing | None:
        if self.iters == 0:
            return None
        return self.session.reference_timing(batch, 1, self.iters, self.images[0])

    def dataset_summary(self, name: str) -> dict[str, Any]:
        """The target ``name`` against the reference over the whole ``--r34-dataset``: the
        summary of :func:`~resnet34_npu.dataset.agreement.summarize`. Per-image results stream to a
        folder beside the acceptance report (a temporary one without a report)."""
        from resnet34_npu.dataset import agreement, distributed

        assert self.dataset is not None
        folder = self.report.with_suffix(".images") if self.report is not None else Path(self._scratch()) / "results"
        job = agreement.Job(
            self.dataset,
            name,
            self.weights,
            self.profile,
            16,
            default_workers(),
            agreement.results_folder(folder, name),
            self.reference_file,
            self.fp64_truth,
        )
        with self._owning_threads(name):
            summary, _ = agreement.run(job, self.session, distributed.World(), None, runner=self.runner(name))
        assert summary is not None
        return summary

    def _scratch(self) -> str:
        import tempfile

        if not hasattr(self, "_scratch_dir"):
            self._scratch_dir = tempfile.TemporaryDirectory(prefix="r34-dataset-")
        return self._scratch_dir.name

    def dataset_record(self, target: str, summary: dict[str, Any]) -> dict[str, Any]:
        """The acceptance report's record of one dataset test."""
        return {
            "kind": "dataset",
            "target": target,
            "target_info": self.runner(target).describe(),
            "reference": self.reference_file.describe() if self.reference_file else self.session.reference.describe(),
            "weights": self.session.weights_info.to_dict(),
            "dataset": summary,
            "dataset_info": None if self.dataset is None else self.dataset.describe(),
        }

    def record(
        self, kind: str, target: str, case: CaseResult, batch: int | None = None, **extra: Any
    ) -> dict[str, Any]:
        """What the terminal table and the acceptance report read about one check. ``target``
        is the matrix name (the test id); ``batch`` asks for the latencies of the target and
        the reference at that batch size (when it is one of :data:`TIMED_BATCHES`)."""
        timed = batch in TIMED_BATCHES and not case.error  # a target that raised is not timed
        latency = self.latency(target, batch) if timed else None
        reference_latency = self.reference_latency(batch) if timed else None
        return {
            "kind": kind,
            "target": target,
            "target_info": self.runner(target).describe(),
            "reference": self.session.reference.describe(),
            "weights": self.session.weights_info.to_dict(),
            "case": case.to_dict(),
            "latency_ms": None if latency is None else latency.to_dict(),
            "reference_latency_ms": None if reference_latency is None else reference_latency.to_dict(),
            "run_to_run": self.run_to_run(target, latency),
            "outputs": self.outputs(target, case, latency) if kind == "verdict" else None,
            **extra,
        }

    def card_peers(self, name: str) -> list[str]:
        """The runnable targets that differ from ``name`` only in the card (itself included), when
        there are two or more of them: the card-to-card group ``name`` belongs to; else []."""
        from resnet34_npu.judge.consistency import is_card

        choice = self.choice(name)
        if choice is None or not isinstance(choice.spec, TargetSpec) or not is_card(choice.spec.device):
            return []
        rest = name.partition("/")[2]
        peers = [
            t.name
            for t in self.targets
            if isinstance(t.spec, TargetSpec)
            and t.kind == choice.kind
            and t.name.partition("/")[2] == rest
            and not self.skip_reason(t)
        ]
        return peers if len(peers) > 1 else []

    def card_to_card(self, name: str, image: Path) -> CardToCard:
        """``name``'s group compared card by card on ``image`` (batch 1): each card's logits
        (computed once per session, shared with the verdicts) by their digests, as ``compare``
        compares them (:func:`~resnet34_npu.judge.consistency.card_to_card`)."""
        from resnet34_npu.judge.consistency import card_to_card, group_of

        digests: dict[str, dict[str, list[str]]] = {}
        arrays: dict[str, np.ndarray] = {}
        device_name = ""
        for peer in self.card_peers(name):
            try:
                info = self.describe(peer)
                logits = self.logits(peer, (image,))
                latency = self.latency(peer, 1) if image == self.images[0] else None
            except BaseException as exc:  # a peer that hung, crashed or failed: it has no output to compare
                if peer == name or not (is_target_error(exc) or type(exc).__name__ == "CardDown"):
                    raise
                continue
            device_name = device_name or str(info.get("device_name", ""))
            key = digest(logits)
            card = digests[str(info.get("device", peer))] = {image.name: [key]}
            arrays[key] = logits.detach().cpu().float().numpy()
            if latency is not None and latency.digests:  # the timed runs too, as compare and the report
                card[f"{image.name} timed"] = list(latency.digests)
                arrays.update(latency.outputs)
        return card_to_card(group_of(name, device_name, ""), digests, arrays)

    def outputs(self, target: str, case: CaseResult, latency: Timing | None) -> dict[str, Any] | None:
        """The case's output digests for card-to-card, per input: ``digests`` maps the compared
        batch (its image names, and its batch size past 1) to the compared logits' digest and,
        for the timed batch, ``... timed`` to the timed runs' (raw outputs: another dtype than
        the float32 logits at fp16); hex strings, as records cross pytest-xdist as JSON. At
        batch 1 ``arrays`` holds each distinct output (digest -> :func:`pack_output`), to count
        ulps."""
        logits = self._logits.get((target, case.paths))
        first = digest(logits)
        if first is None:
            return None
        label = case.image if len(case.paths) == 1 else f"{case.image} (batch {len(case.paths)})"
        digests = {label: [first]}
        timed_paths = tuple(map(str, self.batch_images(self.images[0], len(case.paths))))
        timed = latency is not None and case.paths == timed_paths
        if timed and latency.digests:
            digests[f"{label} timed"] = list(latency.digests)
        arrays: dict[str, str] = {}
        if len(case.paths) == 1:  # 1000 logits an output: small enough to travel
            kept = {first: logits.detach().cpu().float().numpy(), **(latency.outputs if timed else {})}
            arrays = {key: pack_output(value) for key, value in kept.items()}
        return {"digests": digests, "arrays": arrays}

    def burn_in_targets(self, ran: set[str]) -> list[str]:
        """The targets a burn-in loads: those of ``ran`` (tests that ran, not skipped) on an
        accelerator, or, when none is, on the CPU."""
        chosen = [  # a card that hung or crashed is never called again
            c for c in self.targets if c.name in ran and not self.skip_reason(c) and self.failure_of(c.name) is None
        ]
        cards = [c.name for c in chosen if c.kind in devices.KINDS and devices.KINDS[c.kind].accelerator]
        return cards or [c.name for c in chosen if c.kind == "cpu"]

    def run_burn_in(self, names: list[str]) -> BurnIn:
        """:func:`~resnet34_npu.judge.burnin.burn_in` of ``names`` on the first image for
        ``--r34-burn-in`` seconds (an :class:`InputError` when their knobs differ)."""
        assert self.burn_in is not None
        runners = [self.runner(name) for name in names]
        with contextlib.ExitStack() as owning:
            for name in names:
                owning.enter_context(self._owning_threads(name))
            return burn_in(runners, self.session.batch(self.images[:1]), self.burn_in)

    def run_to_run(self, target: str, latency: Timing | None) -> dict[str, Any] | None:
        """The timed runs' outputs compared bit for bit (:mod:`resnet34_npu.judge.consistency`)."""
        found = None if latency is None else run_to_run(latency, run_policy(self.runner(target)))
        return None if found is None else found.to_dict()


def pack_output(array: np.ndarray) -> str:
    """A float output as text (base64 of its float32 bytes) that a record can carry as JSON."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def unpack_output(text: str) -> np.ndarray:
    """:func:`pack_output`'s array back (flat float32: ulps are counted element by element)."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").copy()
