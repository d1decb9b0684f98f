"""``compare``: targets against the CPU reference on images (a table, failure lines, the JSON
report), or on a whole dataset (``--dataset``, on one card or every rank under torchrun)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet34_npu.cli import args as shared
from resnet34_npu.core.constants import IMAGES_DIR, PHOTOS
from resnet34_npu.core.documents import dumps, format_table
from resnet34_npu.core.errors import InputError, one_line, plain, show
from resnet34_npu.core.files import STDOUT, check_writable, write_json_atomic

if TYPE_CHECKING:
    from resnet34_npu.judge.compare import TargetResult

EXIT_OK, EXIT_FAIL = shared.EXIT_OK, shared.EXIT_FAIL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="compare targets with the CPU reference: metrics, verdicts, latency, JSON report"
    )
    shared.add_images(p)
    shared.add_reference(p)
    p.add_argument(
        "--target",
        action="extend",
        nargs="+",
        metavar="SPEC",
        help="targets: DEVICE[/DTYPE][/MODE...][/KNOB=VALUE...] or module.path:factory, e.g. npu:0/fp16, "
        "cuda/fp32/tf32=off (default: every available accelerator at fp32 and its reduced precisions; on a host "
        "without one, the CPU targets of the suite's matrix)",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="a --target that cannot run here (device absent, backend or provider missing) is skipped with the "
        "reason instead of failing the run (pytest's --r34-allow-missing)",
    )
    shared.add_weights(p, "the same weights on both sides")
    shared.add_profile(p, "verdict rules")
    shared.add_fp64_truth(p, "also run the model in float64 on the CPU and report each side's error against it")
    shared.add_timing(p, timing_optional=True)
    shared.add_watchdog(p)
    p.add_argument(
        "--output",
        "-o",
        default="compare_results.json",
        metavar="PATH",
        help="JSON report, written atomically (default: compare_results.json)",
    )
    p.add_argument(
        "--history",
        metavar="DIR",
        help="also add this run's record (raw latency samples, accuracy figures) to a history folder, for "
        "`report history DIR` (default: none)",
    )
    p.add_argument(
        "--label",
        action="append",
        type=shared.label,
        default=[],
        metavar="KEY=VALUE",
        help="with --history: a label of this run (a release, a firmware, a config), repeatable; shown at each "
        "step where it changes (release=2026.11 -> 2026.12)",
    )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="set the determinism settings (torch.use_deterministic_algorithms, CUBLAS_WORKSPACE_CONFIG, "
        "HCCL_DETERMINISTIC, CLOSE_MATMUL_K_SHIFT, cuDNN) before any device starts; one that cannot be set is "
        "named and the run-to-run check falls back to 'tolerance' (default: off, the settings in force are recorded)",
    )
    p.add_argument(
        "--burn-in",
        metavar="SECONDS",
        help="after the comparison, run every target at once in a loop for SECONDS (a thread and stream per "
        "card) on the first image, each output checked bit for bit against the card's first (default: none)",
    )
    shared.add_dataset_options(p, compare=True)
    p.set_defaults(func=run)


def _top1(indices: list[int]) -> str:
    from resnet34_npu.model.labels import class_name

    return f"[{indices[0]}] {class_name(indices[0])}"


def _print_compare_table(reference_name: str, results: list[TargetResult]) -> None:
    from resnet34_npu.targets import engines

    header = (
        "target",
        "image",
        "verdict",
        f"top-1 {reference_name}",
        "top-1 target",
        "top-5",
        "rel L2",
        "cosine",
        "max abs",
        "prob rel",
        "median ms",
        "speedup",
    )
    rows = []
    for result in results:
        median = "-" if result.latency is None else f"{result.latency.median:.2f}"
        speedup = result.speedup_text  # "about 1x" when its 95 % interval holds 1
        for case in result.cases:
            m, sample = case.metrics(), case.comparison.samples[0]
            if case.error:  # the target did not run: it has no top-1 and no metrics to show
                computed = ("-", "-", "-", "-", "-", "-")
            else:
                computed = (
                    _top1(list(sample.target_top5)),
                    f"{sample.top5_overlap}/5",
                    f"{m['rel_l2_error']:.2e}",
                    f"{m['cosine_similarity']:.8f}",
                    f"{m['max_abs_error']:.2e}",
                    f"{m['prob_max_rel_error']:.2e}",
                )
            rows.append(
                (
                    result.name,
                    case.image,
                    case.verdict.status.upper(),
                    _top1(list(sample.reference_top5)),
                    *computed,
                    median,
                    speedup,
                )
            )
    for line in format_table(header, rows):
        print(line)
    for result in results:
        if result.engine:  # compilation, capture or export time: its own figure, never in the latency
            engine = result.engine
            extra = engines.get(engine["execution"]).summary(engine)  # each mode says what its line shows
            print(
                f"build {plain(result.name)}: {engine['execution']} ({engine['backend']}) "
                f"{engine['build_s']:.1f} s, first call included" + "".join(f"; {e}" for e in extra)
            )
    for result in results:
        for case in result.cases:
            for line in case.verdict.failure_lines:
                print(f"FAIL {plain(result.name)} {plain(case.image)}: {plain(line)}")
            for line in case.verdict.warning_lines:
                print(f"warn {plain(result.name)} {plain(case.image)}: {plain(line)}")


def run(args: argparse.Namespace) -> int:
    from resnet34_npu.history.record import check_history_dir

    output = check_writable(args.output)
    if args.history:
        args.history = check_history_dir(args.history)  # a file, unwritable or full: exit 2 before any work
    if output != STDOUT:
        return _compare(args, output)
    # --output -: the report is standard output's only content. Everything else goes to stderr,
    # at the file-descriptor level too (a target's C code or logging may write to fd 1).
    sys.stdout.flush()
    report_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return _compare(args, output, report_fd)
    finally:
        sys.stdout.flush()
        os.dup2(report_fd, 1)
        os.close(report_fd)


def _compare(args: argparse.Namespace, output: Path | str, report_fd: int | None = None) -> int:
    from resnet34_npu.judge import cards
    from resnet34_npu.judge.burnin import burn_in, parse_seconds, shared_knobs
    from resnet34_npu.judge.compare import Session
    from resnet34_npu.judge.consistency import card_groups, fail_cards
    from resnet34_npu.judge.criteria import Status
    from resnet34_npu.judge.nextsteps import add_next_steps
    from resnet34_npu.model.images import find_images, load_image
    from resnet34_npu.reports.report import build_report, unfinished_report
    from resnet34_npu.targets import determinism, devices
    from resnet34_npu.targets.engines import BackendUnavailable
    from resnet34_npu.targets.matrix import choose_targets, compare_defaults, default_matrix
    from resnet34_npu.targets.spec import parse_target

    burn_seconds = parse_seconds(args.burn_in) if getattr(args, "burn_in", None) is not None else None
    if burn_seconds is not None and args.dataset:
        raise InputError("--burn-in runs on images, not with --dataset")
    if getattr(args, "deterministic", False):
        for problem in determinism.apply():
            print(f"determinism: {plain(problem)}; run-to-run falls back to 'tolerance'")
    if args.dataset:
        if args.image:
            raise InputError("--image and --dataset: compare either images or a dataset, not both")
        return _compare_dataset(args, output, report_fd)
    for option in ("reference_file", "resume", "results", "labels", "strict_images"):
        if getattr(args, option):
            raise InputError(f"--{option.replace('_', '-')} needs --dataset DIR")
    if getattr(args, "cross_check", None) is not None:
        raise InputError("--cross-check needs --dataset DIR")
    images = find_images(args.image) if args.image else [IMAGES_DIR / name for name in PHOTOS]
    for image in images:
        load_image(image)  # every bad image is refused before any model work
    specs = args.target or []
    for spec in [args.reference, *specs]:
        parse_target(spec)
    note, missing = "", {}
    if specs:  # a named target that cannot run here fails (or, with --allow-missing, skips), as in pytest
        missing = {c.name: c.reason for c in choose_targets(specs) if c.reason}
    else:  # the default: absent accelerators are skips, with the reason, as in pytest's default matrix
        choices, note = compare_defaults()
        specs = [c.name for c in choices]
        missing = {c.name: c.reason for c in default_matrix() if c.reason and c.kind != "cpu" and not c.backend}
    allowed = args.allow_missing or not args.target
    session = Session(args.weights, args.reference, fp64_truth=args.fp64_truth, profile=args.profile)
    deadline = cards.deadline_for(args.deadline, session, images, args.warmup, args.iters, "--deadline")
    runners = []
    for spec in specs if burn_seconds is not None else ():  # else: built on their card, watched
        name = parse_target(spec).name
        if name in missing:
            continue
        try:
            runners.append(session.runner(spec))
        except BackendUnavailable as exc:  # its engine cannot be built on this host
            missing[name] = f"{name}: {one_line(exc)}"
    if burn_seconds is not None:
        shared_knobs(runners)  # refused before any model work
    if note:
        print(note)
    for name, reason in missing.items():
        word, hint = ("skip", "") if allowed else ("FAIL", NAMED_HINT)
        print(f"{word} {plain(name)}: not run: {plain(reason)}{hint}")
    print(
        f"reference: {session.reference.name} ({devices.device_name(session.reference.device)}); "
        f"weights: {plain(session.weights.spec)} sha256 {session.weights.sha256[:16]}...; "
        f"profile: {session.profile.name}" + ("; float64 truth on" if args.fp64_truth else "")
    )
    previous = None
    if report_fd is None:
        with contextlib.suppress(OSError):
            previous = Path(output).read_bytes()
        write_json_atomic(output, unfinished_report("compare"))  # until this run's own verdict replaces it
    try:
        watched = _run_cards(args, session, specs, missing, images, deadline, burn_seconds)
    except InputError:  # a target refused at its build (a bad custom target): nothing half-written
        if report_fd is None:
            _restore(output, previous)
        raise
    for name, reason in watched.missing.items():
        word, hint = ("skip", "") if allowed else ("FAIL", NAMED_HINT)
        print(f"{word} {plain(name)}: not run: {plain(reason)}{hint}")
    missing.update(watched.missing)
    results = watched.results or [
        session.evaluate(runner, images, warmup=args.warmup, iters=args.iters) for runner in runners
    ]
    if results:
        _print_compare_table(session.reference.name, results)
    cards = card_groups(results)
    for r in results:
        if r.run_to_run is not None and r.run_to_run.distinct > 1:
            print(plain(r.run_to_run.line(r.name)))
    for group in cards:
        for line in group.lines():
            print(plain(line))
    burned = None
    if burn_seconds is not None and runners:
        if report_fd is None:
            write_json_atomic(output, unfinished_report("compare"))
        burned = burn_in(runners, session.batch(images[:1]), burn_seconds)
        for line in burned.lines():
            print(plain(line))
    reference = session.reference.describe()
    if args.iters and results:
        reference["latency_ms"] = session.reference_timing(1, args.warmup, args.iters, images[0]).to_dict()
    report = build_report(
        profile=session.profile.name,
        weights=session.weights.to_dict(),
        reference=reference,
        targets=[r.to_dict() for r in results]
        + [_not_run(n, r, allowed) for n, r in missing.items()]
        + [{**_not_run(n, r, True), "verdict": Status.NOT_RUN} for n, r in watched.not_run.items()],
        extra={
            "fp64_truth": args.fp64_truth,
            "images": [str(i) for i in images],
            "determinism": determinism.recorded(),
            "card_to_card": [g.to_dict() for g in cards],
            "burn_in": None if burned is None else burned.to_dict(),
        },
    )
    # one rule for both doors: a card that run-to-run, card-to-card or the burn-in named fails its target
    fail_cards({t["name"]: t for t in report["targets"]}, cards, None if burned is None else burned.to_dict())
    if any(t["verdict"] == Status.FAIL for t in report["targets"]):
        report["verdict"] = Status.FAIL
    add_next_steps(report["targets"])
    for target in report["targets"]:
        for step in target.get("next_steps", ()):
            print(plain(f"next {target['name']}: {step}"))
    if any(not g.passed for g in cards) or (burned is not None and not burned.passed):
        report["verdict"] = Status.INTERRUPTED if burned is not None and burned.interrupted else Status.FAIL
    if not results and report["verdict"] != Status.FAIL:
        report["verdict"] = Status.NOT_RUN  # nothing compared is never a pass
    _write_report(output, report, report_fd)
    _add_history(args, report)
    entries = {t["name"]: t for t in report["targets"]}

    def why(r: Any) -> str:
        entry = entries.get(r.name, {})
        if r.card_failure:
            return f" ({r.card_failure.card} {r.card_failure.kind})"
        if entry.get("card_outlier"):
            return " (card-to-card)"
        if entry.get("burn_in"):
            return f" (burn-in: {entry['burn_in']['status']})"
        return ""

    failed = [plain(r.name) + why(r) for r in results if entries.get(r.name, {}).get("verdict") == Status.FAIL]
    failed += [f"{plain(g.group)} (no majority)" for g in cards if g.no_majority]
    failed += [] if allowed else [plain(name) for name in missing]
    where = "standard output" if output == STDOUT else plain(output)
    print(
        f"verdict: {report['verdict'].upper()}"
        + (f" ({', '.join(failed)} failed)" if failed else "")
        + f"; report written to {where}"
    )
    if burned is not None and burned.interrupted:
        return 130
    return EXIT_FAIL if failed else EXIT_OK


def _run_cards(
    args: argparse.Namespace, session: Any, specs: list, missing: dict, images: list, deadline: Any, burn_seconds: Any
) -> Any:
    from resnet34_npu.judge import cards
    from resnet34_npu.targets.spec import parse_target

    return cards.run_cards(
        session,
        [s for s in specs if parse_target(s).name not in missing] if burn_seconds is None else [],
        images,
        warmup=args.warmup,
        iters=args.iters,
        deadline=deadline,
        isolate=args.isolate if burn_seconds is None else "off",
        weights=args.weights,
        reference=args.reference,
        say=lambda line: print(plain(line)),
    )


def _restore(output: str, previous: bytes | None) -> None:
    """Put back what stood at ``output`` before this run's placeholder (or remove the placeholder)."""
    with contextlib.suppress(OSError):
        if previous is None:
            os.unlink(output)
        else:
            Path(output).write_bytes(previous)


