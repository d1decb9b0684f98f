"""Faults and hostile input: reports are strict JSON, written where the user meant or not at
all, full disks and odd names give one line, and nothing forges a line of output."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest
import torch

import resnet34_npu
from resnet34_npu.cli import main as cli
from resnet34_npu.core.constants import IMAGES_DIR
from resnet34_npu.core.errors import InputError, cannot_import, plain, show
from resnet34_npu.core.files import check_writable, write_json_atomic

CAT = str(IMAGES_DIR / "cat.jpg")


def strict(text: str):
    """json.loads that refuses NaN / Infinity tokens, as JavaScript and jq do."""

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def nan_weights(tmp_path, seeded):
    state = {k: v.clone() for k, v in seeded[0].state_dict().items()}
    state["fc.bias"][:] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    return str(path)


@pytest.mark.slow
def test_every_json_the_cli_prints_or_writes_is_strict(tmp_path, capsys, nan_weights):
    code, out, _ = run(capsys, "infer", "--device", "cpu", "--weights", nan_weights, "--json", "--iters", "1")
    assert code == 0 and strict(out)["top"][0]["probability"] == "nan"
    code, out, _ = run(capsys, "localize", "--target", "resnet34_npu.faults:nan_output", "--json", "--image", CAT)
    assert code == 1 and strict(out)["stages"]
    code, out, _ = run(capsys, "devices", "--json")
    assert code == 0 and strict(out)
    report = tmp_path / "r.json"
    code, _, _ = run(
        capsys,
        "compare",
        "--target",
        "resnet34_npu.faults:nan_output",
        "--iters",
        "0",
        "--image",
        CAT,
        "--output",
        str(report),
    )
    assert code == 1 and strict(report.read_text())["targets"][0]["images"][0]["metrics"]["rel_l2_error"] == "nan"


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_report_never_replaces_a_file_that_is_not_regular(tmp_path, capsys, kind):
    if kind == "device":
        target = "/dev/null"
    else:
        target = str(tmp_path / "pipe")
        os.mkfifo(target)
    before = os.stat(target)
    code, out, err = run(capsys, "compare", "--target", "cpu", "--iters", "0", "--image", CAT, "--output", target)
    assert code == 2 and out == "" and err.count("\n") == 1 and "is not a regular file" in err
    after = os.stat(target)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    with pytest.raises(InputError, match="is not a regular file"):
        write_json_atomic(target, {"verdict": "pass"})


def test_a_symlinked_report_is_written_to_its_target(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_json_atomic(check_writable(link), {"verdict": "pass"})
    assert link.is_symlink() and strict(real.read_text()) == {"verdict": "pass"}


def test_a_full_disk_is_one_line_and_leaves_the_old_report_whole(full_disk):
    big = {"blob": "x" * 200_000}
    with pytest.raises(InputError) as err:
        write_json_atomic(full_disk / "old.json", big)
    message = str(err.value)
    assert message.startswith(f"report {show(full_disk / 'old.json')}: cannot write it (No space left on device)")
    assert "\n" not in message
    assert strict((full_disk / "old.json").read_text())["old"] is True
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "old.json"], "no temporary file left"


@pytest.mark.slow
def test_a_full_cache_folder_is_one_line(full_disk, monkeypatch, capsys):
    monkeypatch.setenv("RESNET34_NPU_CACHE", str(full_disk / "cache"))
    code, out, err = run(capsys, "infer", "--device", "cpu", "--weights", "seeded:5", "--iters", "1")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "No space left on device" in err and "resnet34-seeded-5.pth" in err
    assert not list((full_disk / "cache").glob("*.tmp")), "no temporary file left"


@pytest.mark.parametrize("name", ["evil\nverdict: PASS.jpg", "tab\there.jpg", "cr\rhere.jpg"])
def test_a_crafted_file_name_cannot_forge_a_line(tmp_path, capsys, name):
    (tmp_path / name).write_text("not an image")
    code, out, err = run(capsys, "infer", "--image", str(tmp_path / name))
    assert code == 2 and err.count("\n") == 1 and "\nverdict" not in err and plain(name) in err


@pytest.mark.slow
def test_a_file_name_that_is_not_utf8_works(tmp_path, capsys):
    name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: not valid UTF-8
    (tmp_path / name).write_bytes((IMAGES_DIR / "cat.jpg").read_bytes())
    report = tmp_path / "r.json"
    code, out, err = run(
        capsys, "compare", "--target", "cpu", "--iters", "0", "--image", str(tmp_path / name), "--output", str(report)
    )
    assert code == 0, err
    assert "caf\\xe9.jpg" in out and strict(report.read_text())["verdict"] == "pass"


@pytest.mark.slow
def test_sigterm_during_the_first_weights_generation_leaves_no_temporary(tmp_path, monkeypatch, capsys):
    import signal

    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNET34_NPU_CACHE", str(cache))
    real_save = torch.save

    def save_then_terminated(state, handle):
        real_save(state, handle)
        os.kill(os.getpid(), signal.SIGTERM)  # the signal arrives mid-generation, before the rename

    monkeypatch.setattr(torch, "save", save_then_terminated)
    from resnet34_npu.cli import launch  # the entry point installs the SIGTERM handler

    code = launch.main(["infer", "--device", "cpu", "--weights", "seeded:6", "--iters", "1"])
    out, err = capsys.readouterr()
    assert code == 143 and err.strip() == "resnet34-npu: terminated"
    assert list(cache.iterdir()) == [], "neither the file nor a temporary is left"


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "sparse"])
def test_weights_that_are_not_a_checkpoint_file_are_refused_before_reading(tmp_path, capsys, kind):
    if kind == "fifo":
        path = tmp_path / "w.pth"
        os.mkfifo(path)  # reading it would hang
    elif kind == "sparse":
        path = tmp_path / "huge.pth"
        with open(path, "wb") as handle:
            handle.truncate(8 << 30)  # 8 GiB of holes: reading it whole would take the memory
    else:
        path = kind
    code, out, err = run(capsys, "infer", "--device", "cpu", "--weights", str(path))
    reason = "far larger than a ResNet34 checkpoint" if kind == "sparse" else "is not a regular file"
    assert code == 2 and out == "" and err.count("\n") == 1 and reason in err


def test_a_device_file_as_an_image_gets_a_true_reason(capsys):
    code, _, err = run(capsys, "infer", "--image", "/dev/urandom")
    assert code == 2 and "is not a regular file" in err and "empty" not in err


def test_a_postscript_file_named_jpg_is_never_handed_to_ghostscript(tmp_path, capsys):
    ps = tmp_path / "photo.jpg"
    ps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    code, _, err = run(capsys, "infer", "--image", str(ps))
    assert code == 2 and "not an image Pillow can identify in the supported formats (JPEG, PNG" in err


def test_a_decoder_s_own_chatter_does_not_reach_the_user(tmp_path, capfd):
    from PIL import Image

    path = tmp_path / "broken.tif"
    Image.open(IMAGES_DIR / "cat.jpg").save(path, compression="tiff_lzw")
    data = bytearray(path.read_bytes())
    data[2000:6000] = bytes(4000)  # zeroes in the middle of the LZW stream
    path.write_bytes(bytes(data))
    code = cli.main(["infer", "--image", str(path)])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"resnet34-npu infer: error: image {show(path)}: cannot be decoded")


def test_a_torch_that_cannot_be_imported_is_one_line_and_exit_2(monkeypatch, capsys):
    """The entry point imports the command line (and torch) inside a guard."""
    import sys

    from resnet34_npu.cli import launch

    monkeypatch.setitem(sys.modules, "resnet34_npu.cli.main", None)  # what a failing import meets
    monkeypatch.setattr(resnet34_npu, "USER_AUTOLOAD", "1")  # as the user set it, before torch_npu rewrote it
    monkeypatch.setenv("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
    assert launch.main(["devices"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("resnet34-npu: error: importing torch failed: ")
    assert "TORCH_DEVICE_BACKEND_AUTOLOAD=1 makes torch load torch_npu" in err
    assert "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in err
    real = RuntimeError(
        "Failed to load the backend extension: torch_npu. You can disable extension auto-loading "
        "with TORCH_DEVICE_BACKEND_AUTOLOAD=0.\n  more detail"
    )
    real.__cause__ = ImportError("libhccl.so: cannot open shared object file: No such file or directory")
    line = cannot_import(real, None)
    assert "\n" not in line and "backend extension: torch_npu" in line and "(ImportError: libhccl.so" in line


@pytest.mark.slow
def test_a_target_that_leaves_a_thread_running_fails_named(tmp_path, monkeypatch, capsys):
    import threading

    stop = threading.Event()
    (tmp_path / "threaded_engine.py").write_text(
        "import threading, torch\n"
        "STOP = None\n"
        "class Engine:\n"
        "    def __init__(self, model):\n"
        "        self.model = model\n"
        "    def __call__(self, batch):\n"
        "        if not any(t.name == 'engine-poller' for t in threading.enumerate()):\n"
        "            threading.Thread(target=STOP.wait, name='engine-poller').start()\n"
        "        with torch.no_grad():\n"
        "            return self.model(batch)\n"
        "def build(model):\n"
        "    return Engine(model)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import threaded_engine

    threaded_engine.STOP = stop
    try:
        report = tmp_path / "r.json"
        code, out, _ = run(
            capsys,
            "compare",
            "--target",
            "threaded_engine:build",
            "cpu",
            "--iters",
            "0",
            "--image",
            CAT,
            "--output",
            str(report),
        )
    finally:
        stop.set()
    assert code == 1 and "left 1 non-daemon thread(s) running after its runs: engine-poller" in out
    doc = strict(report.read_text())
    assert doc["verdict"] == "fail" and [t["verdict"] for t in doc["targets"]] == ["fail", "pass"], "cpu not blamed"


def test_a_bind_mounted_report_is_refused_before_any_work(tmp_path, capsys):
    source, target = tmp_path / "source.json", tmp_path / "mounted.json"
    source.write_text('{"verdict": "pass", "old": true}')
    target.write_text("{}")
    done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount a file here: {done.stderr.decode().strip()[:120]}")
    try:
        code, out, err = run(
            capsys, "compare", "--target", "cpu", "--iters", "0", "--image", CAT, "--output", str(target)
        )
        assert code == 2 and out == "" and "is a mount point (a bind-mounted file)" in err
        assert strict(source.read_text())["old"] is True
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)


def test_a_report_path_in_a_symlink_loop_is_one_line(tmp_path, capsys):
    (tmp_path / "a.json").symlink_to(tmp_path / "b.json")
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")
    code, out, err = run(
        capsys, "compare", "--target", "cpu", "--iters", "0", "--image", CAT, "--output", str(tmp_path / "a.json")
    )
    assert code == 2 and out == "" and err.count("\n") == 1 and "loop of symbolic links" in err


def test_decoder_stderr_capture_is_safe_from_threads(tmp_path, capfd):
    """Images decoded from several threads at once: fd 2 is restored, so later output still shows."""
    from concurrent.futures import ThreadPoolExecutor

    from resnet34_npu import load_image

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(load_image, [IMAGES_DIR / "cat.jpg"] * 16))
    os.write(2, b"still here\n")
    assert capfd.readouterr().err == "still here\n"


@pytest.mark.slow
def test_output_dash_is_the_report_alone_even_when_a_target_writes_to_fd_1(tmp_path, monkeypatch, capfd):
    (tmp_path / "chatty_engine.py").write_text(
        "import os, torch\n"
        "def build(model):\n"
        "    def run(batch):\n"
        "        os.write(1, b'CANN log line on fd 1\\n')\n"
        "        with torch.no_grad():\n"
        "            return model(batch)\n"
        "    return run\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = cli.main(["compare", "--target", "chatty_engine:build", "--iters", "0", "--image", CAT, "--output", "-"])
    out, err = capfd.readouterr()
    assert code == 0 and strict(out)["verdict"] == "pass" and "CANN log line" in err


def test_pool_workers_do_not_count_as_threads_left_running():
    """Idle concurrent.futures workers (torch.compile starts them) are joined at interpreter
    exit; a busy one, and a plain non-daemon thread, would keep the process waiting, and count."""
    import concurrent.futures
    import threading

    from resnet34_npu.core.errors import blocking_threads

    before = set(threading.enumerate())
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compile-worker")
    pool.submit(sum, [1, 2]).result()
    stop = threading.Event()
    plain_thread = threading.Thread(target=stop.wait, name="engine-poller")
    plain_thread.start()
    try:
        assert blocking_threads(set(threading.enumerate()) - before) == ["engine-poller"]
        started = threading.Event()
        busy = pool.submit(lambda: (started.set(), stop.wait()))  # a task the exit would wait for
        assert started.wait(10)
        assert blocking_threads(set(threading.enumerate()) - before) == ["compile-worker_0", "engine-poller"]
    finally:
        stop.set()
        plain_thread.join()
        busy.result()
        pool.shutdown()
    assert blocking_threads(set(threading.enumerate()) - before) == []
