"""Dataset-scale agreement end to end, as users run it: ``reference build``, ``compare
--dataset`` (with and without a stored reference), a run killed with SIGKILL and resumed,
torchrun with gloo and two processes against the single-process run image for image, a rank
that raises and a rank that hangs, the emulated 8-card Ascend host, and ``pytest
--r34-dataset``. Marked ``slow`` and ``subprocess``: every test starts processes that import
torch (``pytest -m slow`` runs them, and CI does).

The dataset is made at run time from the bundled photos (crops, flips, colour and scale
changes), in a plain folder and as an ImageNet validation folder with ``val_map.txt``, with
two unreadable files; nothing is downloaded or committed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from resnet34_npu.core import schemas
from resnet34_npu.core.constants import IMAGES_DIR, PHOTOS
from resnet34_npu.dataset import reference_file

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.subprocess]
TARGETS = "tests.integration.dataset_targets"
IMAGES = 16  # readable images: each test's forward passes stay in the tens


def make_dataset(root: Path, count: int = IMAGES) -> Path:
    """``count`` images derived deterministically from the bundled photos, and two unreadable files."""
    root.mkdir(parents=True, exist_ok=True)
    photos = [Image.open(IMAGES_DIR / p).convert("RGB") for p in PHOTOS]
    for k in range(count):
        image = photos[k % len(photos)]
        if k % 3 == 1:
            image = ImageOps.mirror(image)
        w, h = image.size
        image = image.crop((k * 5 % 40, k * 3 % 30, w - k * 7 % 50, h - k * 2 % 20))
        image = ImageEnhance.Color(image).enhance(0.5 + 0.1 * (k % 8))
        scale = 0.5 + 0.07 * (k % 9)
        image = image.resize((max(64, int(image.width * scale)), max(64, int(image.height * scale))))
        image.save(root / f"img{k:03d}.jpg", quality=90)
    (root / "zz_truncated.jpg").write_bytes((root / "img000.jpg").read_bytes()[:300])
    (root / "zz_text.png").write_text("not a PNG")
    return root


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "resnet34_npu", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def torchrun(n: int, *args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={n}", "-m", "resnet34_npu", *args]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=environment)


def rank_exits(done: subprocess.CompletedProcess) -> tuple[int | None, dict[int, int]]:
    """The ranks torchrun's error summary names: the first observed failure's rank and every named
    rank's exit code (torchrun itself exits 1 whatever its ranks' codes were)."""
    import re

    pattern = re.compile(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)")
    codes = {int(rank): int(code) for rank, code in pattern.findall(done.stderr)}
    _, _, root = done.stderr.partition("Root Cause (first observed failure):")
    first = pattern.search(root)
    return (int(first.group(1)) if first else None), codes


def assert_failed_not_crashed(done: subprocess.CompletedProcess) -> None:
    """The run failed as a verdict: the first rank torchrun saw fail exited with the suite's
    failure exit (1), and no rank with the crash exit (3) or a usage error (2); the other ranks
    that torchrun names were stopped by it (a signal, or 143 for SIGTERM) or failed too (1)."""
    first, codes = rank_exits(done)
    assert done.returncode != 0 and first is not None, done.stderr[-3000:]
    assert codes[first] == 1, f"rank {first} exited {codes[first]}, not 1 (the suite's failure exit)"
    assert all(code == 1 or code < 0 or code == 128 + signal.SIGTERM for code in codes.values()), codes


def records(folder: Path) -> dict[str, dict]:
    """Every image record of a results folder, by path, without the card that computed it."""
    out = {}
    for path in sorted(folder.rglob("rank*.jsonl")):
        for line in path.read_text().splitlines()[1:]:
            record = json.loads(line)
            record.pop("card")
            out[record["path"]] = record
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("dataset") / "val")


@pytest.fixture(scope="module")
def ref(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "val.r34"
    done = cli("reference", "build", "--dataset", str(data), "-o", str(out), "--fp64-truth", "--batch-size", "4")
    assert done.returncode == 0, done.stderr
    assert "unreadable zz_text.png" in done.stdout and "unreadable zz_truncated.jpg" in done.stdout
    return out


def test_reference_build_and_compare(data, ref, tmp_path):
    stored = reference_file.load(ref)
    assert stored.header["rows"] == IMAGES and stored.truth is not None
    assert ref.stat().st_size < IMAGES * 12_000 + 20_000  # 4 KB + 8 KB an image, and the header
    report = tmp_path / "r.json"
    done = cli("compare", "--dataset", str(data), "--reference-file", str(ref), "--target", "cpu", "-o", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(report.read_text())
    schemas.validate(document, "compare-report", source=report)  # what compare --dataset writes
    schemas.validate(stored.header, "reference-header", source=ref)
    summary = document["targets"][0]["dataset"]
    assert summary["compared"] == IMAGES and summary["statuses"] == {"pass": IMAGES, "unreadable": 2}
    assert {u["path"] for u in summary["unreadable"]} == {"zz_text.png", "zz_truncated.jpg"}
    assert summary["top1_agreement"] == 1.0 and summary["rel_l2"]["max"] < 1e-5
    assert "error_ratio_vs_cpu" in next(iter(records(tmp_path / "r.images").values()))  # the stored truth was used
    # the same comparison, the reference recomputed instead of read: the same verdict for every image
    done = cli("compare", "--dataset", str(data), "--target", "cpu", "-o", str(tmp_path / "c.json"))
    assert done.returncode == 0, done.stderr
    stored_run, computed_run = records(tmp_path / "r.images"), records(tmp_path / "c.images")
    assert {k: r["status"] for k, r in stored_run.items()} == {k: r["status"] for k, r in computed_run.items()}


def test_faulty_target_fails_image_by_image_and_by_mlperf_rule(data, ref, tmp_path):
    stored = reference_file.load(ref)
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    for path in data.iterdir():
        (labelled / path.name).symlink_to(path)
    lines = [  # every label is the reference's own top-1: the reference is 100 % accurate
        f"{image['path']} {int(np.argmax(stored.logits[image['row']])) if image['row'] is not None else 0}"
        for image in stored.images
    ]
    (labelled / "val_map.txt").write_text("\n".join(lines) + "\n")
    report = tmp_path / "r.json"
    args = ("compare", "--dataset", str(labelled), "--reference-file", str(ref), "-o", str(report))
    done = cli(*args, "--target", "cpu", f"{TARGETS}:rolled")
    assert done.returncode == 1, done.stdout + done.stderr
    good, bad = (t["dataset"] for t in json.loads(report.read_text())["targets"])
    assert good["verdict"] == "pass" and good["accuracy"]["reference_top1"] == 1.0 and good["accuracy"]["mlperf_pass"]
    assert bad["verdict"] == "fail" and bad["statuses"]["fail"] == IMAGES and bad["accuracy"]["target_top1"] == 0.0
    assert not bad["accuracy"]["mlperf_pass"] and "MLPerf rule" in done.stdout
    assert f"localize --target {TARGETS}:rolled --image" in done.stdout  # the command for each worst image


def test_bad_inputs_are_one_line_and_exit_2(data, ref, tmp_path):
    tampered = tmp_path / "t.r34"
    blob = bytearray(ref.read_bytes())
    blob[64] ^= 0x10
    tampered.write_bytes(bytes(blob))
    changed = tmp_path / "changed"
    changed.mkdir()
    for path in data.iterdir():
        (changed / path.name).write_bytes(path.read_bytes())
    (changed / "img003.jpg").write_bytes((data / "img004.jpg").read_bytes())
    cases = [
        (("--reference-file", str(tampered)), str(data), "logits' SHA-256 differs"),
        (("--reference-file", str(ref)), str(changed), "img003.jpg'?: changed since the reference file"),
        (("--reference-file", str(ref), "--strict-images"), str(data), "zz_t.*--strict-images"),
        (("--reference-file", str(ref), "--weights", "seeded:7"), str(data), "built for other weights"),
        ((), str(tmp_path / "absent"), "no such folder"),
    ]
    for extra, folder, message in cases:
        out = tmp_path / "out.json"
        out.unlink(missing_ok=True)
        done = cli("compare", "--dataset", folder, "--target", "cpu", "-o", str(out), *extra)
        assert done.returncode == 2, (extra, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        import re

        assert re.search(message, lines[0]), lines[0]
        assert not out.exists() or json.loads(out.read_text())["verdict"] == "interrupted"


def test_sigkill_halfway_then_resume_equals_an_uninterrupted_run(data, ref, tmp_path):
    target = f"{TARGETS}:counting"
    base = ("compare", "--dataset", str(data), "--reference-file", str(ref), "--target", target, "--batch-size", "2")
    whole = cli(*base, "-o", str(tmp_path / "whole.json"), env={"R34_TEST_COUNT_FILE": str(tmp_path / "whole.count")})
    assert whole.returncode == 0, whole.stderr
    first_count, second_count = tmp_path / "first.count", tmp_path / "second.count"
    report = tmp_path / "cut.json"
    results = tmp_path / "cut.images"
    process = subprocess.Popen(
        [sys.executable, "-m", "resnet34_npu", *base, "-o", str(report), "--workers", "0"],
        cwd=REPO,
        env={**os.environ, "R34_TEST_COUNT_FILE": str(first_count)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if len(records(results)) >= (IMAGES + 2) // 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = set(records(results))
    assert 0 < len(saved) < IMAGES + 2, "the run was not cut halfway"
    assert json.loads(report.read_text())["verdict"] == "interrupted"  # never the verdict of a run that did not finish
    resumed = cli(*base, "-o", str(report), "--resume", env={"R34_TEST_COUNT_FILE": str(second_count)})
    assert resumed.returncode == 0, resumed.stderr

    def summary(path: Path) -> dict:
        s = json.loads(path.read_text())["targets"][0]["dataset"]
        return {k: v for k, v in s.items() if k not in ("cards", "results")}

    assert summary(report) == {**summary(tmp_path / "whole.json"), "worst": summary(report)["worst"]}
    assert [w["path"] for w in summary(report)["worst"]] == [
        w["path"] for w in summary(tmp_path / "whole.json")["worst"]
    ]
    assert records(results) == records(tmp_path / "whole.images")
    first = first_count.read_text().split() if first_count.exists() else []
    second = second_count.read_text().split()
    readable_saved = len([p for p in saved if not p.startswith("zz_")])
    # the resumed run computed only what had no saved result: nothing saved is computed again
    assert len(second) == IMAGES - readable_saved
    assert len(set(second)) == len(second) and len(first) >= readable_saved
    # at most the one batch in flight at the kill (computed, not yet saved) was computed in both runs
    assert len(set(first) & set(second)) <= 2


def test_torchrun_two_processes_equal_one_process_image_for_image(data, ref, tmp_path):
    args = ("compare", "--dataset", str(data), "--reference-file", str(ref), "--target", "cpu", "--batch-size", "1")
    single = torchrun(1, *args, "-o", str(tmp_path / "one.json"))
    assert single.returncode == 0, single.stderr[-3000:]
    double = torchrun(2, *args, "-o", str(tmp_path / "two.json"))
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = records(tmp_path / "one.images"), records(tmp_path / "two.images")
    assert len(two) == IMAGES + 2 and one == two  # every image once, every metric equal
    cards = json.loads((tmp_path / "two.json").read_text())["targets"][0]["dataset"]["cards"]
    assert [(c["rank"], c["images"]) for c in cards] == [(0, 9), (1, 9)]  # an exact split: nothing padded
    assert all(c["verdict"] == "pass" and c["images_per_s"] for c in cards)


@pytest.mark.parametrize(
    ("factory", "expected"), [("raising_on_rank1", "RuntimeError: device error"), ("hanging_on_rank1", "hung")]
)
def test_a_failing_or_hung_rank_fails_the_run_and_never_hangs(data, ref, tmp_path, factory, expected):
    report = tmp_path / "r.json"
    started = time.monotonic()
    done = torchrun(
        2,
        "compare",
        "--dataset",
        str(data),
        "--reference-file",
        str(ref),
        "--target",
        f"{TARGETS}:{factory}",
        "--rank-timeout",
        "20",
        "-o",
        str(report),
        timeout=300,
    )
    assert_failed_not_crashed(done)  # torchrun exits 1 whatever the ranks did: each rank's code checked
    assert time.monotonic() - started < 200
    assert "rank 1" in done.stdout and expected in done.stdout, done.stdout + done.stderr[-2000:]
    document = json.loads(report.read_text())
    assert document["verdict"] == "fail"
    cards = document["targets"][0]["dataset"]["cards"]
    assert cards[1]["verdict"] == "fail" and expected in cards[1]["error"] and cards[0]["verdict"] == "pass"


def test_the_exit_check_rejects_a_rank_that_crashed_with_3(data, ref, tmp_path):
    """What the check above would say of a rank that ended with the crash exit: it fails."""
    done = torchrun(
        2,
        "compare",
        "--dataset",
        str(data),
        "--reference-file",
        str(ref),
        "--target",
        f"{TARGETS}:exiting_3_on_rank1",
        "--rank-timeout",
        "20",
        "-o",
        str(tmp_path / "r.json"),
        timeout=300,
    )
    assert done.returncode != 0  # torchrun's own code says nothing of the rank's
    first, codes = rank_exits(done)
    assert first == 1 and codes[1] == 3, done.stderr[-3000:]
    with pytest.raises(AssertionError, match="exited 3, not 1"):
        assert_failed_not_crashed(done)


def test_emulated_ascend_host_eight_cards(data, ref, tmp_path):
    report = tmp_path / "r.json"
    done = torchrun(
        8,
        "compare",
        "--dataset",
        str(data),
        "--reference-file",
        str(ref),
        "--target",
        "npu",
        "--workers",
        "0",
        "-o",
        str(report),
        env={"R34_EMULATE_ASCEND": "Ascend910B3:8"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    summary = json.loads(report.read_text())["targets"][0]["dataset"]
    assert [c["card"] for c in summary["cards"]] == [f"npu:{i}" for i in range(8)]
    assert sum(c["images"] for c in summary["cards"]) == IMAGES + 2 and summary["compared"] == IMAGES
    assert summary["verdict"] == "pass" and summary["rel_l2"]["max"] > 0  # HF32 convolutions: not bit-equal to the CPU
    cross = summary["cross_check"]  # the default under torchrun: the first 4 images on every card
    assert cross["requested"] == 4 and cross["images"] == [f"img{k:03d}.jpg" for k in range(4)]
    assert cross["passed"] and cross["outliers"] == [] and cross["cards"] == [f"npu:{i}" for i in range(8)]
    assert "cross-check: 4 shared images on 8 cards, bit-identical" in done.stdout


def test_emulated_card_one_ulp_off_is_named_by_the_cross_check(data, ref, tmp_path):
    """Card 5's conv1 is 1 ulp off: within every tolerance, so only the cross-check sees it."""
    report = tmp_path / "r.json"
    done = torchrun(
        8,
        "compare",
        "--dataset",
        str(data),
        "--reference-file",
        str(ref),
        "--target",
        "npu",
        "--workers",
        "0",
        "--cross-check",
        "2",
        "-o",
        str(report),
        env={"R34_EMULATE_ASCEND": "Ascend910B3:8", "R34_EMULATED_FAULTS": "5:ulp"},
    )
    assert_failed_not_crashed(done)
    document = json.loads(report.read_text())
    schemas.validate(document, "compare-report", source=report)  # cross_check and card_outlier included
    summary = document["targets"][0]["dataset"]
    assert summary["statuses"].get("fail", 0) == 0  # every image passes the profile against the CPU
    cross = summary["cross_check"]
    assert cross["requested"] == 2 and not cross["passed"]
    assert [o["card"] for o in cross["outliers"]] == ["npu:5"]
    outlier = cross["outliers"][0]
    assert outlier["images"] == ["img000.jpg", "img001.jpg"] and outlier["max_ulp"] and outlier["max_ulp"] > 0
    assert summary["verdict"] == "fail" and [c["card"] for c in summary["cards"] if c["verdict"] == "fail"] == ["npu:5"]
    assert "npu:5 differs from the majority of 8 cards on img000.jpg, img001.jpg" in done.stdout
    assert "npu:5 (cross-check)" in done.stdout


