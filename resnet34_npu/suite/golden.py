"""Golden outputs: the CPU fp32 reference's logits and top-5 for the bundled photos under
seeded weights, stored in fixtures/golden/ and compared on every run, so a torch upgrade that
changes CPU numerics shows up. One flag regenerates them."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from resnet34_npu.core.constants import FIXTURES_DIR
from resnet34_npu.core.documents import utc_now
from resnet34_npu.core.files import write_json_atomic
from resnet34_npu.judge.metrics import top_k
from resnet34_npu.model.weights import WeightsInfo, parse_weights_spec

GOLDEN_DIR = FIXTURES_DIR / "golden"
REGENERATE = "pytest tests/conformance/test_golden.py --r34-update-golden"
#: Golden files stay small: 1000 logits as JSON numbers.
MAX_BYTES = 64 * 1024


def golden_path(image: Path, weights: WeightsInfo) -> Path | None:
    """Where the golden output of ``image`` under ``weights`` lives; None when the weights are
    not seeded (only seeded weights are reproducible everywhere without a download)."""
    spec = parse_weights_spec(weights.spec)
    if spec.kind != "seeded":
        return None
    return GOLDEN_DIR / f"{Path(image).stem}.seeded-{spec.seed}.json"


def write_golden(path: Path, image: Path, weights: WeightsInfo, logits: torch.Tensor) -> None:
    row = logits.reshape(-1).float()
    document: dict[str, Any] = {
        "image": Path(image).name,
        "weights": {"spec": weights.spec, "tensor_sha256": weights.tensor_sha256},
        "created": utc_now(),
        "made_with": {"torch": torch.__version__, "machine": platform.machine()},
        "top5": [i for i, _ in top_k(row[None], 5)[0]],
        "logits": [float(v) for v in row],
    }
    write_json_atomic(path, document)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise AssertionError(f"golden file {path} is {size} bytes, over the {MAX_BYTES}-byte cap")


def read_golden(path: Path) -> tuple[torch.Tensor, list[int], dict[str, Any]]:
    """Logits [1, 1000] (float32), top-5 and the whole document. A missing file raises
    FileNotFoundError with the exact command that creates it."""
    if not path.is_file():
        raise FileNotFoundError(f"golden file {path} is missing; create it with: {REGENERATE}")
    document = json.loads(path.read_text())
    return torch.tensor(document["logits"], dtype=torch.float32)[None], list(document["top5"]), document
