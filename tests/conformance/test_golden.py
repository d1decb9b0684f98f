"""Today's CPU fp32 reference against the outputs stored in fixtures/golden/.

Judged by the default profile's fp32 row (relative L2 <= 1e-5) plus an identical top-5: a
different CPU or a torch release that reorders a reduction moves logits by ~1e-7 relative and
passes; a torch upgrade that changes CPU numerics materially fails. Regenerate with
``pytest tests/conformance/test_golden.py --r34-update-golden``.
"""

from __future__ import annotations

import pytest

from resnet34_npu.core.constants import DEFAULT_SEED, IMAGES_DIR, PHOTOS
from resnet34_npu.judge.criteria import judge
from resnet34_npu.judge.metrics import compare_logits, top_k
from resnet34_npu.model.weights import parse_weights_spec
from resnet34_npu.suite.golden import REGENERATE, golden_path, read_golden, write_golden

pytestmark = pytest.mark.golden


@pytest.mark.parametrize("photo", PHOTOS)
def test_golden(r34, photo):
    """Only the bundled photos under seeded weights (seed 42) have golden outputs."""
    session = r34.session
    spec = parse_weights_spec(session.weights_info.spec)
    if spec.kind != "seeded" or spec.seed != DEFAULT_SEED:
        pytest.skip(f"golden outputs are stored for seeded weights (seed {DEFAULT_SEED}) only, not {spec.text!r}")
    image = IMAGES_DIR / photo
    path = golden_path(image, session.weights_info)
    today = session.reference_logits([image])
    if r34.update_golden:
        write_golden(path, image, session.weights_info, today)
        return
    if not path.is_file():
        pytest.fail(f"golden file {path} is missing; create it with: {REGENERATE}", pytrace=False)
    golden, top5, document = read_golden(path)
    assert document["weights"]["tensor_sha256"] == session.weights_info.tensor_sha256, (
        f"{path} was made with other weights; regenerate it"
    )
    assert [i for i, _ in top_k(today, 5)[0]] == top5, f"top-5 changed from the golden {top5}"
    verdict = judge(compare_logits(golden, today), "default")
    assert verdict.passed, (
        f"CPU reference drifted from {path.name} (made with torch {document['made_with']['torch']}):\n"
        + "\n".join(verdict.failure_lines)
    )
