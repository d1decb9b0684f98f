"""The command line: ``python -m resnet34_npu`` or ``resnet34-npu``.

Every user error (bad path, image, weights, device or option) is one line on stderr and exit
code 2; no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from resnet34_npu.cli.infer import infer
from resnet34_npu.core.constants import DEFAULT_IMAGE, IMAGES_DIR, PHOTOS, __version__
from resnet34_npu.core.documents import dumps, format_table
from resnet34_npu.core.errors import InputError, Terminated, one_line, plain, show
from resnet34_npu.core.files import STDOUT, check_writable, write_json_atomic
from resnet34_npu.dataset.sources import Progress, default_workers
from resnet34_npu.judge.compare import Session, TargetResult
from resnet34_npu.judge.criteria import DEFAULT_PROFILE, PROFILES, Status
from resnet34_npu.model.images import find_images, load_image
from resnet34_npu.model.labels import class_name, describe
from resnet34_npu.reports.report import build_report, unfinished_report
from resnet34_npu.targets import devices
from resnet34_npu.targets.matrix import compare_defaults
from resnet34_npu.targets.spec import parse_target
from resnet34_npu.targets.timing import DEFAULT_ITERS, DEFAULT_WARMUP

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 3
DEBUG_ENV = "RESNET34_NPU_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive, finite number of seconds")
    return value


def _add_profile(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, choices=tuple(PROFILES), help=f"{what} (default: {DEFAULT_PROFILE})"
    )


def _add_dataset_options(parser: argparse.ArgumentParser, *, compare: bool) -> None:
    """The options of a dataset run, shared by ``compare --dataset`` and ``reference build``."""
    group = parser.add_argument_group("dataset" + (" (compare --dataset DIR)" if compare else ""))
    group.add_argument(
        "--dataset",
        required=not compare,
        metavar="DIR",
        help="a folder of images (searched recursively), an ImageFolder layout (class folders) or an ImageNet "
        "validation folder with MLPerf's val_map.txt",
    )
    group.add_argument(
        "--labels", metavar="FILE", help="labels in val_map.txt form ('FILE LABEL' a line; default: DIR/val_map.txt)"
    )
    group.add_argument(
        "--batch-size", default=16, type=_positive, metavar="N", help="images a forward pass (default: 16)"
    )
    group.add_argument(
        "--workers",
        default=None,
        type=_non_negative,
        metavar="N",
        help=f"DataLoader processes decoding images (default: cores - 1, at most 8; here {default_workers()})",
    )
    group.add_argument(
        "--strict-images", action="store_true", help="an unreadable image stops the run (default: listed, run goes on)"
    )
    if not compare:
        return
    group.add_argument(
        "--reference-file", metavar="REF", help="the stored reference (`reference build`), instead of recomputing it"
    )
    group.add_argument(
        "--results",
        metavar="DIR",
        help="per-image results, streamed (default: the --output path with .images instead of .json)",
    )
    group.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its results folder, nothing twice"
    )
    group.add_argument(
        "--rank-timeout",
        default=600.0,
        type=_seconds,
        metavar="S",
        help="under torchrun, a rank not finished S seconds after the others is named as hung (default: 600)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="resnet34-npu", description="ResNet34 conformance suite for accelerators (Ascend NPU, CUDA, ...)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("infer", help="classify one image on one device (the model card's inference.py)")
    p.add_argument(
        "--image", default=str(DEFAULT_IMAGE), metavar="PATH", help="image file (default: the bundled cat photo)"
    )
    p.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help=f"auto, {', '.join(k.name + ('[:N]' if k.indexed else '') for k in devices.KINDS.values())} "
        f"(default: auto = {', then '.join(devices.AUTO_ORDER)})",
    )
    p.add_argument(
        "--weights",
        default="seeded",
        metavar="SPEC",
        help="seeded, seeded:N, imagenet or a state-dict file (default: seeded)",
    )
    p.add_argument(
        "--dtype", default="fp32", choices=("fp32", "fp16", "bf16"), help="weights and input dtype (default: fp32)"
    )
    p.add_argument("--topk", default=5, type=_positive, metavar="K", help="classes to print (default: 5)")
    p.add_argument(
        "--warmup",
        default=DEFAULT_WARMUP,
        type=_non_negative,
        metavar="N",
        help=f"untimed runs first (default: {DEFAULT_WARMUP})",
    )
    p.add_argument(
        "--iters",
        default=DEFAULT_ITERS,
        type=_positive,
        metavar="N",
        help=f"timed runs; the median is printed (default: {DEFAULT_ITERS})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=_cmd_infer)

    p = sub.add_parser(
        "compare", help="compare targets with the CPU reference: metrics, verdicts, latency, JSON report"
    )
    p.add_argument(
        "--image", action="extend", nargs="+", metavar="PATH", help="images or folders (default: the bundled photos)"
    )
    p.add_argument(
        "--reference", default="cpu", metavar="SPEC", help="the reference target (default: cpu, i.e. cpu/fp32)"
    )
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
        "--weights",
        default="seeded",
        metavar="SPEC",
        help="the same weights on both sides: seeded, seeded:N, imagenet or a file (default: seeded)",
    )
    _add_profile(p, "verdict rules")
    p.add_argument(
        "--fp64-truth",
        action="store_true",
        help="also run the model in float64 on the CPU and report each side's error against it",
    )
    p.add_argument(
        "--warmup",
        default=DEFAULT_WARMUP,
        type=_non_negative,
        metavar="N",
        help=f"untimed runs before timing (default: {DEFAULT_WARMUP})",
    )
    p.add_argument(
        "--iters",
        default=DEFAULT_ITERS,
        type=_non_negative,
        metavar="N",
        help=f"timed runs per target, 0 = no timing (default: {DEFAULT_ITERS})",
    )
    p.add_argument(
        "--output",
        "-o",
        default="compare_results.json",
        metavar="PATH",
        help="JSON report, written atomically (default: compare_results.json)",
    )
    _add_dataset_options(p, compare=True)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser(
        "localize", help="compare every stage of ResNet34 on a target with the reference: where does it break?"
    )
    p.add_argument(
        "--target", default="auto", metavar="SPEC", help="the target, built-in or module.path:factory (default: auto)"
    )
    p.add_argument(
        "--image", default=str(DEFAULT_IMAGE), metavar="PATH", help="image file (default: the bundled cat photo)"
    )
    p.add_argument("--reference", default="cpu", metavar="SPEC", help="the reference target (default: cpu)")
    p.add_argument("--weights", default="seeded", metavar="SPEC", help="weights spec (default: seeded)")
    _add_profile(p, "rules a stage must keep")
    p.add_argument(
        "--png", metavar="PATH", help="also write a chart of the relative L2 error per stage (needs matplotlib)"
    )
    p.add_argument("--json", action="store_true", help="print the per-stage results as JSON")
    p.add_argument(
        "--dump",
        metavar="DIR",
        help="also write every stage's inputs and output as msprobe (mindstudio-probe) PyTorch dumps: DIR/target "
        "and DIR/reference, each a complete tree (step0/rank0/dump.json + dump_tensor_data/*.pt; a target without "
        "module hooks dumps its eager twin), then print the `msprobe compare` command for them",
    )
    p.set_defaults(func=_cmd_localize)

    p = sub.add_parser("controls", help="run the negative and positive controls: which profile catches which fault")
    p.add_argument("--image", action="extend", nargs="+", metavar="PATH", help="images (default: the bundled photos)")
    p.add_argument("--weights", default="seeded", metavar="SPEC", help="weights spec (default: seeded)")
    p.set_defaults(func=_cmd_controls)

    p = sub.add_parser("devices", help="list every device kind and index: available, why not, name, precision settings")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=_cmd_devices)

    p = sub.add_parser("reference", help="stored references: the CPU reference of a dataset, computed once")
    actions = p.add_subparsers(dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    p = actions.add_parser(
        "build", help="compute the CPU fp32 reference (and the float64 truth) of every image of a dataset, once"
    )
    p.add_argument("--output", "-o", required=True, metavar="REF", help="the reference file, written atomically")
    p.add_argument("--weights", default="seeded", metavar="SPEC", help="weights spec (default: seeded)")
    p.add_argument(
        "--fp64-truth", action="store_true", help="also store the float64 truth's logits (8 KB more an image)"
    )
    _add_dataset_options(p, compare=False)
    p.set_defaults(func=_cmd_reference_build)

    p = sub.add_parser("report", help="work on saved reports: merge many hosts' reports, render one as HTML")
    actions = p.add_subparsers(dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    # report merge (resnet34_npu/fleet.py) and report html (resnet34_npu/html_report.py) register here
    p = actions.add_parser(
        "merge", help="merge many hosts' compare and acceptance reports: failing cards first, slow cards named"
    )
    p.add_argument("reports", nargs="+", metavar="REPORT", help="report files, or folders searched for *.json")
    p.add_argument(
        "-o",
        "--output",
        default="fleet.json",
        metavar="PATH",
        help="the fleet report, written atomically; - prints it (default: fleet.json)",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="merge the valid reports and list the refused files in the fleet report (default: refuse, exit 2)",
    )
    p.add_argument("--all", action="store_true", help="list every card, not only those that need a look")
    p.set_defaults(func=_cmd_report_merge)
    p = actions.add_parser("html", help="render a report (compare's, pytest's or a merged fleet's) as one HTML page")
    p.add_argument("report", metavar="REPORT", help="the JSON report")
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="the page, self-contained, written atomically; - prints it (default: REPORT with .html)",
    )
    p.add_argument("--no-charts", action="store_true", help="per-stage tables instead of charts (a smaller page)")
    p.set_defaults(func=_cmd_report_html)
    del actions
    return parser


def _cmd_infer(args: argparse.Namespace) -> int:
    options = ("device", "dtype", "weights", "topk", "warmup", "iters")
    result = infer(Path(args.image), **{name: getattr(args, name) for name in options})
    if args.json:
        print(dumps(result.to_dict()), end="")
        return EXIT_OK
    t, target = result.latency_ms, result.target
    print(f"device:    {target['device']} ({target['device_name']}), {target['dtype']}")
    print(f"precision: {_settings(target['precision_settings'])}")
    print(f"image:     {plain(result.image)}")
    print(f"weights:   {plain(result.weights.spec)} ({plain(result.weights.path)})")
    print(f"sha256:    {result.weights.sha256}")
    print(
        f"latency:   {t.median:.2f} ms median of {t.iterations} synchronized runs after {t.warmup} warm-up "
        f"(mean {t.mean:.2f} ms, std {t.std:.2f} ms)"
    )
    print(f"top-{len(result.top)}:")
    for rank, (index, _, prob) in enumerate(result.top, 1):
        print(f"  {rank}. {describe(index, prob)}")
    return EXIT_OK


def _top1(indices: list[int]) -> str:
    return f"[{indices[0]}] {class_name(indices[0])}"


def _print_compare_table(reference_name: str, results: list[TargetResult]) -> None:
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
        speedup = "-" if result.speedup_vs_reference is None else f"{result.speedup_vs_reference:.2f}x"
        for case in result.cases:
            m, sample = case.metrics(), case.comparison.samples[0]
            rows.append(
                (
                    result.name,
                    case.image,
                    case.verdict.status.upper(),
                    _top1(list(sample.reference_top5)),
                    _top1(list(sample.target_top5)),
                    f"{sample.top5_overlap}/5",
                    f"{m['rel_l2_error']:.2e}",
                    f"{m['cosine_similarity']:.8f}",
                    f"{m['max_abs_error']:.2e}",
                    f"{m['prob_max_rel_error']:.2e}",
                    median,
                    speedup,
                )
            )
    for line in format_table(header, rows):
        print(line)
    for result in results:
        if result.engine:  # compilation, capture or export time: its own figure, never in the latency
            engine = result.engine
            extra = [f"{k} {engine[k]}" for k in ("compile_mode", "torchair_mode", "exporter") if k in engine]
            if engine.get("export_s"):
                extra.append(f"ONNX export {engine['export_s']:.1f} s")
            if "providers" in engine:
                extra.append("providers " + ", ".join(engine["providers"]))
            print(
                f"build {plain(result.name)}: {engine['execution']} ({engine['backend']}) "
                f"{engine['build_s']:.1f} s, first call included" + "".join(f"; {e}" for e in extra)
            )
    for result in results:
        for case in result.cases:
            for line in case.verdict.failures:
                print(f"FAIL {plain(result.name)} {plain(case.image)}: {plain(line)}")
            for line in case.verdict.warnings:
                print(f"warn {plain(result.name)} {plain(case.image)}: {plain(line)}")


def _cmd_compare(args: argparse.Namespace) -> int:
    output = check_writable(args.output)
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
    if args.dataset:
        if args.image:
            raise InputError("--image and --dataset: compare either images or a dataset, not both")
        return _compare_dataset(args, output, report_fd)
    for option in ("reference_file", "resume", "results", "labels", "strict_images"):
        if getattr(args, option):
            raise InputError(f"--{option.replace('_', '-')} needs --dataset DIR")
    images = find_images(args.image) if args.image else [IMAGES_DIR / name for name in PHOTOS]
    for image in images:
        load_image(image)  # every bad image is refused before any model work
    specs = args.target or []
    for spec in [args.reference, *specs]:
        parse_target(spec)
    note = ""
    if not specs:
        choices, note = compare_defaults()
        specs = [c.name for c in choices]
    session = Session(args.weights, args.reference, fp64_truth=args.fp64_truth, profile=args.profile)
    runners = [session.runner(spec) for spec in specs]  # an unavailable device stops here, exit 2
    if note:
        print(note)
    print(
        f"reference: {session.reference.name} ({devices.device_name(session.reference.device)}); "
        f"weights: {plain(session.weights.spec)} sha256 {session.weights.sha256[:16]}...; "
        f"profile: {session.profile.name}" + ("; float64 truth on" if args.fp64_truth else "")
    )
    if report_fd is None:
        write_json_atomic(output, unfinished_report("compare"))  # until this run's own verdict replaces it
    results = [session.evaluate(runner, images, warmup=args.warmup, iters=args.iters) for runner in runners]
    _print_compare_table(session.reference.name, results)
    reference = session.reference.describe()
    if args.iters:
        reference["latency_ms"] = session.reference_timing(1, args.warmup, args.iters, images[0]).to_dict()
    report = build_report(
        profile=session.profile.name,
        weights=session.weights.to_dict(),
        reference=reference,
        targets=[r.to_dict() for r in results],
        extra={"fp64_truth": args.fp64_truth, "images": [str(i) for i in images]},
    )
    _write_report(output, report, report_fd)
    failed = [plain(r.name) for r in results if r.verdict == Status.FAIL]
    where = "standard output" if output == STDOUT else plain(output)
    print(
        f"verdict: {report['verdict'].upper()}"
        + (f" ({', '.join(failed)} failed)" if failed else "")
        + f"; report written to {where}"
    )
    return EXIT_FAIL if failed else EXIT_OK


def _write_report(output: Path | str, report: dict, report_fd: int | None) -> None:
    if report_fd is None:
        write_json_atomic(output, report)
    else:
        data = dumps(report).encode("utf-8")
        while data:
            data = data[os.write(report_fd, data) :]


def _cmd_reference_build(args: argparse.Namespace) -> int:
    from resnet34_npu.dataset import reference_file
    from resnet34_npu.dataset import sources as dataset
    from resnet34_npu.reports.report import machine_info

    if args.output == STDOUT:
        raise InputError("reference file '-': a reference file is binary and goes to a file; give a path")
    out = check_writable(args.output, "reference file")
    found = dataset.scan(args.dataset, args.labels)
    session = Session(args.weights, "cpu", fp64_truth=args.fp64_truth)
    workers = dataset.default_workers() if args.workers is None else args.workers
    print(
        f"reference build: {len(found.entries)} images ({found.layout}) from {plain(found.root)}; "
        f"weights {plain(session.weights.spec)} sha256 {session.weights.sha256[:16]}...; "
        + ("cpu fp32 and float64 truth" if args.fp64_truth else "cpu fp32")
    )
    if found.note:
        print(f"note: {found.note}")
    progress = Progress(len(found.entries), "reference")
    try:
        path, computed, resumed, unreadable = reference_file.build(
            found,
            out,
            reference=session.reference.run,
            truth=session.truth_run if args.fp64_truth else None,
            weights=session.weights.to_dict(),
            machine=machine_info(),
            reference_name=session.reference.name,
            batch_size=args.batch_size,
            workers=workers,
            strict_images=args.strict_images,
            progress=progress.update,
        )
    finally:
        progress.close()
    for name, reason in unreadable:
        print(f"unreadable {plain(name)}: {plain(reason)}")
    print(
        f"reference written to {plain(path)}: {len(found.entries) - len(unreadable)} images"
        + (f" ({resumed} resumed from an interrupted build, {computed} computed now)" if resumed else "")
        + (f", {len(unreadable)} unreadable (listed above)" if unreadable else "")
        + f", {path.stat().st_size / 1e6:.1f} MB"
    )
    return EXIT_OK


def _compare_dataset(args: argparse.Namespace, output: Path | str, report_fd: int | None) -> int:
    import torch

    from resnet34_npu.dataset import agreement, distributed, reference_file
    from resnet34_npu.dataset import sources as dataset

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
    failed = [plain(name) for name, summary in summaries if summary["verdict"] == Status.FAIL]
    where = "standard output" if output == STDOUT else plain(output)
    print(
        f"verdict: {str(report['verdict']).upper()}"
        + (f" ({', '.join(failed)} failed)" if failed else "")
        + f"; report written to {where}; per-image results in {plain(folder)}"
    )
    return EXIT_FAIL if failed or report["verdict"] != Status.PASS else EXIT_OK


def _cmd_localize(args: argparse.Namespace) -> int:
    load_image(args.image)
    parse_target(args.target)
    parse_target(args.reference)
    if args.dump:
        from resnet34_npu.reports.msprobe_dump import check_dump_dir

        check_dump_dir(args.dump)
    session = Session(args.weights, args.reference, profile=args.profile)
    runner = session.runner(args.target)
    case = session.compare(runner, [args.image])
    localization = case.localization or session.localize(runner, [args.image])
    twin = session.twin(runner)
    localized = runner
    if not localization.available and twin is not None:
        # a compiled graph has no module hooks: its eager twin is what can be localised
        print(
            f"{plain(runner.name)} has no module hooks; localising its eager twin {plain(twin.name)}", file=sys.stderr
        )
        localization = session.localize(twin, [args.image])
        localized = twin
    if not localization.available:
        raise InputError(f"target {runner.name!r}: {localization.note}")
    if args.json:
        print(dumps({"target": runner.name, "verdict": case.verdict.status, **localization.to_dict()}), end="")
    else:
        print(
            f"{plain(runner.name)} vs {session.reference.name} on {plain(Path(args.image).name)}, "
            f"profile {session.profile.name}: "
            f"logits {case.verdict.status.upper()}"
        )
        width = max(len(s.name) for s in localization.stages)
        print(f"{'stage':<{width}}  {'rel L2':>10}  {'cosine':>12}  {'max rel':>10}  {'max abs':>10}  verdict")
        for stage in localization.stages:
            print(
                f"{stage.name:<{width}}  {stage.rel_l2_error:>10.3e}  {stage.cosine_similarity:>12.9f}  "
                f"{stage.max_rel_error:>10.3e}  {stage.max_abs_error:>10.3e}  {stage.status.upper()}"
            )
        print(localization.line(logits_failed=not case.verdict.passed))
    if args.dump:
        from resnet34_npu.reports.msprobe_dump import dump_runs, summary_lines

        trees = dump_runs(args.dump, localized, session.reference, session.batch([args.image]))
        for line in summary_lines(trees, localized.name, runner.name, session.reference.name):
            print(line, file=sys.stderr if args.json else sys.stdout)
    if args.png:
        from resnet34_npu.reports.chart import write_stage_chart

        print(f"chart written to {write_stage_chart(localization, args.png, runner.name)}")
    return EXIT_FAIL if localization.first_failing or not case.verdict.passed else EXIT_OK


def _cmd_controls(args: argparse.Namespace) -> int:
    from resnet34_npu.judge.faults import run_controls

    images = find_images(args.image) if args.image else None
    for image in images or []:
        load_image(image)
    results = run_controls(args.weights, images)
    profiles = list(results[0].verdicts)
    print("| control | what | intended | rel L2 | " + " | ".join(profiles) + " | first diverging stage |")
    print("| --- " * (len(profiles) + 5) + "|")
    wrong = []
    for r in results:
        cells = []
        for p in profiles:
            verdict = r.verdicts[p]
            caught = verdict == Status.FAIL
            if r.control.intended == Status.FAIL:
                cells.append("caught" if caught else f"**missed** ({verdict})")
            else:
                cells.append(verdict if not caught else "**false alarm**")
        stage = r.first_stage or ("(after the last stage)" if r.localizable else "-")
        print(
            f"| `{r.control.factory}` | {r.control.description} | {r.control.intended} | {r.rel_l2_error:.2e} | "
            + " | ".join(cells)
            + f" | {stage} |"
        )
        if (r.verdicts["default"] == Status.FAIL) != (r.control.intended == Status.FAIL):
            wrong.append(r.control.factory)
    if wrong:
        print(f"default profile got these controls wrong: {', '.join(wrong)}")
    return EXIT_FAIL if wrong else EXIT_OK


def _cmd_report_merge(args: argparse.Namespace) -> int:
    from resnet34_npu.reports import fleet

    if args.output != STDOUT and any(
        Path(r).is_file() and Path(r).resolve() == Path(args.output).resolve() for r in args.reports
    ):
        raise InputError(f"--output {args.output!r}: is one of the reports to merge; write the fleet report elsewhere")
    try:
        merged = fleet.merge(args.reports, skip_invalid=args.skip_invalid, exclude=args.output)
    except fleet.RefusedReports as exc:  # every refused file, one line each, then what to do
        for refusal in exc.refusals:
            print(f"resnet34-npu report: error: {one_line(refusal.line())}", file=sys.stderr)
        print(
            f"resnet34-npu report: error: {len(exc.refusals)} file(s) refused, nothing written "
            "(--skip-invalid merges the others and lists these)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    output = check_writable(args.output)
    out = sys.stderr if output == STDOUT else sys.stdout  # with -o -, the document alone is standard output
    for line in fleet.summary_lines(merged, every_card=args.all):
        print(line, file=out)
    write_json_atomic(output, merged.to_dict())
    where = "standard output" if output == STDOUT else plain(output)
    print(f"{fleet.verdict_line(merged)}; fleet report written to {where}", file=out)
    return EXIT_OK if merged.verdict == Status.PASS else EXIT_FAIL


def _cmd_report_html(args: argparse.Namespace) -> int:
    from resnet34_npu.reports.html import convert

    path = convert(args.report, args.output, charts=not args.no_charts)
    if path is not None:
        print(f"HTML report written to {plain(path)}")
    return EXIT_OK


def _settings(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "-"


def _cmd_devices(args: argparse.Namespace) -> int:
    rows = devices.list_devices()
    if args.json:
        print(dumps([row.to_dict() for row in rows]), end="")
        return EXIT_OK
    width = max(len(row.device) for row in rows)
    for row in rows:
        if row.available:
            print(f"{row.device:<{width}}  available      {row.name}; {_settings(row.precision)}")
        else:
            print(f"{row.device:<{width}}  not available  {row.reason}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Terminated:
        print("resnet34-npu: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except InputError as exc:
        print(f"resnet34-npu {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("resnet34-npu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of a pipe (`| head`) stopped reading: stop quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except Exception as exc:
        # A crash is not a verdict: exit 3, never 1 ("a target failed").
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        print(
            f"resnet34-npu {args.command}: internal error: {type(exc).__name__}: {one_line(exc)} "
            + ("" if os.environ.get(DEBUG_ENV) else f"(set {DEBUG_ENV}=1 for the traceback)"),
            file=sys.stderr,
        )
        return EXIT_CRASH
