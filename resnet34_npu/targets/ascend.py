"""Facts about Ascend SoCs that decide what a card computes, from torch_npu's own sources.

torch_npu keeps the SoC as an ordered enum (``torch_npu/csrc/core/npu/NpuVariables.h``) and decides
by comparing against it (``NpuVariables.cpp``, ``LazyInitAclops.cpp``): the default ACL precision
mode is ``must_keep_origin_dtype`` from ``Ascend910B1`` on and ``allow_fp32_to_fp16`` below it;
bf16 is supported from ``Ascend910B1`` on (``IsBF16Supported``); INF_NAN float overflow mode is the
default on ``Ascend910B1`` .. ``Ascend310B1`` (exclusive) and from ``Ascend910_9391`` on
(``IsSupportInfNan``), everywhere else the card saturates (Inf becomes +-max of the dtype, NaN
becomes 0). Only convolutions and matrix products of the A2/A3 cube units take fp32 operands and
HF32 (CANN ``cube_util.h``: ``IsCubeSupportFp32`` / ``IsCubeSupportHf32``); Atlas training and
310P cube units compute them in fp16. The names are those the torch-npu 2.14.0 wheel's
``libtorch_npu.so`` knows; an unknown name is ``Unsupported soc version`` there and here.
"""

from __future__ import annotations

from resnet34_npu.core.errors import InputError

#: SoC name -> its value in torch_npu's ``SocVersion`` enum (NpuVariables.h; the Ascend950 names,
#: which torch-npu 2.14.0's libtorch_npu.so lists after Ascend910_93xx, from 260 on).
_FAMILIES: tuple[tuple[int, tuple[str, ...]], ...] = (
    (100, ("Ascend910PremiumA", "Ascend910ProA", "Ascend910A", "Ascend910ProB", "Ascend910B")),
    (200, ("Ascend310P1", "Ascend310P2", "Ascend310P3", "Ascend310P4", "Ascend310P5", "Ascend310P7")),
    (220, ("Ascend910B1", "Ascend910B2", "Ascend910B2C", "Ascend910B3", "Ascend910B4", "Ascend910B4-1")),
    (240, ("Ascend310B1", "Ascend310B2", "Ascend310B3", "Ascend310B4")),
    (250, ("Ascend910_9391", "Ascend910_9392", "Ascend910_9381", "Ascend910_9382", "Ascend910_9372")),
    (255, ("Ascend910_9362", "Ascend910_9363")),
    (
        260,
        (
            "Ascend950DT_950x",
            "Ascend950DT_950y",
            "Ascend950DT_9571",
            "Ascend950DT_9572",
            "Ascend950DT_9573",
            "Ascend950DT_9574",
            "Ascend950DT_9575",
            "Ascend950DT_9576",
            "Ascend950DT_9577",
            "Ascend950DT_9578",
            "Ascend950DT_9581",
            "Ascend950DT_9582",
            "Ascend950DT_9582x",
            "Ascend950DT_9583",
            "Ascend950DT_9584",
            "Ascend950DT_9585",
            "Ascend950DT_9586",
            "Ascend950DT_9587",
            "Ascend950DT_9588",
            "Ascend950DT_9591",
            "Ascend950DT_9592",
            "Ascend950DT_9595",
            "Ascend950DT_9596",
            "Ascend950DT_95A1",
            "Ascend950DT_95A2",
            "Ascend950PR_950z",
            "Ascend950PR_9579",
            "Ascend950PR_957b",
            "Ascend950PR_957bx",
            "Ascend950PR_957c",
            "Ascend950PR_957d",
            "Ascend950PR_9589",
            "Ascend950PR_958b",
            "Ascend950PR_9599",
        ),
    ),
)
SOCS: dict[str, int] = {name: base + i for base, names in _FAMILIES for i, name in enumerate(names)}
ASCEND910B1 = SOCS["Ascend910B1"]
ASCEND310B1 = SOCS["Ascend310B1"]
ASCEND910_9391 = SOCS["Ascend910_9391"]


def soc_value(name: str) -> int:
    """The SoC's place in torch_npu's enum; an unknown name is refused as torch_npu refuses it."""
    value = SOCS.get(name.strip())
    if value is None:
        families = ", ".join(names[0] + ("..." if len(names) > 1 else "") for _, names in _FAMILIES)
        raise InputError(f"Unsupported soc version: {name!r} (torch_npu knows {families})")
    return value


def default_acl_precision_mode(soc: str) -> str:
    """``must_keep_origin_dtype`` from Ascend910B1 on, ``allow_fp32_to_fp16`` below (LazyInitAclops.cpp)."""
    return "must_keep_origin_dtype" if soc_value(soc) >= ASCEND910B1 else "allow_fp32_to_fp16"


def bf16_supported(soc: str) -> bool:
    """``IsBF16Supported``: from Ascend910B1 on."""
    return soc_value(soc) >= ASCEND910B1


def inf_nan_mode(soc: str) -> bool:
    """``IsSupportInfNan``'s default: INF_NAN overflow mode, else saturation."""
    value = soc_value(soc)
    return ASCEND910B1 <= value < ASCEND310B1 or value >= ASCEND910_9391


def cube_takes_fp32(soc: str) -> bool:
    """Whether the cube unit computes fp32 operands (and HF32) at all: the A2/A3 (910B, 910_93xx) and
    950 cubes; Atlas training (910A family), 310P and 310B cubes take them in fp16."""
    value = soc_value(soc)
    return ASCEND910B1 <= value < ASCEND310B1 or value >= ASCEND910_9391


def overflow_mode(soc: str) -> str:
    """``INF_NAN`` or ``SATURATION``, as reported in every report."""
    return "INF_NAN" if inf_nan_mode(soc) else "SATURATION"


def fp32_matrix_precision(soc: str, allow_hf32: bool, acl_mode: str) -> str:
    """What an fp32 convolution or matrix product computes in: ``fp32``, ``hf32`` or ``fp16``.

    torch_npu picks the cube math type from (allow_hf32, allow_fp32_to_fp16) (CalcuOpUtil.cpp):
    (0, 1) USE_FP16, (1, 1) ALLOW_FP32_DOWN_PRECISION, (1, 0) USE_HF32, (0, 0) KEEP_DTYPE. A cube that
    takes fp32 computes them as fp16, HF32, HF32, fp32; one that does not computes them all in fp16."""
    if not cube_takes_fp32(soc):
        return "fp16"
    down = acl_mode.startswith("allow_fp32_to_fp16")
    if allow_hf32:
        return "hf32"
    return "fp16" if down else "fp32"
