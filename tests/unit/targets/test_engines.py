"""Execution modes and backends (compile, graph, export, ONNX Runtime): the grammar, the
precision they are judged at, ONNX Runtime's fallback as an error, backends this host cannot
run as skips or one-line errors, who is blamed when a compiled target fails, and the engine
registry: a new mode is one class and one registry entry, refused in one line when incomplete."""

from __future__ import annotations

import json
import types
import warnings

import pytest
import torch

from resnet34_npu.cli import main as cli
from resnet34_npu.core.constants import IMAGES_DIR
from resnet34_npu.core.errors import InputError
from resnet34_npu.judge.compare import Session
from resnet34_npu.targets import engines, knobs, matrix
from resnet34_npu.targets.engines.compile import Compile
from resnet34_npu.targets.runners import CustomRunner, Placement
from resnet34_npu.targets.spec import parse_target

CAT = str(IMAGES_DIR / "cat.jpg")


@pytest.fixture(scope="module")
def session():
    return Session("seeded", "cpu")


@pytest.mark.parametrize(
    "text, words",
    [
        ("cpu/fp32/compile/export", "one execution mode at a time, not compile and export"),
        ("cpu/fp32/graph", "graph runs on cuda, npu devices, not cpu"),
        ("npu/fp32/export", "export runs on cpu, cuda devices, not npu"),
        ("cpu/fp32/tensorrt", "tensorrt runs on cuda devices, not cpu"),
        ("cpu/bf16/ort", "ort runs fp32 or fp16 (weights and input cast), not bf16"),
        ("cpu/bf16-autocast/ort", "ort runs fp32 or fp16"),
        ("cuda/fp32/compile_mode=max-autotune", "compile_mode is a setting of the compile mode; add /compile"),
        ("cuda/fp32/ort/cann_precision=force_fp32", "cann_precision applies to npu devices only"),
        ("npu/fp32/compile/torchair_mode=fast", "torchair_mode='fast' is not valid"),
        ("cpu/fp32/eager/compile", "eager means no mode"),
        ("cuda/fp32/ort/tf32=off", "tf32 switches torch's device, which ort does not use"),
        ("cuda/fp16-autocast/graph", "graph capture under autocast would replay freed cast weights"),
    ],
)
def test_execution_modes_follow_one_grammar(text, words):
    with pytest.raises(InputError, match=None) as info:
        parse_target(text)
    assert words in str(info.value)


def test_an_execution_mode_combines_with_layout_dtype_and_its_knobs():
    spec = parse_target("cuda:1/fp16/compile/channels_last/compile_mode=reduce-overhead/tf32=off")
    assert spec.execution == "compile" and spec.modes == ("channels_last", "compile")
    assert spec.name == "cuda:1/fp16/channels_last/compile/compile_mode=reduce-overhead/tf32=off"
    # the eager twin: same device, dtype, layout and device knobs; no execution mode or its settings
    assert spec.eager_twin().name == "cuda:1/fp16/channels_last/tf32=off"
    assert parse_target("cpu/fp32/ort").eager_twin().name == "cpu/fp32"
    assert parse_target("cpu").execution is None


@pytest.mark.parametrize(
    "text, precision, why",
    [
        ("npu:0/fp32/ort", "fp16", "cann.precision_mode=force_fp16 (provider default, not set)"),
        ("npu:0/fp32/ort/cann_precision=allow_fp32_to_fp16", "fp16", "cann.precision_mode=allow_fp32_to_fp16"),
        ("npu:0/fp32/ort/cann_precision=must_keep_origin_dtype", "fp32", "fp32 end to end"),
        ("npu:0/fp32/ort/cann_precision=force_fp32", "fp32", "fp32 end to end"),
        ("cuda:0/fp32/tensorrt", "tf32", "fp32 on ONNX Runtime's TensorrtExecutionProvider: TF32 is allowed"),
        ("cuda:0/fp32/ort", "tf32", "fp32 on ONNX Runtime's CUDAExecutionProvider: TF32 is allowed by default"),
        ("cuda:0/fp16/tensorrt", "fp16", "weights and input cast to fp16"),
        ("cpu/fp32/ort", "fp32", "fp32 end to end"),
    ],
)
def test_onnx_runtime_targets_are_judged_at_the_precision_their_provider_uses(text, precision, why):
    """The CANN provider computes fp32 models in fp16 unless told otherwise: such a target is
    judged at fp16, and its report says why (torch's own switches do not apply to it)."""
    spec = parse_target(text)
    # no NPU here, and torch cannot name an npu device without torch_npu: the settings read
    # only the device's kind and index
    device = torch.device(spec.device) if spec.kind != "npu" else types.SimpleNamespace(type="npu", index=0)
    placement = Placement(spec, device)
    settings, effective, reason = placement.settings()
    assert effective == precision and why in reason
    assert settings["onnxruntime.provider"] == (
        engines.TENSORRT_PROVIDER if "tensorrt" in text else engines.ORT_PROVIDERS[spec.kind]
    )
    assert not any(key.startswith(("cudnn", "cuda.matmul", "npu.", "ACL")) for key in settings)
    assert placement.torch_device == torch.device("cpu")  # ONNX Runtime moves the data itself


