"""``controls``: the negative and positive controls: which profile catches which fault."""

from __future__ import annotations

import argparse

from resnet34_npu.cli import args as shared

EXIT_OK, EXIT_FAIL = shared.EXIT_OK, shared.EXIT_FAIL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("controls", help="run the negative and positive controls: which profile catches which fault")
    shared.add_images(p, "images")
    shared.add_weights(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet34_npu.judge.criteria import Status
    from resnet34_npu.judge.faults import run_controls
    from resnet34_npu.model.images import find_images, load_image

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