def _add_history(args: argparse.Namespace, report: dict) -> None:
    """The run's history record, after its report (a record that cannot be written never loses the report)."""
    from resnet34_npu.history.from_report import record_of_report
    from resnet34_npu.history.record import write_record

    if args.history:
        path = write_record(args.history, record_of_report(report, source="compare", labels=args.label))
        print(f"history record written to {plain(path)}")


#: What a named target that cannot run adds to its failure line.
NAMED_HINT = " (named with --target; --allow-missing skips it instead)"


def _not_run(name: str, reason: str, allowed: bool) -> dict:
    """The report's entry for a named target that could not run here: failed, or skipped with
    ``--allow-missing``; ``skipped`` holds the reason, as in the acceptance report."""
    from resnet34_npu.judge.criteria import Status

    return {
        "name": name,
        "verdict": Status.SKIPPED if allowed else Status.FAIL,
        "skipped": reason,
        "latency_ms": None,
        "images": [],
    }


def _write_report(output: Path | str, report: dict, report_fd: int | None) -> None:
    if report_fd is None:
        write_json_atomic(output, report)
    else:
        data = dumps(report).encode("utf-8")
        while data:
            data = data[os.write(report_fd, data) :]


def _compare_dataset(args: argparse.Namespace, output: Path | str, report_fd: int | None) -> int:
    import torch

    from resnet34_npu.dataset import agreement, crosscheck, distributed, reference_file
    from resnet34_npu.dataset import sources as dataset
    from resnet34_npu.judge.compare import Session
    from resnet34_npu.judge.criteria import Status
    from resnet34_npu.reports.report import build_report, unfinished_report
    from resnet34_npu.targets.matrix import compare_defaults
    from resnet34_npu.targets.spec import parse_target

    world = distributed.World.from_env()
    found = dataset.scan(args.dataset, args.labels)
    stored = reference_file.load(args.reference_file) if args.reference_file else None
    specs = [parse_target(spec).name for spec in args.target or []]
    if not specs:
        choices, _ = compare_defaults()
        specs = [c.name for c in choices]
    if args.reference != "cpu" and stored is None:
        parse_target(args.reference)
    session = Session(args.weights, args.reference, fp64_truth=args.fp64_truth, profile=args.profile)
    if stored is not None:
        stored.check(session.weights.to_dict(), found)
        if args.reference not in ("cpu", stored.header["reference"]):
            raise InputError(
                f"--reference {args.reference!r}: the reference file holds {stored.header['reference']!r}'s logits"
            )
        if args.fp64_truth and stored.truth is None:
            raise InputError(
                f"--fp64-truth: the reference file {show(stored.path)} holds no float64 truth; "
                "rebuild it with `reference build --fp64-truth`"
            )
    folder = (
        Path(args.results)
        if args.results
        else Path(str(output) if output != STDOUT else "compare_results.json").with_suffix(".images")
    )
    workers = dataset.default_workers() if args.workers is None else args.workers
    try:  # before the report's placeholder: a bad folder leaves the previous report alone
        if folder.exists() and not folder.is_dir():
            raise InputError(f"results folder {show(folder)}: is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"results folder {show(folder)}: cannot be made ({exc.strerror})") from None
    jobs = [
        agreement.Job(
            found,
            spec,
            args.weights,
            session.profile.name,
            args.batch_size,
            workers,
            agreement.results_folder(folder, spec),
            stored,
            args.fp64_truth,
            args.strict_images,
            args.resume,
            cross_check=crosscheck.default_count(world.size) if args.cross_check is None else args.cross_check,
        )
        for spec in specs
    ]
    for job in jobs:  # refused before the placeholder: results of another run, a folder that cannot be made
        try:
            job.results.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"results folder {show(job.results)}: cannot be made ({exc.strerror})") from None
        if args.resume:
            identity = job.identity(session.weights.tensor_sha256, session.reference.name)
            agreement.Results(job.results, identity, world.rank).saved()
    lead = world.rank == 0
    if lead:
        print(
            f"dataset: {len(found.entries)} images ({found.layout}) from {plain(found.root)}"
            + (f"; {found.note}" if found.note else "")
            + f"; reference: {'stored in ' + plain(stored.path) if stored else session.reference.name + ' (computed)'}"
            + f"; weights sha256 {session.weights.sha256[:16]}...; profile {session.profile.name}"
            + (f"; {world.size} ranks" if world.distributed else "")
        )
        if report_fd is None:
            write_json_atomic(output, unfinished_report("compare"))
    group = None
    targets, summaries = [], []
    try:
        for job in jobs:
            spec = job.target
            runner = session.runner(agreement.placed(spec, world))
            if world.distributed and group is None:  # custom targets: the exchange on the CPU (gloo)
                device = getattr(runner, "device", torch.device("cpu"))
                group = distributed.Group(world, device, args.rank_timeout)
            summary, runner = agreement.run(job, session, world, group, runner=runner)
            if summary is not None:
                summaries.append((runner.name if not world.distributed else spec, summary))
                targets.append(
                    {
                        **runner.describe(),
                        "name": summaries[-1][0],
                        "verdict": summary["verdict"],
                        "latency_ms": None,
                        "images": [],
                        "dataset": summary,
                    }
                )
    finally:
        if group is not None:
            group.close()
    if not lead:
        return EXIT_OK
    for name, summary in summaries:
        for line in agreement.summary_lines(name, summary):
            print(line)
    reference = stored.describe() if stored else session.reference.describe()
    report = build_report(
        profile=session.profile.name,
        weights=session.weights.to_dict(),
        reference=reference,
        targets=targets,
        extra={"fp64_truth": args.fp64_truth, "dataset": found.describe(), "world_size": world.size},
    )
    # a dataset that compared nothing, or has images without a result, is never a pass
    verdicts = {t["verdict"] for t in targets}
    for status in (Status.FAIL, Status.INTERRUPTED, Status.NOT_RUN):
        if status in verdicts:
            report["verdict"] = status
            break
    _write_report(output, report, report_fd)
    _add_history(args, report)
    failed = [plain(name) for name, summary in summaries if summary["verdict"] == Status.FAIL]
    failed += [
        f"{plain(o['card'])} (cross-check)"
        for _, summary in summaries
        for o in (summary.get("cross_check") or {}).get("outliers", ())
    ]
    where = "standard output" if output == STDOUT else plain(output)
    print(
        f"verdict: {str(report['verdict']).upper()}"
        + (f" ({', '.join(failed)} failed)" if failed else "")
        + f"; report written to {where}; per-image results in {plain(folder)}"
    )
    return EXIT_FAIL if failed or report["verdict"] != Status.PASS else EXIT_OK