@pytest.fixture(scope="module")
def onnx_file(session):
    return session.runner("cpu/fp32/ort").describe()["engine"]["onnx_file"]


@pytest.mark.parametrize(
    "provider",
    [
        "CUDAExecutionProvider",
        pytest.param("CANNExecutionProvider", marks=pytest.mark.slow),  # asked twice: precision_mode, then _v2
        pytest.param("TensorrtExecutionProvider", marks=pytest.mark.slow),
    ],
)
def test_a_fallback_to_the_cpu_provider_is_an_error(onnx_file, provider):
    """This host's onnxruntime has none of these providers: ONNX Runtime itself would run the
    model on its CPU provider with a warning; the suite refuses, with that sentence."""
    onnxruntime = pytest.importorskip("onnxruntime")
    if provider in onnxruntime.get_available_providers():
        pytest.skip(f"this onnxruntime has {provider}")
    options = {"device_id": 0, **({"precision_mode": "force_fp32"} if provider.startswith("CANN") else {})}
    with pytest.raises(engines.BackendUnavailable) as info:
        engines.open_session(onnx_file, [(provider, options)], "npu:0/fp32/ort")
    line = str(info.value)
    assert f"asked ONNX Runtime for {provider}, but it runs on CPUExecutionProvider" in line
    assert "a fallback to the CPU, which would certify the wrong device" in line and "\n" not in line


def test_the_onnx_runtime_target_reports_its_engine_and_matches_the_reference(session, onnx_file):
    runner = session.runner("cpu/fp32/ort")
    engine = runner.describe()["engine"]
    assert engine["providers"] == ["CPUExecutionProvider"] and engine["exporter"] in ("dynamo", "torchscript")
    assert onnx_file.endswith(f"-torch{torch.__version__.split('+')[0]}-{engine['exporter']}-fp32.onnx")
    assert runner.module is None, "ONNX Runtime has no module hooks: its eager twin is localised"
    case = session.compare(runner, [CAT])
    assert case.verdict.passed and case.comparison.rel_l2_error < 1e-5


