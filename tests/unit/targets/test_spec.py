from __future__ import annotations

import pytest
import torch

from resnet34_npu import InputError, load_image, make_batch
from resnet34_npu.core.constants import DEFAULT_IMAGE
from resnet34_npu.targets.knobs import effective_precision
from resnet34_npu.targets.runners import build_runner
from resnet34_npu.targets.spec import TargetSpec, parse_target


@pytest.mark.parametrize(
    "text, spec",
    [
        ("cpu", TargetSpec("cpu")),
        ("cpu/bf16-autocast", TargetSpec("cpu", "bf16-autocast")),
        ("npu:1/fp16", TargetSpec("npu:1", "fp16")),
        ("cuda/fp32/channels_last", TargetSpec("cuda", "fp32", ("channels_last",))),
        ("cuda/fp16/channels_last/eager", None),
        ("cuda/tf32=off", TargetSpec("cuda", "fp32", (), (("tf32", "off"),))),
        ("cuda:1/bf16/reduced_reduction=off", TargetSpec("cuda:1", "bf16", (), (("reduced_reduction", "off"),))),
        (
            "npu/fp32/hf32=off/acl=must_keep_origin_dtype",
            TargetSpec("npu", "fp32", (), (("acl", "must_keep_origin_dtype"), ("hf32", "off"))),
        ),
    ],
)
def test_parse(text, spec):
    if spec is None:
        with pytest.raises(InputError, match="eager means no mode, and channels_last is one"):
            parse_target(text)
        return
    assert parse_target(text) == spec


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "empty"),
        ("gpu/fp16", "Unknown device 'gpu'"),
        ("cpu/fp8", "unknown or repeated part 'fp8'. Dtypes: fp32, fp16, bf16, fp16-autocast, bf16-autocast"),
        ("cpu/fp16/bf16", "unknown or repeated part 'bf16'"),
        ("cpu/tf32=on", "tf32 applies to cuda devices only"),
        ("cpu/bf16/reduced_reduction=off", "reduced_reduction applies to cuda devices only"),
        ("cuda/tf32=maybe", "tf32='maybe' is not valid. Choose one of: on, off"),
        ("npu/speed=fast", "unknown or repeated knob 'speed'"),
        (
            "npu/acl=force_fp16",
            "acl='force_fp16' is not valid. Choose one of: allow_fp32_to_fp16, must_keep_origin_dtype",
        ),
    ],
)
def test_bad_targets_name_the_valid_parts(text, words):
    with pytest.raises(InputError) as err:
        parse_target(text)
    assert words in str(err.value)


def test_name_is_canonical():
    assert parse_target("cuda/channels_last").name == "cuda/fp32/channels_last"
    assert parse_target("cuda/eager").name == "cuda/fp32" and parse_target("cuda/eager").mode == "eager"
    assert (
        parse_target("npu:2/acl=must_keep_origin_dtype/hf32=on").name == "npu:2/fp32/acl=must_keep_origin_dtype/hf32=on"
    )


@pytest.mark.parametrize(
    "dtype, settings, expected",
    [
        ("fp32", {"float32_matmul_precision": "highest"}, "fp32"),
        ("fp16", {}, "fp16"),
        ("bf16-autocast", {}, "bf16"),
        ("fp32", {"cudnn.allow_tf32": True, "cuda.matmul.allow_tf32": False}, "tf32"),
        ("fp32", {"cudnn.allow_tf32": False, "cuda.matmul.allow_tf32": False}, "fp32"),
        ("fp32", {"npu.conv.allow_hf32": True, "ACL_PRECISION_MODE": "must_keep_origin_dtype"}, "hf32"),
        (
            "fp32",
            {"npu.conv.allow_hf32": False, "ACL_PRECISION_MODE": "allow_fp32_to_fp16 (device default, not set)"},
            "fp16",
        ),
        ("fp32", {"float32_matmul_precision": "high"}, "tf32"),
    ],
)
def test_effective_precision(dtype, settings, expected):
    precision, reason = effective_precision(dtype, settings)
    assert precision == expected and reason


def test_cpu_runner_computes_what_the_model_computes(seeded_model):
    batch = make_batch([load_image(DEFAULT_IMAGE)])
    with torch.inference_mode():
        expected = seeded_model(batch)
    runner = build_runner("cpu", seeded_model)
    assert torch.equal(runner.run(batch), expected)
    assert runner.precision == "fp32" and runner.name == "cpu/fp32"
    cl = build_runner("cpu/channels_last", seeded_model)
    assert torch.allclose(cl.run(batch), expected, rtol=1e-4, atol=1e-3)
    assert next(seeded_model.parameters()).dtype == torch.float32, "the reference model is untouched"


def test_auto_target_is_named_after_the_device_it_resolved_to(seeded_model):
    runner = build_runner("auto", seeded_model)
    assert runner.name.split("/")[0] == str(runner.device) and runner.name.endswith("/fp32")
