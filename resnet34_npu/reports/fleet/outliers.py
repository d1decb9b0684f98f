"""The latency-outlier rule of ``report merge``: the modified z-score and its bounds.

Why this rule: a card's median latency is compared with the cards that run
the same thing (same target spec without the card's index, same device model, same batch), in
the same group. The test is Iglewicz and Hoaglin's modified z-score, ``z = 0.6745 (x - median)
/ MAD`` with the median absolute deviation (MAD): median and MAD ignore the slow cards
themselves, where a mean and a standard deviation would be dragged towards them and hide them,
and 0.6745 makes ``z`` read as standard deviations for normal noise; they recommend calling
``z > 3.5`` an outlier (one card in about 4,300 of a normal fleet would exceed it). Only slower
cards are flagged. A robust z-score alone flags noise in a tight fleet (a MAD of 0.3 % makes a
card 1.5 % slower "an outlier"), so a card must also be at least 10 % slower than the median: a
run-to-run wobble of a few percent (clock boost, temperature, the host's load) is not worth an
operator's time, a 10 % slower card (throttled, a PCIe link trained at a lower width, another
driver) is. When the MAD is 0 (more than half the cards read the same median) the mean absolute
deviation times 1.253314 stands in, the usual fallback (equal for normal noise); when every card
reads the same, z is 0. A population of fewer than 3 cards has no fleet to compare with: no z.
A latency outlier is named, never a failure: the verdict is about the numbers a card computes.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

#: Iglewicz and Hoaglin's modified z-score: 0.6745 = the normal distribution's third quartile,
#: so that MAD / 0.6745 estimates the standard deviation; z > 3.5 is their outlier bound.
Z_SCALE = 0.6745
OUTLIER_Z = 3.5
#: ...and at least this much slower than the population's median (see the module docstring).
OUTLIER_MIN_EXCESS = 0.10
#: The mean absolute deviation times this estimates the standard deviation of normal noise
#: (sqrt(pi / 2)); it replaces MAD / 0.6745 when the MAD is 0.
MEAN_AD_SCALE = 1.253314
#: Fewer cards of a kind than this: no robust z (there is no fleet to compare with).
OUTLIER_MIN_CARDS = 3


def robust_z(values: Sequence[float]) -> tuple[list[float], float, float, str]:
    """Iglewicz and Hoaglin's modified z-score of each value: ``0.6745 (x - median) / MAD``; with a
    MAD of 0, ``(x - median) / (1.253314 mean absolute deviation)``; all 0 when every value is
    the same. Returns (scores, median, MAD, which scale was used)."""
    median = statistics.median(values)
    deviations = [abs(v - median) for v in values]
    mad = statistics.median(deviations)
    if mad > 0:
        return [Z_SCALE * (v - median) / mad for v in values], median, mad, "MAD"
    mean_ad = statistics.fmean(deviations)
    if mean_ad > 0:
        return [(v - median) / (MEAN_AD_SCALE * mean_ad) for v in values], median, mad, "mean absolute deviation"
    return [0.0 for _ in values], median, mad, "none"


def is_outlier(value: float, z: float, median: float) -> bool:
    """Slower than the population by both rules: robust z above 3.5 and at least 10 % over the median."""
    return z > OUTLIER_Z and value >= median * (1 + OUTLIER_MIN_EXCESS)