def test_a_backend_this_host_lacks_is_one_line_in_the_cli(tmp_path, capsys, monkeypatch):
    """Named, it fails the run (exit 1) with one line and runs nothing (the README's table of outcomes)."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no C++ compiler for inductor
    monkeypatch.delenv("CXX", raising=False)
    code = cli.main(["compare", "--target", "cpu/fp32/compile", "--output", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert "inductor needs a C++ compiler (g++, or set CXX); none is on PATH" in lines[0]
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == "fail"


@pytest.mark.slow
def test_a_miscompiled_convolution_is_blamed_on_the_compiler(session):
    """A torch.compile backend that rewrites one convolution; the original module (its eager
    twin) is healthy: the verdict fails and blames the compiled graph, not the device."""
    runner = session.runner("resnet34_npu.faults:miscompiled_conv")
    assert runner.module is None and runner.eager_twin() is not None
    case = session.compare(runner, [CAT])
    lines = case.verdict.failure_lines
    assert case.verdict.status == "fail" and lines[0].startswith("rel_l2_error:")
    assert lines[1] == (
        "blame: its eager twin fault:miscompiled-conv (eager: _orig_mod) passes (rel L2 0.000e+00); only the "
        "compiled graph fails: a compiler or fusion problem, not the device's kernels"
    )
    assert lines[2].startswith("localization: only the compiled graph fails, and layer-wise localisation needs")
    assert case.blame == {
        "eager_twin": "fault:miscompiled-conv (eager: _orig_mod)",
        "eager_verdict": "pass",
        "blamed": "compile",
    }


def broken_and_compiled(model):
    """A compiled module whose original is broken too (a bad weight copy in layer3.0.conv2)."""
    from resnet34_npu.judge.faults import conv_weight_noise

    return torch.compile(conv_weight_noise(model), backend="eager")


@pytest.mark.slow
def test_when_the_eager_twin_fails_too_the_device_is_blamed_and_the_twin_localised(session):
    runner = session.runner(f"{__name__}:broken_and_compiled")
    case = session.compare(runner, [CAT])
    lines = case.verdict.failure_lines
    assert lines[1].startswith("blame: its eager twin ") and "fails too" in lines[1]
    assert lines[1].endswith("the device's kernels or settings, not the compiled graph")
    assert lines[2].startswith("first diverging stage: layer3.0.conv2:")
    assert lines[2].endswith("(localised on the eager twin fault:conv-weight-noise-1e-3 (eager: _orig_mod))")
    assert case.blame["blamed"] == "device" and case.localization.first_failing == "layer3.0.conv2"


@pytest.mark.slow
def test_compare_runs_compiled_exported_and_onnx_runtime_targets(tmp_path, capsys):
    """The issue's command on this CPU: each passes, with its build time apart from its latency."""
    report = tmp_path / "r.json"
    targets = ["cpu/fp32/compile", "cpu/fp32/export", "cpu/fp32/ort"]
    code = cli.main(
        ["compare", "--target", *targets, "--image", CAT, "--iters", "2", "--warmup", "1", "--output", str(report)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads(report.read_text())
    assert [t["name"] for t in doc["targets"]] == targets and doc["verdict"] == "pass"
    for target in doc["targets"]:
        assert target["engine"]["build_s"] > 0 and target["latency_ms"]["median"] > 0
        assert f"build {target['name']}: {target['engine']['execution']} (" in out
    assert doc["targets"][1]["engine"]["backend"] == "aot_inductor"


@pytest.mark.slow
def test_localize_on_a_compiled_target_localises_its_eager_twin(capsys):
    code = cli.main(["localize", "--target", "resnet34_npu.faults:miscompiled_conv", "--image", CAT])
    out, err = capsys.readouterr()
    assert "has no module hooks; localising its eager twin fault:miscompiled-conv (eager: _orig_mod)" in err
    assert code == 1 and "localization: no stage of the module breaks the profile" in out  # the twin is healthy


def crashing_backend(gm, example_inputs):
    raise RuntimeError("internal compiler error in fused_conv_bn_relu_3")


@pytest.mark.slow
def test_an_engine_that_fails_to_build_fails_its_target_once(session, monkeypatch):
    """A compiler crash is the target's failure, named, not a crash of the suite; it is built
    once, and every run of the target says why."""

    class CrashingCompile(Compile):
        def build(self, module, example, device, options, **_):
            compiled = torch.compile(module, backend=crashing_backend)
            compiled(example)  # the first call compiles, and the compiler raises
            return engines.Engine("compile", compiled)

    monkeypatch.setattr(engines, "ENGINES", tuple(CrashingCompile if e is Compile else e for e in engines.ENGINES))
    runner = session.runner("cpu/fp32/compile")
    assert runner.describe()["engine"]["error"].startswith("its compile engine failed to build: ")
    case = session.compare(runner, [CAT])
    assert case.verdict.status == "fail" and case.error.startswith("target 'cpu/fp32/compile' raised BuildFailed: ")
    assert "internal compiler error in fused_conv_bn_relu_3" in case.error


def test_a_custom_target_s_eager_twin_leaves_the_target_compiled():
    class Wrapper:
        def __init__(self, module):
            self.module = module

        def __call__(self, batch):
            return self.module(batch)

    inner = torch.nn.Linear(2, 2)
    compiled = torch.compile(inner, backend="eager")
    wrapper = Wrapper(compiled)
    runner = CustomRunner(parse_target("m:f"), wrapper, "m:f", "fp32", None)
    twin = runner.eager_twin()
    assert twin.fn.module is inner and wrapper.module is compiled and runner.fn is wrapper
    assert twin.module is inner and twin.name == "m:f (eager: _orig_mod)"


# --- the registry: a new mode is one class and one entry ---------------------------------


class Script(engines.ExecutionEngine):
    """A real extra mode, registered only through ``engines.ENGINES``: torch.jit.trace on the
    CPU, optionally frozen (its settings key ``script_freeze=``)."""

    name = "script"
    help = "torch.jit.trace on the CPU"
    what = "the TorchScript trace"
    cause = "a tracing problem"
    kinds = ("cpu",)
    dtypes = ("fp32",)
    settings_keys = (
        engines.Setting("script_freeze", ("cpu",), ("on", "off"), "torch.jit.freeze the trace", "torch.jit.freeze"),
    )
    default_targets = {"cpu": ("cpu/fp32/script",)}
    summary_keys = ("frozen",)

    def build(self, module, example, device, options, *, context, **_):
        with context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.9 deprecates torch.jit
            traced = torch.jit.trace(module, example, check_trace=False)
            frozen = options.get("script_freeze", "off")
            if frozen == "on":
                traced = torch.jit.freeze(traced)
            traced(example)
        return engines.Engine(self.name, traced, info={"backend": "torchscript", "frozen": frozen})


@pytest.fixture
def with_script(monkeypatch):
    monkeypatch.setattr(engines, "ENGINES", (*engines.ENGINES, Script))


def test_a_mode_registered_only_in_the_registry_is_in_the_grammar_knobs_and_matrix(with_script):
    spec = parse_target("cpu/fp32/script/script_freeze=on")
    assert spec.execution == "script" and spec.eager_twin().name == "cpu/fp32"
    assert "script_freeze=on|off" in knobs.knob_help()
    for text, words in [
        ("cuda/fp32/script", "script runs on cpu devices, not cuda"),
        ("cpu/fp16/script", "script runs fp32 (weights and input cast), not fp16"),
        ("cpu/fp32/script_freeze=on", "script_freeze is a setting of the script mode; add /script"),
        ("cpu/fp32/script/compile", "one execution mode at a time, not compile and script"),
    ]:
        with pytest.raises(InputError) as info:
            parse_target(text)
        assert words in str(info.value)
    choices = {c.name: c for c in matrix.default_matrix()}
    assert "cpu/fp32/script" in choices and choices["cpu/fp32/script"].runnable
    assert engines.get("script").summary({"frozen": "on", "backend": "torchscript"}) == ["frozen on"]


def test_without_the_registry_entry_the_mode_is_unknown():
    """The same spec without the entry: the grammar refuses it (the registry test above can fail)."""
    with pytest.raises(InputError, match="unknown or repeated part 'script'"):
        parse_target("cpu/fp32/script")
    assert "script_freeze" not in knobs.KNOBS


def test_a_registered_mode_builds_runs_and_is_blamed_by_name(session, with_script):
    runner = session.runner("cpu/fp32/script/script_freeze=on")
    engine = runner.describe()["engine"]
    assert engine["execution"] == "script" and engine["frozen"] == "on" and engine["build_s"] > 0
    assert runner.precision_settings["torch.jit.freeze"] == "on"
    case = session.compare(runner, [CAT])
    assert case.verdict.passed and case.comparison.rel_l2_error < 1e-5
    twin = session.twin(runner)
    assert twin.name == "cpu/fp32"
    record, _, lines = session.blame(runner, twin, [CAT])  # as for a failing verdict: the twin passes
    assert record == {"eager_twin": "cpu/fp32", "eager_verdict": "pass", "blamed": "script"}
    assert str(lines[0]).endswith("only the TorchScript trace fails: a tracing problem, not the device's kernels")


class NoCause(engines.ExecutionEngine):
    name = "nocause"
    help = "h"
    what = "w"

    def build(self, *args, **kwargs):
        raise AssertionError("never built")


class NoBuild(engines.ExecutionEngine):
    name, help, what, cause = "nobuild", "h", "w", "c"


class Twice(Script):
    """A second engine under a taken name."""

    name = "compile"
    settings_keys = ()


class NotAnEngine:
    name = "plain"


@pytest.mark.parametrize(
    "entry, line",
    [
        (NoCause, "engine 'NoCause': missing required member(s) cause"),
        (NoBuild, "engine 'NoBuild': missing required member(s) build"),
        (Twice, "engine 'Twice': mode 'compile' is registered twice"),
        (NotAnEngine, "engine 'NotAnEngine': not a subclass of ExecutionEngine"),
    ],
)
def test_an_incomplete_engine_is_refused_at_registration_in_one_line(monkeypatch, entry, line):
    monkeypatch.setattr(engines, "ENGINES", (*engines.ENGINES, entry))
    with pytest.raises(InputError) as info:
        engines.registry()
    assert str(info.value) == line
    with pytest.raises(InputError, match="missing|twice|not a subclass"):
        parse_target("cpu/fp32/channels_last")  # every consumer reads the registry, so none runs on a broken one
