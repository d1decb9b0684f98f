from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from resnet34_npu import InputError, build_model_with_info, parse_weights_spec
from resnet34_npu.core.constants import SEEDED_TENSOR_SHA256
from resnet34_npu.model.network import resnet34
from resnet34_npu.model.weights import load_weights, seeded_path, tensor_digest

REPO = Path(__file__).resolve().parents[3]


def test_parse_specs(tmp_path):
    assert parse_weights_spec("seeded").seed == 42
    assert parse_weights_spec("seeded:7").seed == 7
    assert parse_weights_spec("imagenet").kind == "imagenet"
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    assert parse_weights_spec(str(f)).path == f


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", "empty"),
        ("seeded:x", "non-negative integer"),
        ("seeded:-1", "non-negative integer"),
        ("nope.pth", "no such file"),
    ],
)
def test_bad_specs_are_named(spec, words):
    with pytest.raises(InputError) as err:
        parse_weights_spec(spec)
    assert words in str(err.value) and repr(spec) in str(err.value)


@pytest.mark.slow
def test_seeded_generated_once_atomically_and_matches_known_digest(tmp_cache):
    rng_before = torch.get_rng_state()
    info, state = load_weights("seeded", resnet34)
    assert torch.equal(torch.get_rng_state(), rng_before), "generation must not disturb the caller's RNG"
    path = seeded_path(42)
    assert path.parent == tmp_cache and path.is_file()
    assert [p.name for p in tmp_cache.iterdir()] == [path.name], "no temporary file may be left behind"
    assert info.tensor_sha256 == SEEDED_TENSOR_SHA256[42] == tensor_digest(state)
    mtime = path.stat().st_mtime_ns
    again, _ = load_weights("seeded", resnet34)
    assert path.stat().st_mtime_ns == mtime, "a second load must read the cache, not regenerate"
    assert again == info


@pytest.mark.slow
def test_seeded_is_what_the_model_card_does(tmp_cache):
    torch.manual_seed(42)
    expected = torchvision.models.resnet34().state_dict()
    _, state = load_weights("seeded", resnet34)
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)


