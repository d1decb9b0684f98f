"""The Ascend SoC facts the suite and the emulated host decide by, written out literally from
torch_npu's sources (NpuVariables.h/.cpp, LazyInitAclops.cpp, CalcuOpUtil.cpp): a wrong table
entry fails here, not only on a card."""

from __future__ import annotations

import pytest

from resnet34_npu.core.errors import InputError
from resnet34_npu.targets import ascend
from resnet34_npu.targets.knobs import effective_precision


@pytest.mark.parametrize(
    "soc, value, mode, bf16, overflow",
    [
        ("Ascend910A", 102, "allow_fp32_to_fp16", False, "SATURATION"),
        ("Ascend910B", 104, "allow_fp32_to_fp16", False, "SATURATION"),  # bare 910B: the Atlas training enum
        ("Ascend310P3", 202, "allow_fp32_to_fp16", False, "SATURATION"),
        ("Ascend910B1", 220, "must_keep_origin_dtype", True, "INF_NAN"),
        ("Ascend910B3", 223, "must_keep_origin_dtype", True, "INF_NAN"),
        ("Ascend310B1", 240, "must_keep_origin_dtype", True, "SATURATION"),
        ("Ascend910_9391", 250, "must_keep_origin_dtype", True, "INF_NAN"),
        ("Ascend950DT_9572", 263, "must_keep_origin_dtype", True, "INF_NAN"),
    ],
)
def test_the_soc_table_follows_torch_npu(soc, value, mode, bf16, overflow):
    assert ascend.soc_value(soc) == value
    assert ascend.default_acl_precision_mode(soc) == mode
    assert ascend.bf16_supported(soc) is bf16 and ascend.overflow_mode(soc) == overflow


@pytest.mark.parametrize("name", ["Ascend910C", "Ascend910", "ascend910b3", "Ascend910B5", ""])
def test_a_soc_torch_npu_does_not_know_is_refused_as_it_refuses_it(name):
    with pytest.raises(InputError, match="Unsupported soc version"):
        ascend.soc_value(name)


@pytest.mark.parametrize(
    "soc, allow_hf32, mode, computed",
    [
        ("Ascend910B3", True, "must_keep_origin_dtype", "hf32"),  # USE_HF32
        ("Ascend910B3", True, "allow_fp32_to_fp16", "hf32"),  # ALLOW_FP32_DOWN_PRECISION on an A2 cube
        ("Ascend910B3", False, "allow_fp32_to_fp16", "fp16"),  # USE_FP16
        ("Ascend910B3", False, "must_keep_origin_dtype", "fp32"),  # KEEP_DTYPE
        ("Ascend910A", False, "must_keep_origin_dtype", "fp16"),  # the Atlas training cube takes no fp32
        ("Ascend910A", True, "allow_fp32_to_fp16", "fp16"),
    ],
)
def test_the_cube_math_type_decides_what_fp32_computes_in(soc, allow_hf32, mode, computed):
    assert ascend.fp32_matrix_precision(soc, allow_hf32, mode) == computed


def test_an_npu_target_is_judged_at_the_looser_of_its_convolutions_and_its_fc_layer():
    settings = {
        "npu.soc_version": "Ascend910B3",
        "npu.conv.allow_hf32": True,
        "npu.matmul.allow_hf32": False,
        "ACL_PRECISION_MODE": "allow_fp32_to_fp16",
    }
    precision, reason = effective_precision("fp32", settings)
    assert precision == "fp16" and "convolutions in hf32, the fc layer in fp16" in reason
    default = {**settings, "ACL_PRECISION_MODE": "must_keep_origin_dtype (device default, not set)"}
    assert effective_precision("fp32", default)[0] == "hf32"
    off = {**default, "npu.conv.allow_hf32": False}
    assert effective_precision("fp32", off) == ("fp32", "fp32 end to end")
