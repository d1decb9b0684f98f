"""Run-to-run and card-to-card consistency: the digests of a target's repeated outputs
(kept by :func:`~resnet34_npu.targets.timing.time_call`), judged bit for bit.

A card that passes every tolerance can still be broken (1 ulp off in one convolution, a bit
flipped once in a hundred runs); where the backend promises bitwise reproducibility under the
recorded settings the policy is ``bitwise`` and any second distinct output fails. Elsewhere it is
``tolerance``, with the reason: distinct outputs are reported and judged by the tolerance profile
only. Across the cards of one model and target, a card whose outputs differ from the majority's is
named with the images and the largest distance in ulps.

Distances are counted two ways. ``max_ulp`` is the distance at the output's scale: per image
row, ``max|a - b|`` over the row in units of the ulp of that row's largest magnitude
(:func:`max_ulp`), so a 1-ulp error in a convolution that reaches a logit near zero reads as
about 1, not as the millions of raw ulps between two tiny floats. ``max_ulp_raw`` is the raw
count (:func:`raw_ulp`): how many representable floats lie between the two most distant
elements, which is what a bitwise check sees; it is huge near zero and is kept so that a reader
can see both.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from resnet34_npu.judge.criteria import Status
from resnet34_npu.targets.timing import Timing

BITWISE = "bitwise"
TOLERANCE = "tolerance"
#: Why each backend is held to ``bitwise`` run to run (same input, same software, same card).
PROMISES = {
    "cpu": "PyTorch's CPU kernels (oneDNN) repeat bit for bit on a fixed platform and thread count",
    "cuda": "cuBLAS and cuDNN promise bitwise run-to-run results on one architecture and stream (cudnn.benchmark off)",
    "npu": "torch_npu's own tests require every repeated result equal under deterministic algorithms",
}


@dataclass(frozen=True)
class Policy:
    """``bitwise`` or ``tolerance``, and why."""

    name: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def policy_for(
    device_type: str,
    settings: Mapping[str, Any],
    problems: Sequence[str] = (),
    *,
    emulated: bool = False,
    custom: bool = False,
) -> Policy:
    """The run-to-run policy of a target on ``device_type`` under the determinism ``settings``
    (:func:`~resnet34_npu.targets.determinism.recorded`); ``problems`` are settings that could not
    be set (each one makes the policy ``tolerance``)."""
    if problems:
        return Policy(TOLERANCE, "; ".join(problems))
    if custom:
        return Policy(TOLERANCE, "a custom target declares no determinism")
    if device_type == "cpu":
        return Policy(BITWISE, PROMISES["cpu"])
    if device_type == "cuda":
        if settings.get("cudnn_benchmark"):
            return Policy(TOLERANCE, "cudnn.benchmark=True: cuDNN's autotuner may pick another algorithm run to run")
        return Policy(BITWISE, PROMISES["cuda"])
    if device_type == "npu":
        if settings.get("deterministic_algorithms"):
            return Policy(BITWISE, PROMISES["npu"])
        if emulated:
            return Policy(BITWISE, "the emulated card computes with the CPU's kernels, which repeat bit for bit")
        return Policy(
            TOLERANCE,
            "torch.are_deterministic_algorithms_enabled() is False: torch_npu promises equal results only "
            "under torch.use_deterministic_algorithms(True) (pass --deterministic)",
        )
    return Policy(TOLERANCE, f"{device_type}: no documented promise of run-to-run bitwise results")


def _same_arrays(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError(f"cannot count ulps between {a.dtype}{list(a.shape)} and {b.dtype}{list(b.shape)}")


def raw_ulp(a: np.ndarray, b: np.ndarray) -> int:
    """The largest raw distance in units in the last place between two float arrays of one dtype:
    how many representable floats lie between the two most distant elements (across zero too).
    Near zero floats are dense, so a tiny absolute change counts as a huge number of these
    (bf16 outputs are kept as float32 and counted in float32 ulps)."""
    _same_arrays(a, b)
    bits = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    mask = np.int64(np.iinfo(bits).max)

    def ordered(x: np.ndarray) -> np.ndarray:
        raw = np.ascontiguousarray(x).view(bits).astype(np.int64)
        return np.where(raw < 0, -(raw & mask), raw)

    return int(np.abs(ordered(a) - ordered(b)).max()) if a.size else 0


def max_ulp(a: np.ndarray, b: np.ndarray) -> float:
    """The largest distance between two float arrays of one dtype in ulps at the output's scale.

    Per image row (the first axis of a 2-D or larger array; a 1-D array is one image's logits):
    ``max|a - b|`` over the row divided by ``numpy.spacing(m)``, where ``m`` is the largest finite
    magnitude in either row. ``numpy.spacing(x)`` is "the distance between x and the nearest
    adjacent number", ``|x|``'s ulp (``spacing(1.0) == finfo.eps``; positive for positive ``x``),
    so this is how many units of the last place of the row's largest logit the two rows are
    apart. Per row, not per array: the images of a batch have logits of their own scale, and a
    row of small logits is not judged by another image's large ones. The larger magnitude of
    either row, not only the reference's: the count is symmetric, and a row of zeros against a
    changed row still has a scale. A 1-ulp change of the largest logit is 1.0; the same absolute
    change of a logit near zero is also about 1 (its :func:`raw_ulp` may be a million). A row
    where a non-finite element differs is infinitely far (``inf``). bf16 outputs are kept as
    float32 and counted in float32 ulps."""
    _same_arrays(a, b)
    if not a.size:
        return 0.0
    rows_a = a.reshape(a.shape[0], -1) if a.ndim >= 2 else a.reshape(1, -1)
    rows_b = b.reshape(rows_a.shape)
    finite = np.isfinite(rows_a) & np.isfinite(rows_b)
    nonfinite_differs = ~finite & ~((rows_a == rows_b) | (np.isnan(rows_a) & np.isnan(rows_b)))
    if nonfinite_differs.any():
        return math.inf
    magnitude = np.where(finite, np.maximum(np.abs(rows_a), np.abs(rows_b)), 0).max(axis=1)
    unit = np.spacing(magnitude.astype(a.dtype)).astype(np.float64)
    wide_a, wide_b = rows_a.astype(np.float64), rows_b.astype(np.float64)
    distance = np.where(finite, np.abs(wide_a - wide_b), 0.0).max(axis=1)
    return float((distance / unit).max())


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


def ulps(scaled: float, raw: int | None) -> str:
    """How far apart, as the failure lines print it: ``1 ulp at scale (1043456 raw)``."""
    return f"{scaled:.3g} ulp at scale" + ("" if raw is None else f" ({raw} raw)")


@dataclass(frozen=True)
class RunToRun:
    """One target's repeated outputs of one input: how many, how many distinct, how far apart
    (from the first output), under which policy."""

    policy: str
    reason: str
    outputs: int
    distinct: int
    max_abs: float
    #: ulps at the output's scale (:func:`max_ulp`); ``max_ulp_raw``: the raw count (:func:`raw_ulp`)
    max_ulp: float
    #: 0-based call (warm-up calls first) of the first output that differs from the first one
    first_mismatch: int | None
    max_ulp_raw: int | None = None

    @property
    def passed(self) -> bool:
        return self.distinct <= 1 or self.policy == TOLERANCE

    def line(self, name: str) -> str:
        if self.distinct <= 1:
            return f"run-to-run {name}: {self.outputs} outputs, bit-identical ({self.policy})"
        how = "FAIL" if not self.passed else "note"
        return (
            f"run-to-run {how} {name}: {self.distinct} distinct outputs in {self.outputs} runs (first differs at run "
            f"{self.first_mismatch}), max abs {self.max_abs:.3e}, max {ulps(self.max_ulp, self.max_ulp_raw)}; "
            f"policy {self.policy}: {self.reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def run_to_run(timing: Timing, policy: Policy) -> RunToRun | None:
    """The run-to-run record of ``timing``'s outputs (None when it kept none)."""
    digests = timing.digests
    if not digests:
        return None
    first = timing.outputs.get(digests[0])
    others = [timing.outputs[d] for d in dict.fromkeys(digests) if d != digests[0] and d in timing.outputs]
    mismatch = next((i for i, d in enumerate(digests) if d != digests[0]), None)
    return RunToRun(
        policy.name,
        policy.reason,
        len(digests),
        len(set(digests)),
        max((max_abs(first, o) for o in others), default=0.0) if first is not None else 0.0,
        max((max_ulp(first, o) for o in others), default=0.0) if first is not None else 0.0,
        mismatch,
        max((raw_ulp(first, o) for o in others), default=0) if first is not None else 0,
    )


@dataclass(frozen=True)
class Outlier:
    """A card whose outputs differ from its group's majority."""

    card: str
    images: tuple[str, ...]
    #: ulps at the output's scale (:func:`max_ulp`); None where the outputs were not at hand
    #: (``report merge``: a report carries digests only)
    max_ulp: float | None
    max_abs: float | None
    #: the raw count (:func:`raw_ulp`), None as ``max_ulp``
    max_ulp_raw: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images": list(self.images)}


@dataclass(frozen=True)
class CardToCard:
    """The cards of one group (device model, software, target) compared image by image."""

    group: str
    cards: tuple[str, ...]
    outliers: tuple[Outlier, ...]
    #: images where no output is shared by more than half of the cards
    no_majority: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.outliers and not self.no_majority

    def lines(self) -> list[str]:
        if self.passed:
            return [f"card-to-card {self.group}: {len(self.cards)} cards bit-identical"]
        out = [
            f"card-to-card FAIL {self.group}: {o.card} differs from the majority of {len(self.cards)} cards on "
            f"{', '.join(o.images)} "
            + (
                "(digests only: ulps not measured)"
                if o.max_ulp is None or o.max_abs is None
                else f"(max {ulps(o.max_ulp, o.max_ulp_raw)}, max abs {o.max_abs:.3e})"
            )
            for o in self.outliers
        ]
        if self.no_majority:
            out.append(f"card-to-card FAIL {self.group}: no majority output on {', '.join(self.no_majority)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "cards": list(self.cards),
            "passed": self.passed,
            "outliers": [o.to_dict() for o in self.outliers],
            "no_majority": list(self.no_majority),
        }


def card_to_card(
    group: str,
    digests: Mapping[str, Mapping[str, Sequence[str]]],
    outputs: Mapping[str, np.ndarray] | None = None,
) -> CardToCard:
    """Compare the cards of one group: ``digests[card][image]`` is every output digest of that
    card on that image, ``outputs`` one array per digest (to measure ulps). Each card's usual
    output on an image is its most frequent digest; the usual output of more than half of the
    cards is the majority, and a card that gave any other output there is an outlier on that
    image (a card wrong every time, and one wrong once, alike)."""
    outputs = outputs or {}
    cards = tuple(digests)
    images = sorted({image for per in digests.values() for image in per})
    wrong: dict[str, list[str]] = {}
    scaled: dict[str, float] = {}
    raw: dict[str, int] = {}
    absolute: dict[str, float] = {}
    no_majority = []
    for image in images:
        seen = {c: list(digests[c].get(image, ())) for c in cards if digests[c].get(image)}
        if len(seen) < 2:
            continue
        usual = {c: Counter(s).most_common(1)[0][0] for c, s in seen.items()}
        ((common, count),) = Counter(usual.values()).most_common(1)
        if count * 2 <= len(seen):
            no_majority.append(image)
            continue
        base = outputs.get(common)
        for card, sig in seen.items():
            odd = set(sig) - {common}
            if not odd:
                continue
            wrong.setdefault(card, []).append(image)
            for d in odd:
                if base is not None and d in outputs:
                    scaled[card] = max(scaled.get(card, 0.0), max_ulp(base, outputs[d]))
                    raw[card] = max(raw.get(card, 0), raw_ulp(base, outputs[d]))
                    absolute[card] = max(absolute.get(card, 0.0), max_abs(base, outputs[d]))
    outliers = tuple(
        Outlier(c, tuple(wrong[c]), scaled.get(c), absolute.get(c), raw.get(c)) for c in cards if c in wrong
    )
    return CardToCard(group, cards, outliers, tuple(no_majority))


def card_groups(results: Sequence[Any]) -> list[CardToCard]:
    """Card-to-card over a comparison's targets (``TargetResult``s): targets that differ only in
    the card (same device model, dtype, modes and knobs) form a group, compared on every image
    (its compared logits) and on the timed runs; groups of one card are left out."""
    groups: dict[str, dict[str, dict[str, Sequence[str]]]] = {}
    outputs: dict[str, np.ndarray] = {}
    for r in results:
        if not is_card(r.device) or not r.cases:
            continue
        images: dict[str, list[str]] = {}
        for case in r.cases:  # each compared image, as the pytest acceptance report compares them
            if case.output_digest and len(case.paths) == 1:
                images[case.image] = [case.output_digest]
                if case.output is not None:
                    outputs[case.output_digest] = case.output
        if r.latency is not None and r.latency.digests:  # and the timed runs, on the first image
            images[f"{r.cases[0].image} timed"] = list(r.latency.digests)
            outputs.update(r.latency.outputs)
        if images:
            groups.setdefault(group_of(r.name, r.device_name, r.dtype), {})[r.device] = images
    return compare_groups(groups, outputs)


def is_card(device: str) -> bool:
    """Whether ``device`` is an accelerator card that card-to-card compares (not the CPU, not a
    custom target)."""
    return device not in ("custom", "cpu") and not device.startswith("cpu")


def group_of(name: str, device_name: str, dtype: str) -> str:
    """The card-to-card group of a target: its device model and the target without its device
    (``npu:0/fp32`` and ``npu:5/fp32`` on an Ascend910B3: ``Ascend910B3 fp32``)."""
    _, _, rest = name.partition("/")
    return f"{device_name} {rest or dtype}"


def compare_groups(
    groups: Mapping[str, Mapping[str, Mapping[str, Sequence[str]]]], outputs: Mapping[str, np.ndarray] | None = None
) -> list[CardToCard]:
    """:func:`card_to_card` on every group (``groups[group][card][image]``: digests) of two or
    more cards."""
    return [card_to_card(key, cards, outputs) for key, cards in groups.items() if len(cards) > 1]


def fail_cards(
    targets: Mapping[str, dict[str, Any]], cards: Sequence[CardToCard], burn_in: Mapping[str, Any] | None
) -> None:
    """Fail the report's targets (name -> the report's target entry) that run-to-run, card-to-card
    or the burn-in named, saying how: the one rule both ``compare`` and the pytest acceptance
    report apply, so that a card fails the same way through either door."""
    for target in targets.values():
        repeat = target.get("run_to_run")
        if repeat and not repeat["passed"]:
            target["verdict"] = Status.FAIL
    by_card = {(g.group, o.card): o for g in cards for o in g.outliers}

    def group(target: dict[str, Any]) -> str:
        return group_of(target["name"], str(target.get("device_name", "")), str(target.get("dtype", "")))

    cards_of = [t for t in targets.values() if is_card(str(t.get("device", "custom")))]
    # A group with no majority output fails its cards, unless the cards that fail against the CPU
    # explain it: then at most one card that passes is left, and there is nothing it disagrees with.
    passing = {g.group: sum(group(t) == g.group and t["verdict"] != Status.FAIL for t in cards_of) for g in cards}
    for target in cards_of:
        outlier = by_card.get((group(target), str(target["device"])))
        if outlier is not None:
            target["verdict"], target["card_outlier"] = Status.FAIL, outlier.to_dict()
        if any(group(target) == g.group and g.no_majority and passing[g.group] > 1 for g in cards):
            target["verdict"] = Status.FAIL
    for card in (burn_in or {}).get("cards", ()):
        if card["status"] != "ok" and card["card"] in targets:
            targets[card["card"]]["verdict"] = Status.FAIL
            targets[card["card"]]["burn_in"] = card
    for group in (burn_in or {}).get("card_to_card", ()):
        for outlier in group["outliers"]:
            for target in targets.values():
                if (
                    str(target.get("device")) == outlier["card"]
                    and group_of(target["name"], str(target.get("device_name", "")), str(target.get("dtype", "")))
                    == group["group"]
                ):
                    target["verdict"] = Status.FAIL
                    target.setdefault("card_outlier", outlier)  # wrong the same way every time: its loop agrees
