"""How close to the limit: achieved FLOP/s against a device's published peak.

ResNet34 costs 3.664 G multiply-adds a 224 x 224 image (torchvision's metadata, ``RESNET34_GMACS``),
2 FLOPs each. The peaks are dense (no structured sparsity) figures from each vendor's datasheet,
per effective precision; a device or precision not in :data:`PEAKS` gets no fraction, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from resnet34_npu.core.constants import RESNET34_GMACS

FLOPS_PER_SAMPLE = 2 * RESNET34_GMACS * 1e9

_H100_SXM = (
    "NVIDIA H100 Tensor Core GPU datasheet (SXM5 column; tensor figures halved: the sheet states them with sparsity)"
)
_H200 = "NVIDIA H200 Tensor Core GPU datasheet (SXM column; tensor figures halved: stated with sparsity)"
_H100_PCIE = "NVIDIA H100 Tensor Core GPU datasheet (PCIe column; tensor figures halved: stated with sparsity)"
_A100 = "NVIDIA A100 Tensor Core GPU datasheet (dense figures; the sheet's sparse ones are twice these)"
_L40S = "NVIDIA L40S GPU datasheet (tensor figures halved: stated with sparsity)"
_ASCEND910 = "Huawei, Ascend 910 launch (23 Aug 2019): 256 TFLOPS FP16"


@dataclass(frozen=True)
class Peak:
    """A device family: the pattern its name matches, its peak TFLOP/s per precision, the source."""

    device: str
    pattern: str
    tflops: dict[str, float]
    source: str


#: Known devices, most specific first. Ascend 910B parts are absent: Huawei publishes no
#: per-part datasheet peak this table could cite.
PEAKS: tuple[Peak, ...] = (
    Peak("NVIDIA H200 SXM", r"H200", {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5}, _H200),
    Peak("NVIDIA H100 PCIe", r"H100.*PCIe", {"fp32": 51.0, "tf32": 378.0, "fp16": 756.5, "bf16": 756.5}, _H100_PCIE),
    Peak(
        "NVIDIA H100 SXM",
        r"H100(?!.*(PCIe|NVL))",
        {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5},
        _H100_SXM,
    ),
    Peak("NVIDIA A100", r"A100", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}, _A100),
    Peak("NVIDIA L40S", r"L40S", {"fp32": 91.6, "tf32": 183.0, "fp16": 362.05, "bf16": 362.05}, _L40S),
    Peak("Huawei Ascend 910A", r"Ascend\s*910A?$|Ascend\s*910A\b", {"fp16": 256.0}, _ASCEND910),
)


def find_peak(device_name: str) -> Peak | None:
    for peak in PEAKS:
        if re.search(peak.pattern, device_name):
            return peak
    return None


def limit(device_name: str, precision: str, samples_per_s: float | None, cards: int = 1) -> dict[str, Any]:
    """Achieved FLOP/s at ``samples_per_s`` and, where the table knows the device and precision,
    the fraction of ``cards`` times its peak, with the source; else the reason there is none."""
    achieved = None if not samples_per_s else samples_per_s * FLOPS_PER_SAMPLE
    out: dict[str, Any] = {
        "achieved_tflops": None if achieved is None else achieved / 1e12,
        "flops_per_sample": FLOPS_PER_SAMPLE,
        "precision": precision,
        "cards": cards,
    }
    peak = find_peak(device_name)
    if peak is None:
        return {**out, "peak_tflops": None, "fraction": None, "reason": f"{device_name!r} is not in the peak table"}
    if precision not in peak.tflops:
        reason = f"the peak table has no {precision} figure for {peak.device}"
        return {**out, "peak_tflops": None, "fraction": None, "reason": reason, "source": peak.source}
    total = peak.tflops[precision] * cards
    fraction = None if achieved is None else achieved / (total * 1e12)
    return {**out, "device": peak.device, "peak_tflops": total, "fraction": fraction, "source": peak.source}