@pytest.mark.slow
def test_other_seeds_differ(tmp_cache):
    info7, _ = load_weights("seeded:7", resnet34)
    assert info7.tensor_sha256 != SEEDED_TENSOR_SHA256[42]
    assert seeded_path(7).is_file()


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_processes_racing_both_get_a_whole_file(tmp_cache):
    """This process and another generate the same weights at the same moment (the other one
    waits, torch imported, for the word go): both must load a whole file."""
    code = (
        "import sys, resnet34_npu as r; print('ready', flush=True); sys.stdin.readline(); "
        "print(r.build_model_with_info('seeded:3')[1].tensor_sha256)"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    other = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert other.stdout.readline().strip() == "ready"
    other.stdin.write("go\n")
    other.stdin.flush()
    mine = build_model_with_info("seeded:3")[1].tensor_sha256
    theirs = other.communicate(timeout=120)[0].strip()
    assert other.returncode == 0
    assert mine == theirs and len(mine) == 64
    assert [p.name for p in tmp_cache.iterdir()] == ["resnet34-seeded-3.pth"]


@pytest.mark.slow
def test_corrupted_cache_is_refused(tmp_cache):
    load_weights("seeded", resnet34)
    state = torch.load(seeded_path(42), weights_only=True)
    state["fc.bias"] = state["fc.bias"] + 1
    torch.save(state, seeded_path(42))
    with pytest.raises(InputError, match="are not seeded:42.*delete the file"):
        load_weights("seeded", resnet34)


@pytest.mark.slow
def test_an_old_file_changed_in_place_with_its_timestamps_restored_is_checked_again(tmp_cache):
    """The process-wide cache trusts an unchanged stat only: same size, same mtime (restored
    with os.utime) but new bytes still change the ctime, and the file is checked again."""
    load_weights("seeded", resnet34)
    path = seeded_path(42)
    old = path.stat().st_mtime_ns - 3600 * 10**9
    os.utime(path, ns=(old, old))  # an old, settled file: its stat is trusted from now on
    load_weights("seeded", resnet34)
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0xFF  # a byte inside the last tensor: the same size, other values
    path.write_bytes(bytes(data))
    os.utime(path, ns=(old, old))
    with pytest.raises(InputError, match="are not seeded:42|not a readable PyTorch checkpoint"):
        load_weights("seeded", resnet34)


@pytest.mark.slow
def test_state_dict_file_round_trip(tmp_path, seeded):
    model, info = seeded
    path = tmp_path / "copy.pth"
    torch.save(model.state_dict(), path)
    _, copy_info = build_model_with_info(str(path))
    assert copy_info.tensor_sha256 == info.tensor_sha256


@pytest.mark.slow
@pytest.mark.parametrize("wrap", ["state_dict", "model", "module."])
def test_common_wrappers_are_unwrapped(tmp_path, seeded, wrap):
    model, info = seeded
    state = model.state_dict()
    obj = {f"module.{k}": v for k, v in state.items()} if wrap == "module." else {wrap: state}
    path = tmp_path / "wrapped.pth"
    torch.save(obj, path)
    assert build_model_with_info(str(path))[1].tensor_sha256 == info.tensor_sha256


class Custom:
    pass


def _write(path: Path, kind: str, seeded_state) -> None:
    if kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "junk":
        path.write_text("junk\n")
    elif kind == "random":
        path.write_bytes(bytes(range(256)) * 20)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        buffer = path.with_suffix(".full")
        torch.save(seeded_state, buffer)
        data = buffer.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "pickle":
        torch.save({"object": Custom()}, path)
    elif kind == "missing":
        state = dict(seeded_state)
        del state["fc.weight"], state["fc.bias"]
        torch.save(state, path)
    elif kind == "unexpected":
        torch.save({**seeded_state, "head.weight": torch.zeros(10, 512)}, path)
    elif kind == "shapes":
        torch.save(torchvision.models.resnet34(num_classes=10).state_dict(), path)
    elif kind == "not_a_dict":
        torch.save([torch.zeros(1)], path)
    elif kind == "int_tensor":
        torch.save({**seeded_state, "conv1.weight": seeded_state["conv1.weight"].to(torch.int32)}, path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, words",
    [
        ("text", "not a"),
        ("junk", "not a readable PyTorch checkpoint"),
        ("random", "not a PyTorch checkpoint (torch.load cannot unpickle it)"),
        ("empty", "is empty"),
        ("truncated", "truncated"),
        (
            "pickle",
            "refused by torch.load(weights_only=True), it pickles more than tensors (Unsupported global: GLOBAL",
        ),
        ("missing", "2 missing key(s): fc.weight [1000, 512], fc.bias [1000]"),
        ("unexpected", "1 unexpected key(s): head.weight [10, 512]"),
        ("shapes", "wrong shape(s): fc.weight expected [1000, 512] found [10, 512]"),
        ("not_a_dict", "holds a list"),
        ("int_tensor", "conv1.weight is torch.int32"),
    ],
)
def test_wrong_files_get_one_clear_error(tmp_path, seeded_model, kind, words):
    path = tmp_path / f"{kind}.pth"
    _write(path, kind, seeded_model.state_dict())
    with pytest.raises(InputError) as err:
        build_model_with_info(str(path))
    message = str(err.value)
    assert f"'{path}'" in message and words in message and "\n" not in message


def test_directory_is_refused(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        build_model_with_info(str(tmp_path))


def test_imagenet_absent_says_which_file_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(InputError) as err:
        build_model_with_info("imagenet")
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    assert str(expected) in str(err.value) and "nothing is downloaded" in str(err.value)


@pytest.mark.slow
def test_imagenet_with_the_wrong_file_is_refused(tmp_path, monkeypatch, seeded_model):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    target = tmp_path / "torch" / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    target.parent.mkdir(parents=True)
    torch.save(seeded_model.state_dict(), target)
    with pytest.raises(InputError, match="does not match torchvision's resnet34-b627a593.pth"):
        build_model_with_info("imagenet")


@pytest.mark.slow
def test_half_precision_old_and_wrapped_checkpoints_load_as_float32(tmp_path, seeded):
    model, info = seeded
    state = {
        k: (v.half() if v.is_floating_point() else v)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    path = tmp_path / "old_half.pth"
    torch.save({"state_dict": state, "epoch": 90, "arch": "resnet34"}, path)
    loaded, _ = build_model_with_info(str(path))
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert torch.allclose(loaded.fc.weight, model.fc.weight, rtol=1e-3, atol=1e-4)


def test_non_string_keys_and_huge_seeds_are_refused(tmp_path):
    path = tmp_path / "intkeys.pth"
    torch.save({1: torch.zeros(1)}, path)
    with pytest.raises(InputError, match="key 1 is not a parameter name"):
        build_model_with_info(str(path))
    with pytest.raises(InputError, match="below 2\\*\\*63"):
        parse_weights_spec("seeded:99999999999999999999999")


@pytest.mark.slow
def test_a_damaged_cached_file_is_refused_whatever_the_seed(tmp_cache):
    load_weights("seeded:7", resnet34)
    state = torch.load(seeded_path(7), weights_only=True)
    state["fc.bias"][0] = float("nan")
    torch.save(state, seeded_path(7))
    with pytest.raises(InputError, match="are not seeded:7.*delete the file"):
        load_weights("seeded:7", resnet34)


@pytest.mark.slow
def test_temporaries_of_a_killed_generation_are_swept(tmp_cache):
    tmp_cache.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()  # a process id that no longer runs
    host = socket.gethostname().replace(".", "-")
    orphan = tmp_cache / f"resnet34-seeded-3.pth.{host}.{dead.pid}.abcd1234.tmp"
    elsewhere = tmp_cache / f"resnet34-seeded-3.pth.another-host.{dead.pid}.abcd1234.tmp"  # not ours to judge
    elsewhere.write_bytes(b"another host's")
    orphan.write_bytes(b"half a file")
    mine = tmp_cache / f"resnet34-seeded-3.pth.{host}.{os.getpid()}.efgh5678.tmp"  # a live generation's
    mine.write_bytes(b"being written")
    load_weights("seeded:4", resnet34)
    assert not orphan.exists() and mine.exists() and elsewhere.exists()
