from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from resnet34_npu import InputError
from resnet34_npu.targets import devices
from resnet34_npu.targets.devices import (
    AUTO_ORDER,
    KINDS,
    NPU_NOT_INSTALLED,
    list_devices,
    parse_device,
    probe,
    probe_npu,
    resolve_device,
)
from resnet34_npu.targets.knobs import default_acl_precision_mode


@pytest.mark.parametrize(
    "spec, parsed",
    [
        ("cpu", ("cpu", None)),
        ("npu:3", ("npu", 3)),
        ("cuda:0", ("cuda", 0)),
        ("auto", ("auto", None)),
        ("mps", ("mps", None)),
        ("xpu:1", ("xpu", 1)),
    ],
)
def test_parse_device(spec, parsed):
    assert parse_device(spec) == parsed


@pytest.mark.parametrize(
    "spec, words",
    [
        ("npx", "Unknown device 'npx'. Choose one of: auto, cpu, npu, cuda, mps, xpu"),
        ("cuda:x", "index must be"),
        ("cpu:1", "cpu/mps have only :0"),
        ("auto:1", "Unknown device"),
        ("", "Unknown device"),
    ],
)
def test_bad_device_strings(spec, words):
    with pytest.raises(InputError) as err:
        parse_device(spec)
    assert words in str(err.value)


def test_auto_picks_the_first_available_in_order():
    # the documented order, written out (not read back from the code under test)
    assert AUTO_ORDER == ("npu", "cuda", "mps", "cpu")
    expected = next(k for k in ("npu", "cuda", "mps", "cpu") if probe(k).available)
    assert resolve_device("auto").type == expected


def test_cpu_is_always_there():
    assert resolve_device("cpu") == torch.device("cpu")
    devices.synchronize(torch.device("cpu"))
    assert devices.device_name(torch.device("cpu"))
    settings = devices.precision_settings(torch.device("cpu"))
    assert settings["num_threads"] == torch.get_num_threads()
    assert settings["float32_matmul_precision"] == torch.get_float32_matmul_precision()


def test_unavailable_kinds_say_why():
    absent = [k for k in KINDS if not probe(k).available]
    if not absent:
        pytest.skip("every device kind is available on this host")
    for kind in absent:
        with pytest.raises(InputError) as err:
            resolve_device(f"{kind}:0" if kind not in ("mps",) else kind)
        assert "is not available: " in str(err.value) and probe(kind).reason in str(err.value)


def test_index_out_of_range_on_an_available_accelerator():
    present = [k for k in ("npu", "cuda", "xpu") if probe(k).available]
    if not present:
        pytest.skip("no accelerator here to index past")
    kind = present[0]
    with pytest.raises(InputError, match="out of range"):
        resolve_device(f"{kind}:{probe(kind).count}")


def test_list_devices_has_one_row_per_kind_or_index():
    rows = list_devices()
    kinds = [r.device.partition(":")[0] for r in rows]
    assert list(KINDS) == ["cpu", "npu", "cuda", "mps", "xpu"]
    assert set(kinds) == {"cpu", "npu", "cuda", "mps", "xpu"}
    assert rows[0].device == "cpu" and rows[0].available and rows[0].name
    for row in rows:
        assert row.available == (row.reason == "")


# --- torch_npu detection, against real broken packages --------------------------------------


def _package(tmp_path, monkeypatch, name, body):
    root = tmp_path / "site"
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_missing_torch_npu():
    if probe_npu().reason != NPU_NOT_INSTALLED and probe_npu().available:
        pytest.skip("torch_npu is installed here")
    status = probe_npu("torch_npu_definitely_absent")
    assert not status.available and status.reason == "torch_npu_definitely_absent is not installed"


def test_torch_npu_that_fails_to_import_reports_the_real_cause(tmp_path, monkeypatch):
    name = _package(
        tmp_path,
        monkeypatch,
        "fake_npu_nocann",
        """
        raise ImportError("libhccl.so: cannot open shared object file: No such file or directory")
    """,
    )
    status = probe_npu(name)
    assert not status.available and status.count == 0
    assert status.reason == (
        f"import {name} failed: ImportError: libhccl.so: cannot open shared object file: No such file or directory"
        " (torch_npu installed; CANN is not installed or not set up in this shell: "
        "source /usr/local/Ascend/ascend-toolkit/set_env.sh)"
    )


def test_torch_npu_raising_anything_else_is_contained(tmp_path, monkeypatch):
    name = _package(
        tmp_path,
        monkeypatch,
        "fake_npu_runtime",
        """
        raise RuntimeError("ACL init failed, error code 507008\\nmore detail")
    """,
    )
    assert probe_npu(name).reason == f"import {name} failed: RuntimeError: ACL init failed, error code 507008"


def test_torch_npu_that_imports_but_registers_nothing(tmp_path, monkeypatch):
    if hasattr(torch, "npu"):
        pytest.skip("torch.npu exists here")
    name = _package(tmp_path, monkeypatch, "fake_npu_empty", "")
    assert probe_npu(name).reason == f"{name} imported but did not register torch.npu"


@pytest.mark.parametrize(
    "soc, mode",
    [
        ("Ascend910A", "allow_fp32_to_fp16"),
        ("Ascend910ProB", "allow_fp32_to_fp16"),
        ("Ascend910B3", "must_keep_origin_dtype"),
        ("Ascend910_9391", "must_keep_origin_dtype"),
    ],
)
def test_acl_default_precision_mode_by_soc(soc, mode):
    assert default_acl_precision_mode(soc) == mode
