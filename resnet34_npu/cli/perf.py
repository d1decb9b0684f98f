"""``perf``: speed as MLPerf Inference states it, measured by the real LoadGen in one scenario
(SingleStream, MultiStream, Offline, Server) for each target, with TEST01, TEST04, accuracy
against the CPU reference and the fraction of the device's peak; a compare-style JSON report
with a ``loadgen`` object per target, LoadGen's own logs beside it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet34_npu.cli import args as shared
from resnet34_npu.core.constants import IMAGES_DIR, PHOTOS
from resnet34_npu.core.errors import InputError, plain
from resnet34_npu.core.files import STDOUT, check_writable, write_json_atomic
from resnet34_npu.judge.criteria import Status
from resnet34_npu.perf import loadgen
from resnet34_npu.perf.loadgen import SERVER_BOUND_MS

if TYPE_CHECKING:
    from resnet34_npu.perf.run import Measurement

EXIT_INTERRUPTED = 130


def scenario(text: str) -> loadgen.Scenario:
    try:
        return loadgen.parse_scenario(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_number(what: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {what}") from None
        if not (value > 0 and value != float("inf")):
            raise argparse.ArgumentTypeError(f"{text!r} must be a positive, finite number of {what}")
        return value

    return parse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("perf", help="speed as MLPerf states it: LoadGen scenarios, TEST01/TEST04, fraction of peak")
    p.add_argument(
        "--scenario",
        required=True,
        type=scenario,
        metavar="NAME",
        help="; ".join(f"{s.name}: {s.help}" for s in loadgen.SCENARIOS.values()),
    )
    p.add_argument(
        "--target",
        action="extend",
        nargs="+",
        metavar="SPEC",
        help="targets, as in compare: DEVICE[/DTYPE][/MODE...] or module.path:factory (default: cpu/fp32)",
    )
    p.add_argument(
        "--every-card",
        action="store_true",
        help="Offline and Server: each accelerator target runs on every visible card of its kind at once, one "
        "system under test, the query shared by what each card finishes (default: the card named)",
    )
    shared.add_images(p, "images or folders for the sample library")
    p.add_argument("--dataset", metavar="DIR", help="a dataset folder (as compare --dataset) for the sample library")
    p.add_argument("--labels", metavar="FILE", help="labels in val_map.txt form (default: DIR/val_map.txt)")
    p.add_argument(
        "--samples", default=1024, type=shared.positive, metavar="N", help="dataset images preprocessed (default: 1024)"
    )
    p.add_argument(
        "--duration",
        default=10.0,
        type=shared.seconds,
        metavar="S",
        help="LoadGen's min duration of the performance run (default: 10; MLPerf submissions: 600)",
    )
    p.add_argument(
        "--min-queries",
        type=shared.positive,
        metavar="N",
        help="LoadGen's min query count (default: early stopping's minimum, SingleStream 64, MultiStream 662, "
        "Server 500; Offline 1)",
    )
    p.add_argument(
        "--batch-size",
        type=shared.positive,
        metavar="N",
        help="the batch the system under test runs (default: SingleStream 1, MultiStream 8, Offline 16, Server 1)",
    )
    p.add_argument(
        "--target-qps",
        type=positive_number("queries a second"),
        metavar="Q",
        help="Server: run at this QPS (default: the bisection for the highest QPS meeting the bound)",
    )
    p.add_argument(
        "--latency-bound",
        default=SERVER_BOUND_MS,
        type=positive_number("milliseconds"),
        metavar="MS",
        help=f"Server: the p99 latency bound (default: {SERVER_BOUND_MS:g}, MLPerf's for ResNet50)",
    )
    p.add_argument(
        "--server-tries",
        default=6,
        type=shared.positive,
        metavar="N",
        help="Server: runs of the bisection (default: 6)",
    )
    p.add_argument("--no-compliance", action="store_true", help="skip TEST01 and TEST04 (default: run them)")
    p.add_argument(
        "--no-accuracy", action="store_true", help="skip the top-1 check against the reference (default: run it)"
    )
    shared.add_weights(p, "the same weights for targets and reference")
    shared.add_reference(p)
    p.add_argument(
        "--output",
        "-o",
        default="perf_results.json",
        metavar="PATH",
        help="JSON report, written atomically; LoadGen's logs go to PATH's name with .loadgen (default: "
        "perf_results.json)",
    )
    p.set_defaults(func=run)


def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", name).strip("_") or "target"


def line_of(name: str, m: Measurement) -> str:
    """One line per target: validity, the metric, the early-stopping estimate, checks, the peak."""
    r = m.result
    if r is None:
        return f"{m.scenario} {name}: not measured" + (" (interrupted)" if m.interrupted else "")
    parts = [f"{r.validity}"]
    if r.value is not None:
        parts.append(f"{r.metric} {r.value:.4g} {r.unit}")
    pct = r.percentiles_ms
    if "p90" in pct and m.scenario != "Offline":
        parts.append(f"p90 {pct['p90']:.4g} ms, p99 {pct.get('p99', float('nan')):.4g} ms")
    parts.append(f"{r.query_count} queries, {r.sample_count} samples in {r.duration_s:.1f} s")
    if m.tries:
        parts.append(f"{len(m.tries)} QPS tries")
    checks = [c for c in (m.test01, m.test04) if c is not None]
    if checks:
        parts.append(", ".join(f"{c.line.split(':')[0]} {'pass' if c.passed else 'FAIL'}" for c in checks))
    if m.limit is not None:
        lim = m.limit
        parts.append(
            f"{lim['fraction'] * 100:.2f} % of {lim['peak_tflops']:g} TFLOP/s {lim['precision']} peak"
            if lim.get("fraction") is not None
            else f"no peak fraction: {lim.get('reason', '')}"
        )
    return f"{m.scenario} {name}: " + "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    # torch and the model: imported by the command, not by --help
    from resnet34_npu.model.images import find_images
    from resnet34_npu.model.network import build_model_with_info
    from resnet34_npu.perf.run import Bench, Options, system, system_name
    from resnet34_npu.perf.sut import SampleLibrary
    from resnet34_npu.reports.report import build_report, unfinished_report
    from resnet34_npu.targets.runners import build_runner
    from resnet34_npu.targets.spec import parse_target

    output = check_writable(args.output)
    if output == STDOUT:
        raise InputError("--output -: perf writes LoadGen's logs beside its report; name a file")
    lg_folder = Path(output).with_suffix(".loadgen")
    lg = loadgen.module()  # not installed: one line saying how, before any work
    del lg
    s = args.scenario
    if args.every_card and s.name not in ("Offline", "Server"):
        raise InputError(f"--every-card: {s.name} runs one query at a time; use it with Offline or Server")
    if args.target_qps is not None and s.name != "Server":
        raise InputError("--target-qps is a Server setting; use it with --scenario Server")
    if args.dataset and args.image:
        raise InputError("--image and --dataset: the sample library is either images or a dataset, not both")
    specs = args.target or ["cpu/fp32"]
    for spec in [args.reference, *specs]:
        parse_target(spec)
    if args.dataset:
        library = SampleLibrary.from_dataset(args.dataset, args.labels, args.samples)
    else:
        images = find_images(args.image) if args.image else [IMAGES_DIR / name for name in PHOTOS]
        library = SampleLibrary.from_images(images)
    options = Options(
        s,
        duration_s=args.duration,
        min_queries=args.min_queries,
        batch_size=args.batch_size,
        target_qps=args.target_qps,
        latency_bound_ms=args.latency_bound,
        server_tries=args.server_tries,
        compliance=not args.no_compliance,
    )
    model, weights = build_model_with_info(args.weights)
    reference = None if args.no_accuracy else build_runner(args.reference, model)
    print(
        f"perf: {s.name} with MLPerf LoadGen; {len(library)} samples ({plain(library.source)}), preprocessed once; "
        f"batch {options.batch}; weights sha256 {weights.sha256[:16]}...; LoadGen logs in {plain(lg_folder)}"
    )
    write_json_atomic(output, unfinished_report("perf"))
    targets: list[dict[str, Any]] = []
    interrupted = False
    try:
        for spec in specs:
            runners = system(spec, model, every_card=args.every_card)
            name = system_name(runners)
            folder = lg_folder / _folder_name(name) / s.name
            measurement = Bench(runners, library, options, folder, say=lambda line: print(f"  {plain(line)}")).measure(
                reference
            )
            print(plain(line_of(name, measurement)))
            for failure in measurement.failures:
                print(f"FAIL {plain(name)}: {plain(failure)}")
            targets.append(_target(name, runners, measurement))
            if measurement.interrupted:
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
    report = build_report(
        profile="mlperf-loadgen",
        weights=weights.to_dict(),
        reference=reference.describe() if reference is not None else {"name": args.reference},
        targets=targets,
        extra={"perf": {"scenario": s.name, "samples": library.describe(), "loadgen_logs": str(lg_folder)}},
    )
    if interrupted:
        report["verdict"], report["interrupted"] = Status.INTERRUPTED, True
        report["note"] = "interrupted (Ctrl-C); the targets measured before it are kept"
    elif not targets:
        report["verdict"] = Status.NOT_RUN
    write_json_atomic(output, report)
    failed = [plain(t["name"]) for t in targets if t["verdict"] == Status.FAIL]
    print(
        f"verdict: {str(report['verdict']).upper()}"
        + (f" ({', '.join(failed)} failed)" if failed else "")
        + f"; report written to {plain(output)}"
    )
    if interrupted:
        return EXIT_INTERRUPTED
    return shared.EXIT_FAIL if failed else shared.EXIT_OK


def _target(name: str, runners: list, m: Measurement) -> dict[str, Any]:
    from resnet34_npu.perf.run import samples_per_second

    described = runners[0].describe()
    if len(runners) > 1:
        described["device"] = ",".join(str(getattr(r, "device", "custom")) for r in runners)
    rate = None if m.result is None else samples_per_second(m.result)
    return {
        **described,
        "name": name,
        "verdict": Status.PASS if m.passed else Status.FAIL,
        "latency_ms": None,
        "throughput_ips": rate,
        "images": [],
        "loadgen": m.to_dict(),
    }
