"""One prepared run of the execution modes on an accelerator: for each target, the verdict on
the bundled photos against the CPU fp32 reference, the rel L2 error, the build (compile,
capture or export) time, the median latency at batch 1 and the throughput at batch 256, all in
one process, each target after the previous one. Results go to $OUT/modes.json after every
target (a run cut short keeps what it measured) and as a table on standard output.

Usage (repository root): OUT=hardware-run PYTHONPATH=. python3 docs/hardware/run_modes.py [cuda|npu]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from resnet34_npu.core.constants import IMAGES_DIR, PHOTOS
from resnet34_npu.core.errors import InputError
from resnet34_npu.judge.compare import Session

KIND = sys.argv[1] if len(sys.argv) > 1 else "cuda"
D = f"{KIND}:0"
TARGETS = {
    "cuda": [
        f"{D}/fp32",
        f"{D}/fp32/tf32=off",
        f"{D}/fp16",
        f"{D}/fp16/channels_last",
        f"{D}/fp32/graph",
        f"{D}/fp16/graph",
        f"{D}/fp16/channels_last/graph",
        f"{D}/fp32/ort",
        f"{D}/fp16/tensorrt",
        f"{D}/fp16/compile/compile_mode=reduce-overhead",
        f"{D}/fp32/compile/compile_mode=reduce-overhead",
        f"{D}/fp16/export",
        f"{D}/fp16/channels_last/compile/compile_mode=max-autotune",
        f"{D}/fp32/compile/compile_mode=max-autotune",
    ],
    "npu": [
        f"{D}/fp32",
        f"{D}/fp16",
        f"{D}/fp32/graph",
        f"{D}/fp16/graph",
        f"{D}/fp32/ort/cann_precision=must_keep_origin_dtype",
        f"{D}/fp32/ort",
        f"{D}/fp16/compile",
        f"{D}/fp16/compile/torchair_mode=reduce-overhead",
    ],
    "cpu": [  # the same figures on a CPU (R34_BIG_BATCH=16 there)
        "cpu/fp32",
        "cpu/fp32/channels_last",
        "cpu/bf16-autocast",
        "cpu/fp32/ort",
        "cpu/fp16/ort",
        "cpu/fp32/compile",
        "cpu/fp32/export",
    ],
}[KIND]
D = "cpu" if KIND == "cpu" else D
BIG = int(os.environ.get("R34_BIG_BATCH", "256"))


def main() -> None:
    out = Path(os.environ.get("OUT", "hardware-run"))
    out.mkdir(parents=True, exist_ok=True)
    images = [IMAGES_DIR / p for p in PHOTOS]
    session = Session("seeded", "cpu")
    reference = session.reference.time(session.batch(images[:1]), warmup=3, iters=20)
    rows: list[dict] = []

    def save() -> None:
        doc = {
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if KIND == "cuda" else KIND,
            "reference_cpu_ms_batch1": round(reference.median, 3),
            "big_batch": BIG,
            "rows": rows,
        }
        (out / "modes.json").write_text(json.dumps(doc, indent=1))

    for spec in TARGETS:
        row: dict = {"target": spec}
        start = time.perf_counter()
        try:
            runner = session.runner(spec)
        except InputError as exc:
            row["skipped"] = str(exc)
            rows.append(row)
            save()
            print(f"{spec}: skipped: {exc}", flush=True)
            continue
        except Exception as exc:  # a backend that breaks on this host: record it, go on
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            rows.append(row)
            save()
            print(f"{spec}: error: {row['error']}", flush=True)
            continue
        built = time.perf_counter() - start
        result = session.evaluate(runner, images, iters=0)
        one = runner.time(session.batch(images[:1]), warmup=10, iters=200)
        big_batch = session.batch([images[0]] * BIG)
        big = runner.time(big_batch, warmup=3, iters=20)
        info = runner.describe()
        row.update(
            verdict=result.verdict.value,
            effective_precision=info["effective_precision"],
            rel_l2_error=max(c.comparison.rel_l2_error for c in result.cases),
            top1_match=min(c.comparison.top1_match for c in result.cases),
            failures=[line for c in result.cases for line in c.verdict.failures],
            build_s=round(info.get("engine", {}).get("build_s", built), 2),
            latency_ms_batch1=round(one.median, 4),
            images_per_s_batch256=round(BIG / (big.median / 1000), 1),
            engine=info.get("engine"),
        )
        rows.append(row)
        print(
            f"{spec}: {row['verdict']} ({row['effective_precision']}) rel L2 {row['rel_l2_error']:.2e}, "
            f"build {row['build_s']} s, batch 1 {row['latency_ms_batch1']:.3f} ms, "
            f"batch {BIG} {row['images_per_s_batch256']:.0f} img/s",
            flush=True,
        )
        save()
        del runner, big_batch
        if KIND == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