def test_pytest_dataset_option_adds_one_test_per_target(data, ref, tmp_path):
    report = tmp_path / "acceptance.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "tests/conformance/test_dataset.py",
            f"--r34-dataset={data}",
            f"--r34-reference-file={ref}",
            "--r34-target=cpu",
            f"--r34-target={TARGETS}:rolled",
            f"--r34-report={report}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout[-3000:]
    assert "1 failed, 1 passed" in done.stdout and "resnet34-npu dataset agreement" in done.stdout
    assert report.exists(), done.stdout[-3000:]
    targets = {t["name"]: t for t in json.loads(report.read_text())["targets"]}
    assert targets["cpu/fp32"]["verdict"] == "pass" and targets["cpu/fp32"]["dataset"]["compared"] == IMAGES
    assert targets[f"{TARGETS}:rolled"]["verdict"] == "fail"
    without = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/conformance/test_dataset.py",
            "--r34-report=none",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert without.returncode == 5 and "deselected" in without.stdout  # not collected without --r34-dataset


def test_a_dataset_that_compares_nothing_is_not_a_pass(tmp_path):
    for name in ("a.jpg", "b.png"):
        (tmp_path / name).write_bytes(b"not an image")
    report = tmp_path / "r.json"
    done = cli("compare", "--dataset", str(tmp_path), "--target", "cpu", "-o", str(report))
    assert done.returncode == 1, done.stdout + done.stderr
    document = json.loads(report.read_text())
    assert document["verdict"] == "not run" and document["targets"][0]["dataset"]["statuses"] == {"unreadable": 2}


