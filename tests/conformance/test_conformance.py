"""The conformance suite: what users run on their hardware to sign a machine off.

Parametrised by the plugin over targets x images x batch sizes. The CPU fp32 reference and
every target's logits are computed once per session and shared by these tests, so each check
below costs only a comparison. On a CPU-only host the CPU targets (fp32, bf16 autocast,
channels_last) make these real comparisons; absent accelerators are skips with the reason.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from resnet34_npu import CaseResult, NonDeterminismWarning, RankingWarning, compare_logits, judge
from resnet34_npu.core.errors import plain
from resnet34_npu.model.labels import describe


def test_verdict(r34, r34_target, r34_image, r34_batch, r34_record):
    """The profile's verdict on this target, image and batch size (a warning verdict passes
    with a pytest warning)."""
    images = r34.batch_images(r34_image, r34_batch)
    case = r34.case(r34_target, images)
    r34_record("verdict", r34_target, case, batch=r34_batch)
    if not case.verdict.passed:
        pytest.fail(
            f"{plain(r34_target)} on {plain(case.image)} fails profile {r34.profile!r}:\n"
            + "\n".join(map(plain, case.verdict.failures)),
            pytrace=False,
        )


@pytest.mark.r34_cards
def test_card_to_card(r34, r34_target, r34_image):
    """This card computes, bit for bit, what the other cards of this host compute for the same
    target on the same image: a card whose output differs from the majority fails here, by name,
    even when it passes against the CPU (a silent fault); parametrised only over targets that two
    or more cards run."""
    found = r34.card_to_card(r34_target, r34_image)
    card = str(r34.describe(r34_target)["device"])
    mine = [o for o in found.outliers if o.card == card]
    if mine or found.no_majority:
        pytest.fail(
            f"{plain(r34_target)} on {plain(r34_image.name)}: "
            + ("this card differs from the majority" if mine else "the cards have no majority output")
            + "\n"
            + "\n".join(map(plain, found.lines())),
            pytrace=False,
        )


def _ranking_check(r34, r34_target, case: CaseResult, problems: list[str], metric: str) -> None:
    """The verdict must report ``metric`` exactly when the ranking differs (at the profile's
    level for this precision); then fail when the profile fails on it, warn when it only warns
    (or has no rule on it), so these tests agree with the verdict."""
    level = r34.session.profile.level_of(metric, r34.runner(r34_target).precision)
    flagged = [f for f in case.verdict.failures + case.verdict.warnings if f.metric == metric]
    if not problems:
        assert not flagged, f"the verdict reports {metric} on {r34_target}, whose rankings all agree: {flagged[0]}"
        return
    if level is not None:
        assert flagged and flagged[0].level == level, (
            f"{metric} differs on {r34_target} but the verdict does not report it at level {level!r}: "
            + "; ".join(problems)
        )
    message = f"{metric} on {r34_target}:\n" + "\n".join(problems)
    if level == "fail":
        pytest.fail(message, pytrace=False)
    note = f"(profile {r34.profile!r} does not fail on {metric} at this precision)"
    warnings.warn(RankingWarning(f"{message}\n{note}"), stacklevel=2)


def test_top1(r34, r34_target, r34_image, r34_batch):
    """Top-1 agrees with the reference for every sample (reported on its own, so a user sees
    which check broke)."""
    images = r34.batch_images(r34_image, r34_batch)
    case = r34.case(r34_target, images)
    problems = [
        f"sample {i} ({images[i].name}): reference top-1 {describe(s.reference_top5[0])}, "
        f"target top-1 {describe(s.target_top5[0])}"
        for i, s in enumerate(case.comparison.samples)
        if not s.top1_match
    ]
    _ranking_check(r34, r34_target, case, problems, "top1_match")


def test_top5(r34, r34_target, r34_image, r34_batch):
    """Top-5 overlap is 5/5 for every sample (order may differ); where it is not, the verdict
    says so at the profile's level (the default profile only warns: a RankingWarning), and where
    it is, the verdict reports no top-5 finding."""
    images = r34.batch_images(r34_image, r34_batch)
    case = r34.case(r34_target, images)
    problems = [
        f"sample {i} ({images[i].name}): top-5 overlap {s.top5_overlap}/5, reference {list(s.reference_top5)}, "
        f"target {list(s.target_top5)}"
        for i, s in enumerate(case.comparison.samples)
        if s.top5_overlap < 5
    ]
    _ranking_check(r34, r34_target, case, problems, "top5_overlap")


@pytest.mark.r34_heavy
def test_batch_invariance(r34, r34_target, r34_image, r34_record):
    """A sample's logits inside a batch of 8 agree with the same sample run alone, on the same
    target, within the profile's bounds for the target's precision."""
    runner = r34.runner(r34_target)
    alone = r34.logits(r34_target, (r34_image,))
    in_batch = r34.logits(r34_target, r34.batch_images(r34_image, 8))[:1]
    comparison = compare_logits(alone, in_batch, precision=runner.precision)
    verdict = judge(comparison, r34.session.profile)
    r34_record("batch_invariance", r34_target, _case(r34_image, verdict, comparison))
    assert verdict.passed, f"{r34_image.name} in a batch of 8 vs alone on {r34_target}:\n" + "\n".join(
        verdict.failure_lines
    )


@pytest.mark.r34_heavy
def test_repeatability(r34, r34_target, r34_image, r34_record):
    """Two runs on the same input are bit-identical; otherwise the difference is the device's
    non-determinism, reported as a warning and judged by the profile."""
    runner = r34.runner(r34_target)
    first = r34.logits(r34_target, (r34_image,))
    second = runner.run(r34.session.batch([r34_image]))
    identical = torch.equal(first, second)
    comparison = compare_logits(first, second, precision=runner.precision)
    verdict = judge(comparison, r34.session.profile)
    r34_record("repeatability", r34_target, _case(r34_image, verdict, comparison), nondeterministic=not identical)
    if not identical:
        warnings.warn(
            NonDeterminismWarning(
                f"{r34_target}: two runs on {r34_image.name} differ (max abs {comparison.max_abs_error:.3e}, "
                f"rel L2 {comparison.rel_l2_error:.3e}): the device is not deterministic"
            ),
            stacklevel=2,
        )
    assert verdict.passed, f"{r34_target} run twice on {r34_image.name}:\n" + "\n".join(verdict.failure_lines)


def _case(image, verdict, comparison):
    return CaseResult((image.name,), verdict, comparison, paths=(str(image),))
