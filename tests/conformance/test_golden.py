"""Today's CPU fp32 reference against the outputs stored in fixtures/golden/.

Judged by the default profile's fp32 row (relative L2 <= 1e-5) plus an identical top-5: a
different CPU or a torch release that reorders a reduction moves logits by ~1e-7 relative and
passes; a torch upgrade that changes CPU numerics materially fails. Regenerate with
``pytest tests/conformance/test_golden.py --r34-update-golden``.
"""

from __future__ import annotations

import pytest

from resnet34_npu.criteria import judge
from resnet34_npu.golden import golden_path, read_golden, write_golden
from resnet34_npu.metrics import compare_logits, top_k

pytestmark = pytest.mark.golden


def test_golden(r34, r34_image):
    session = r34.session
    path = golden_path(r34_image, session.weights_info)
    if path is None:
        pytest.skip(f"golden outputs exist only for seeded weights, not {session.weights_info.spec!r}")
    today = session.reference_logits([r34_image])
    if r34.update_golden:
        write_golden(path, r34_image, session.weights_info, today)
        return
    try:
        golden, top5, document = read_golden(path)
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    assert document["weights"]["tensor_sha256"] == session.weights_info.tensor_sha256, (
        f"{path} was made with other weights; regenerate it"
    )
    assert [i for i, _ in top_k(today, 5)[0]] == top5, f"top-5 changed from the golden {top5}"
    verdict = judge(compare_logits(golden, today), "default")
    assert verdict.passed, f"CPU reference drifted from {path.name} (made with torch {document['made_with']['torch']}):\n" + "\n".join(verdict.failures)