def test_a_target_that_raises_fails_named_and_the_next_target_runs(data, ref, tmp_path):
    report = tmp_path / "r.json"
    args = ("compare", "--dataset", str(data), "--reference-file", str(ref), "--batch-size", "4", "-o", str(report))
    done = cli(*args, "--target", f"{TARGETS}:raising_on_second_batch", "cpu")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
    bad, good = (t["dataset"] for t in json.loads(report.read_text())["targets"])
    assert bad["verdict"] == "fail" and "RuntimeError: device error on the second batch" in bad["failures"][0]
    assert bad["missing"] > 0 and good["verdict"] == "pass" and good["compared"] == IMAGES


def test_resume_refuses_results_of_another_run_and_bad_folders_keep_the_report(data, tmp_path):
    report = tmp_path / "r.json"
    base = ("compare", "--dataset", str(data), "--target", "cpu", "--batch-size", "8", "-o", str(report))
    assert cli(*base).returncode == 0
    kept = report.read_text()
    other = cli(*base, "--reference", "cpu/fp32/channels_last", "--resume")
    assert other.returncode == 2 and "holds results of another run" in other.stderr, other.stderr
    (tmp_path / "file").write_text("a file, not a folder")
    bad = cli(*base, "--results", str(tmp_path / "file"))
    assert bad.returncode == 2 and "results folder" in bad.stderr and "is not a folder" in bad.stderr
    assert report.read_text() == kept  # a refused run leaves the previous report alone


