"""``reference build``: the CPU reference (and the float64 truth) of every image of a dataset,
computed once into a stored reference file."""

from __future__ import annotations

import argparse

from resnet34_npu.cli import args as shared
from resnet34_npu.core.errors import InputError, plain
from resnet34_npu.core.files import STDOUT, check_writable

EXIT_OK = shared.EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reference", help="stored references: the CPU reference of a dataset, computed once")
    actions = p.add_subparsers(dest="action", required=True, parser_class=shared.Parser, metavar="ACTION")
    p = actions.add_parser(
        "build", help="compute the CPU fp32 reference (and the float64 truth) of every image of a dataset, once"
    )
    p.add_argument("--output", "-o", required=True, metavar="REF", help="the reference file, written atomically")
    shared.add_weights(p)
    shared.add_fp64_truth(p, "also store the float64 truth's logits (8 KB more an image)")
    shared.add_dataset_options(p, compare=False)
    p.set_defaults(func=build)


def build(args: argparse.Namespace) -> int:
    from resnet34_npu.dataset import reference_file
    from resnet34_npu.dataset import sources as dataset
    from resnet34_npu.dataset.sources import Progress
    from resnet34_npu.judge.compare import Session
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
