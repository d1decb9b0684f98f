"""The commands a failing target's report entry gives an engineer, from the entry alone."""

from __future__ import annotations

from resnet34_npu.judge.nextsteps import add_next_steps, next_steps


def _failing_hf32_card() -> dict:
    case = {
        "verdict": "fail",
        "image": "cat.jpg",
        "paths": ["/data/cat.jpg"],
        "localization": {"first_failing_stage": "layer3.0.conv2"},
    }
    return {"name": "npu:3/fp32", "verdict": "fail", "dtype": "fp32", "effective_precision": "hf32", "images": [case]}


def test_a_failing_card_gets_localize_with_its_dump_the_exact_precision_and_itself_alone():
    steps = next_steps(_failing_hf32_card())
    assert "(first failing stage: layer3.0.conv2)" in steps[0]
    assert "localize --target npu:3/fp32 --image /data/cat.jpg --dump r34-dump" in steps[0]
    assert "--target npu:3/fp32/hf32=off/acl=must_keep_origin_dtype" in steps[1]
    assert steps[-1] == "re-run this target alone: pytest --r34-require=npu --r34-target=npu:3/fp32"


def test_a_card_only_card_to_card_names_gets_its_dump_and_the_burn_in():
    entry = {
        "name": "npu:5/fp32",
        "verdict": "fail",
        "dtype": "fp32",
        "effective_precision": "hf32",
        "images": [{"verdict": "pass", "image": "cat.jpg", "paths": ["/d/cat.jpg"]}],
        "card_outlier": {"card": "npu:5", "images": ["cat.jpg"]},
    }
    steps = next_steps(entry)
    assert any("localize --target npu:5/fp32 --image /d/cat.jpg --dump" in s for s in steps)
    assert any("--burn-in 120" in s for s in steps)
    assert not any("hf32=off" in s for s in steps)  # it passes against the CPU: no precision question


def test_a_passing_target_gets_none_and_a_cpu_target_needs_no_device():
    passing = {**_failing_hf32_card(), "verdict": "pass"}
    cpu = {"name": "cpu/fp32", "verdict": "fail", "dtype": "fp32", "effective_precision": "fp32", "images": []}
    targets = [passing, cpu]
    add_next_steps(targets)
    assert "next_steps" not in passing and cpu["next_steps"] == [
        "re-run this target alone: pytest --r34-target=cpu/fp32"
    ]