def test_resume_checks_the_images_and_the_folder_is_one_runs_at_a_time(data, ref, tmp_path):
    from resnet34_npu.dataset import agreement

    copy = tmp_path / "copy"
    copy.mkdir()
    for path in data.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    report = tmp_path / "r.json"
    base = ("compare", "--dataset", str(copy), "--target", "cpu", "--batch-size", "8", "-o", str(report))
    assert cli(*base).returncode == 0
    strict = cli(*base, "--resume", "--strict-images")  # the saved unreadable images count under --strict-images
    assert strict.returncode == 2 and "--strict-images" in strict.stderr, strict.stderr
    (copy / "img002.jpg").write_bytes((copy / "img005.jpg").read_bytes())  # same names, other pictures
    swapped = cli(*base, "--resume")
    assert swapped.returncode == 2 and "img002.jpg" in swapped.stderr, swapped.stderr
    assert "changed since its result was saved" in swapped.stderr
    holder = agreement.Results(tmp_path / "r.images" / "cpu_fp32", {}, 0)
    holder.lock()  # another run is writing this folder right now
    try:
        busy = cli(*base)
    finally:
        holder.release()
    assert busy.returncode == 2 and "in use by another run right now" in busy.stderr, busy.stderr


def test_an_interrupted_reference_build_is_not_resumed_on_other_images(data, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in data.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "ref.r34"
    process = subprocess.Popen(
        [sys.executable, "-m", "resnet34_npu", "reference", "build", "--dataset", str(copy), "-o", str(out)]
        + ["--batch-size", "2", "--workers", "0"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = tmp_path / "ref.r34.partial"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("\n") < 5):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    (copy / "img000.jpg").write_bytes((copy / "img001.jpg").read_bytes())
    done = cli("reference", "build", "--dataset", str(copy), "-o", str(out))
    assert done.returncode == 2 and "is not the one the interrupted build" in done.stderr, done.stderr
    assert not out.exists()
