"""TEST01, TEST04, the accuracy rule and the peak table, on figures (no LoadGen run)."""

from __future__ import annotations

import numpy as np

from resnet34_npu.perf import compliance, peak


def test_test01_passes_equal_outputs_and_names_the_first_sample_that_differs():
    names = ("cat.jpg", "coffee.jpg")
    accuracy = {0: {"a"}, 1: {"b"}}
    assert compliance.test01(accuracy, {0: {"a"}, 1: {"b"}}, names).passed
    failed = compliance.test01(accuracy, {0: {"a"}, 1: {"b", "a"}}, names)
    assert not failed.passed and failed.mismatched == (1,) and "'coffee.jpg'" in failed.line
    assert not compliance.test01(accuracy, {}, names).passed  # nothing logged under load is no pass


def test_test04_fails_a_repeated_sample_more_than_ten_percent_faster():
    assert compliance.test04(100.0, 95.0, throughput=False).passed  # 5 % faster: noise
    cached = compliance.test04(100.0, 50.0, throughput=False)
    assert not cached.passed and "cached" in cached.line
    assert not compliance.test04(100.0, 120.0, throughput=True).passed  # Offline: samples/s
    assert compliance.test04(100.0, 105.0, throughput=True).passed


def test_accuracy_needs_99_percent_of_the_references_top1():
    reference = np.eye(1000, dtype=np.float32)[[1, 2, 3, 4]]
    labels = (1, 2, 3, 4)
    assert compliance.accuracy(reference.copy(), reference, labels).passed
    wrong = reference.copy()
    wrong[0] = np.eye(1000, dtype=np.float32)[9]
    result = compliance.accuracy(wrong, reference, labels)
    assert not result.passed and result.target_top1 == 0.75 and result.reference_top1 == 1.0
    unlabelled = compliance.accuracy(wrong, reference, (None,) * 4)
    assert not unlabelled.passed and unlabelled.agreement == 0.75


def test_peak_fraction_only_for_a_known_device_and_precision():
    known = peak.limit("NVIDIA H100 80GB HBM3", "fp16", 10_000.0)
    assert known["device"] == "NVIDIA H100 SXM" and known["source"]
    assert abs(known["fraction"] - 10_000 * peak.FLOPS_PER_SAMPLE / 989.5e12) < 1e-12
    assert peak.limit("NVIDIA H100 PCIe", "fp32", 1.0)["device"] == "NVIDIA H100 PCIe"
    assert peak.limit("NVIDIA H200", "bf16", 1.0, cards=8)["peak_tflops"] == 8 * 989.5
    unknown = peak.limit("AMD EPYC 7B13", "fp32", 12.0)
    assert unknown["fraction"] is None and "not in the peak table" in unknown["reason"]
    no_figure = peak.limit("Ascend910A", "fp32", 12.0)
    assert no_figure["fraction"] is None and "no fp32 figure" in no_figure["reason"]
    assert peak.find_peak("Ascend910B3") is None  # no published per-part peak: no guess
    for entry in peak.PEAKS:
        assert entry.source and entry.tflops
