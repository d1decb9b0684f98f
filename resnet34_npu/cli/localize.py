"""``localize``: every stage of ResNet34 on a target against the reference: where does it break
(a table, a chart, msprobe dumps)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet34_npu.cli import args as shared
from resnet34_npu.core.documents import dumps
from resnet34_npu.core.errors import InputError, plain

EXIT_OK, EXIT_FAIL = shared.EXIT_OK, shared.EXIT_FAIL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "localize", help="compare every stage of ResNet34 on a target with the reference: where does it break?"
    )
    p.add_argument(
        "--target", default="auto", metavar="SPEC", help="the target, built-in or module.path:factory (default: auto)"
    )
    shared.add_image(p)
    p.add_argument("--reference", default="cpu", metavar="SPEC", help="the reference target (default: cpu)")
    shared.add_weights(p)
    shared.add_profile(p, "rules a stage must keep")
    p.add_argument(
        "--png", metavar="PATH", help="also write a chart of the relative L2 error per stage (needs matplotlib)"
    )
    shared.add_json(p, "the per-stage results")
    p.add_argument(
        "--dump",
        metavar="DIR",
        help="also write every stage's inputs and output as msprobe (mindstudio-probe) PyTorch dumps: DIR/target "
        "and DIR/reference, each a complete tree (step0/rank0/dump.json + dump_tensor_data/*.pt; a target without "
        "module hooks dumps its eager twin), then print the `msprobe compare` command for them",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet34_npu.judge.compare import Session
    from resnet34_npu.model.images import load_image
    from resnet34_npu.targets.spec import parse_target

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
