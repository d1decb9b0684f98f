"""Dataset-scale agreement (``pytest --r34-dataset=DIR [--r34-reference-file=REF]``): one test
per target over every image of the dataset, judged image by image with the suite's profile and,
where the dataset has labels, by MLPerf's accuracy rule. Collected only with ``--r34-dataset``."""

from __future__ import annotations

import pytest

from resnet34_npu.core.errors import InputError, one_line
from resnet34_npu.dataset.agreement import summary_lines
from resnet34_npu.judge.criteria import Status


@pytest.mark.r34_dataset
def test_dataset_agreement(r34, r34_target, r34_record):
    try:
        summary = r34.dataset_summary(r34_target)
    except InputError as exc:  # an image changed since the reference was built, ...: one line, no traceback
        pytest.fail(one_line(exc), pytrace=False)
    r34_record("dataset", r34_target, summary)
    assert summary["verdict"] in (Status.PASS, Status.WARN), "\n".join(summary_lines(r34_target, summary))
    assert summary["compared"] > 0, f"no image of {r34.dataset.root} could be compared"
