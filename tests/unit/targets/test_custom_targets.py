"""Custom targets (module.path:factory): built, checked and run through the same path as a
device; every way a factory can be wrong is a clear usage error."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from resnet34_npu import InputError
from resnet34_npu.cli import main as cli
from resnet34_npu.core.constants import DEFAULT_IMAGE
from resnet34_npu.judge.compare import Session
from resnet34_npu.judge.criteria import judge
from resnet34_npu.judge.metrics import compare_logits
from resnet34_npu.targets.runners import CustomRunner
from resnet34_npu.targets.spec import CustomSpec, parse_target

BAD = """
import torch

def wrong_shape(model):
    return lambda batch: torch.zeros(batch.shape[0], 10)

def wrong_dtype(model):
    return lambda batch: torch.zeros(batch.shape[0], 1000, dtype=torch.int64)

def not_a_tensor(model):
    return lambda batch: [0.0] * 1000

def not_callable(model):
    return 42

def raises(model):
    raise RuntimeError("engine file missing")

class BadPrecision:
    precision = "fp8"
    def __call__(self, batch):
        return torch.zeros(batch.shape[0], 1000)

def bad_precision(model):
    return BadPrecision()

def ignores_batch_size(model):
    return lambda batch: torch.zeros(1, 1000)

def good(model):
    class Engine:
        name = "my-engine"
        precision = "fp32"
        synced = 0
        def __call__(self, batch):
            with torch.no_grad():
                return model(batch).to(torch.float64)
        def synchronize(self):
            Engine.synced += 1
    return Engine()

def half_output(model):
    class Half:
        precision = "fp16"
        def __call__(self, batch):
            with torch.no_grad():
                return model(batch).half()
    return Half()
"""


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "my_factories.py").write_text(textwrap.dedent(BAD))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_factories"


@pytest.fixture(scope="module")
def session():
    return Session("seeded", "cpu")


def test_parse():
    assert parse_target("pkg.mod:make") == CustomSpec("pkg.mod", "make")
    assert parse_target("mod:make").name == "mod:make"
    assert not isinstance(parse_target("npu:3"), CustomSpec)


@pytest.mark.parametrize(
    "attr, words",
    [
        ("wrong_shape", "returned logits of shape [2, 10], expected [2, 1000]"),
        ("wrong_dtype", "returned torch.int64 logits, expected a floating-point tensor"),
        ("not_a_tensor", "returned list, expected a tensor of logits [N, 1000]"),
        ("not_callable", "the factory returned int, not a callable"),
        ("raises", "the factory raised RuntimeError: engine file missing"),
        ("bad_precision", "precision 'fp8' is not one of fp64, fp32, tf32, hf32, fp16, bf16"),
        ("ignores_batch_size", "returned logits of shape [1, 1000], expected [2, 1000]"),
        ("missing", "module 'my_factories' has no callable 'missing'"),
    ],
)
def test_wrong_factories_are_usage_errors(factories, session, attr, words):
    with pytest.raises(InputError) as err:
        session.runner(f"{factories}:{attr}")
    assert str(err.value).startswith(f"target '{factories}:{attr}': ") and words in str(err.value)


def test_unimportable_module(session):
    with pytest.raises(InputError, match=r"cannot import module 'no_such_pkg.engine' \(ModuleNotFoundError"):
        session.runner("no_such_pkg.engine:build")


@pytest.mark.slow
def test_a_good_factory_runs_like_a_device(factories, session):
    runner = session.runner(f"{factories}:good")
    assert isinstance(runner, CustomRunner) and runner.name == "my-engine" and runner.module is None
    result = session.evaluate(runner, [DEFAULT_IMAGE], warmup=1, iters=2)
    assert result.verdict == "pass" and result.name == "my-engine"
    assert result.cases[0].metrics()["max_abs_error"] == 0.0, "float64 logits come back exactly"
    assert runner.fn.synced >= 2, "synchronize() is called around timed runs"


def test_declared_precision_decides_the_bounds(factories, session):
    runner = session.runner(f"{factories}:half_output")
    case = session.compare(runner, [DEFAULT_IMAGE])
    assert runner.precision == "fp16" and case.verdict.passed  # fp16 logits, judged as fp16
    logits = runner.run(session.batch([DEFAULT_IMAGE]))
    as_fp32 = compare_logits(session.reference_logits([DEFAULT_IMAGE]), logits, precision="fp32")
    assert judge(as_fp32).status == "fail", "the same logits claimed as fp32 fail"


def test_the_factory_gets_a_copy_of_the_reference(factories, session):
    before = session.model.fc.weight.clone()
    runner = session.runner("resnet34_npu.faults:bn_stats_off")
    assert runner.module is not session.model and torch.equal(session.model.fc.weight, before)
    assert torch.equal(
        session.model.layer2[0].bn2.running_mean, Session("seeded", "cpu").model.layer2[0].bn2.running_mean
    )


def test_cli_bad_custom_target_exits_2(factories, tmp_path, capsys):
    code = cli.main(["compare", "--target", f"{factories}:wrong_shape", "--output", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and "returned logits of shape [2, 10]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_a_custom_target_is_described_by_what_it_documents(factories, session, tmp_path):
    """Attributes the protocol does not document (a torch dtype, a device) never reach the report."""
    (tmp_path / "wrapped_engine.py").write_text(
        "import torch\n"
        "class Engine:\n"
        "    dtype = torch.float32\n"
        "    device = torch.device('cpu')\n"
        "    def __init__(self, model):\n"
        "        self.model = model\n"
        "    def __call__(self, batch):\n"
        "        with torch.no_grad():\n"
        "            return self.model(batch)\n"
        "def build(model):\n"
        "    return Engine(model)\n"
    )
    result = session.evaluate(session.runner("wrapped_engine:build"), [DEFAULT_IMAGE], iters=0)
    document = json.loads(json.dumps(result.to_dict()))
    assert document["device"] == "custom" and document["dtype"] == "fp32" and document["verdict"] == "pass"
