from __future__ import annotations

import pytest
import torch

from resnet34_npu import InputError
from resnet34_npu.core.constants import IMAGES_DIR
from resnet34_npu.judge.compare import Session
from resnet34_npu.targets.runners import CustomRunner, check_logits
from resnet34_npu.targets.spec import CustomSpec

PHOTOS = [IMAGES_DIR / "cat.jpg", IMAGES_DIR / "coffee.jpg"]


@pytest.fixture(scope="module")
def session():
    return Session("seeded", "cpu", fp64_truth=True)


def test_reference_and_truth_are_computed_once(session, monkeypatch):
    first = session.reference_logits(PHOTOS[:1])
    monkeypatch.setattr(session.reference, "run", lambda batch: pytest.fail("the reference ran again"))
    again = session.reference_logits(PHOTOS[:1])
    assert torch.equal(again, first) and again is not first, "a copy: callers may edit what they get"
    again.add_(1)
    assert torch.equal(session.reference_logits(PHOTOS[:1]), first)
    assert Session("seeded", "cpu").reference_logits(PHOTOS[:1]).equal(first), "shared by every session"
    assert torch.equal(session.truth_logits(PHOTOS[:1]), session.truth_logits(PHOTOS[:1]))
    assert session.truth_logits(PHOTOS[:1]).dtype == torch.float64


def test_cpu_fp32_against_itself_is_exact_and_as_good_as_the_cpu(session):
    case = session.compare(session.runner("cpu"), PHOTOS[:1])
    assert case.verdict.status == "pass" and case.metrics()["max_abs_error"] == 0.0
    assert case.truth["error_ratio_vs_cpu"] == 1.0
    assert 0 < case.truth["reference_truth_rel_l2_error"] < 1e-6


@pytest.mark.parametrize("spec", ["cpu/channels_last", pytest.param("cpu/bf16-autocast", marks=pytest.mark.slow)])
def test_healthy_cpu_targets_pass_the_default_profile(session, spec):
    result = session.evaluate(session.runner(spec), PHOTOS, iters=0)
    assert result.verdict in ("pass", "warn"), [c.verdict.failure_lines for c in result.cases]
    assert [c.image for c in result.cases] == ["cat.jpg", "coffee.jpg"]
    assert result.latency is None and result.speedup_vs_reference is None


class Broken:
    """A target whose one logit is off: the engine must fail it through the same path."""

    name = "broken"
    precision = "fp32"

    def __init__(self, model):
        self.model = model

    def __call__(self, batch):
        with torch.no_grad():
            out = self.model(batch)
        out[:, 425] += 1.0
        return out

    def synchronize(self):
        pass


def test_a_wrong_target_fails_with_its_lines(session):
    broken = CustomRunner(CustomSpec("test", "broken"), Broken(session.model), "broken", "fp32", None)
    result = session.evaluate(broken, PHOTOS[:1], warmup=0, iters=2)
    assert result.verdict == "fail"
    finding = result.cases[0].verdict.failures[0]
    assert finding.kind == "rule" and finding.metric == "rel_l2_error" and finding.value > finding.bound
    assert str(finding).startswith("rel_l2_error: ") and "class 425 'barn'" in str(finding)
    assert result.to_dict()["images"][0]["findings"]["failures"][0]["line"] == str(finding)
    assert result.latency.iterations == 2 and result.device == "custom"
    ref = session.reference_timing(1, 0, 2, PHOTOS[0])
    assert result.speedup_vs_reference == pytest.approx(ref.median / result.latency.median)


@pytest.mark.slow
def test_timing_fields(session):
    result = session.evaluate(session.runner("cpu"), PHOTOS[:1], warmup=1, iters=3)
    latency = result.to_dict()["latency_ms"]
    assert latency["iterations"] == 3 and latency["warmup"] == 1
    assert latency["min"] <= latency["median"] <= latency["max"]
    assert result.to_dict()["throughput_ips"] == pytest.approx(1000 / latency["median"])


@pytest.mark.parametrize(
    "value, words",
    [
        ([1, 2], "returned list"),
        (torch.zeros(1, 10), "shape [1, 10], expected [1, 1000]"),
        (torch.zeros(1, 1000, dtype=torch.int64), "torch.int64 logits"),
    ],
)
def test_targets_returning_the_wrong_thing_are_usage_errors(value, words):
    with pytest.raises(InputError, match=words.replace("[", r"\[").replace("]", r"\]")):
        check_logits("odd", value, 1)


@pytest.mark.slow
def test_batches_compare_per_sample(session):
    case = session.compare(session.runner("cpu/channels_last"), PHOTOS)
    assert case.image == "cat.jpg+coffee.jpg" and len(case.comparison.samples) == 2


def test_a_saturated_logit_is_judged_as_the_inf_it_stands_for():
    """Saturation mode (the 910A family) writes +-max of the dtype for an overflow: judged as Inf,
    the "no NaN or Inf" rule fails it; a finite logit just below max is left alone."""
    import torch

    from resnet34_npu.judge.compare import saturated_as_inf
    from resnet34_npu.judge.criteria import PROFILES, judge
    from resnet34_npu.judge.metrics import compare_logits

    reference = torch.linspace(-5, 5, 1000).reshape(1, 1000)
    fp16_max = torch.finfo(torch.float16).max
    saturated = reference.clone()
    saturated[0, 7] = fp16_max  # what an fp16 card in saturation mode leaves for +Inf
    judged = saturated_as_inf(saturated, "fp16")
    assert torch.isinf(judged[0, 7]) and judged[0, 7] > 0 and torch.equal(judged[0, 8:], saturated[0, 8:])
    assert torch.equal(saturated_as_inf(saturated, "fp32"), saturated)  # 65504 is an ordinary fp32 value
    kinds = [
        f.kind for f in judge(compare_logits(reference, judged, precision="fp16"), PROFILES["default"], {}).failures
    ]
    assert "nonfinite" in kinds  # the rule that a saturated value would otherwise escape
    plain = [
        f.kind for f in judge(compare_logits(reference, saturated, precision="fp16"), PROFILES["default"], {}).failures
    ]
    assert "nonfinite" not in plain
