"""Per-stage tensors written as an msprobe (PyPI ``mindstudio-probe``) PyTorch dump, so that
Ascend engineers can run ``msprobe compare`` on what :mod:`.localize` compares.

One side (target or reference) becomes ``ROOT/step0/rank0/dump.json`` plus
``ROOT/step0/rank0/dump_tensor_data/*.pt``, the layout msprobe's ``task: tensor``, ``level: L0``
(module-level) dump writes: every stage is an entry named like msprobe's module hooks name it,
``Module.{stage}.{class}.forward.0`` (``Module.layer1.0.BasicBlock.forward.0``), with its tensor
inputs (``input_args``) and its output (``output``), each with msprobe's statistics fields and
the ``.pt`` file that holds it (``torch.save`` of a plain contiguous CPU tensor, which msprobe
reads back with ``torch.load(weights_only=True)``). msprobe's compare needs the inputs: it calls
a module an error when its input still agrees (one-thousandth ratio > 0.9) and its output no
longer does (< 0.1), so it names the stage where the divergence starts, as localisation does.

Tensors are saved as float32, the form localisation compares (a reduced-precision target's
stages are widened), so msprobe's dtype check compares values, not storage types. Entries are
in execution order, children before their block, as msprobe's module dump orders them. Each
tree is written in a temporary folder beside it and renamed into place: a run that fails leaves
no tree that looks complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from resnet34_npu.core.errors import InputError, plain, show

if TYPE_CHECKING:
    import torch

STEP_RANK = Path("step0", "rank0")
DUMP_JSON = "dump.json"
DATA_DIR = "dump_tensor_data"
#: The dump header msprobe's compare checks (task decides the mode: "tensor" compares real data).
HEADER = {"task": "tensor", "level": "L0", "framework": "pytorch"}
#: The statistics every tensor entry carries, in msprobe's order.
TENSOR_FIELDS = ("type", "dtype", "shape", "Max", "Min", "Mean", "Norm", "requires_grad", "data_name")
#: msprobe refuses paths with any other character (``FileCheckConst.FILE_VALID_PATTERN``).
MSPROBE_PATH = re.compile(r"^[a-zA-Z0-9_.:/-]+$")
SIDES = ("target", "reference")


@dataclass(frozen=True)
class StageTensors:
    """One stage's call: the class name of its module, its tensor inputs and its output."""

    module_class: str
    inputs: tuple[torch.Tensor, ...]
    output: torch.Tensor


def entry_name(stage: str, module_class: str) -> str:
    """msprobe's name for the first forward call of module ``stage`` (L0 dump)."""
    return f"Module.{stage}.{module_class}.forward.0"


def capture_stages(module: torch.nn.Module, run: Callable[[], Any]) -> dict[str, StageTensors]:
    """Every stage of ``module`` while ``run()`` runs (see :func:`.localize.capture`), with
    its inputs, in execution order."""
    from resnet34_npu.judge.localize import STAGES, capture, find_stages

    inputs: dict[str, tuple[torch.Tensor, ...]] = {}
    outputs = capture(module, run, inputs)
    classes = {stage: type(sub).__name__ for stage, sub in find_stages(module).items()}
    return {
        stage: StageTensors(classes[stage], inputs.get(stage, ()), outputs[stage])
        for stage in STAGES
        if stage in outputs
    }


def _tensor_entry(tensor: torch.Tensor, data_name: str) -> dict[str, Any]:
    values = tensor.detach()
    floating = values.is_floating_point()
    return {
        "type": "torch.Tensor",
        "dtype": str(values.dtype),
        "shape": list(values.shape),
        "Max": float(values.max()) if values.numel() else None,
        "Min": float(values.min()) if values.numel() else None,
        "Mean": float(values.mean()) if floating and values.numel() else None,
        "Norm": float(values.norm()) if floating and values.numel() else None,
        "requires_grad": False,
        "data_name": data_name,
    }


def _write_tree(root: Path, stages: Mapping[str, StageTensors], final_rank_dir: Path) -> None:
    """One side's tree under ``root`` (which exists and is empty); dump.json last."""
    import torch

    rank_dir = root / STEP_RANK
    data_dir = rank_dir / DATA_DIR
    data_dir.mkdir(parents=True)
    data: dict[str, Any] = {}
    for stage, call in stages.items():
        name = entry_name(stage, call.module_class)
        entry: dict[str, Any] = {"input_args": [], "input_kwargs": {}, "output": []}
        for kind, key, tensors in (("input", "input_args", call.inputs), ("output", "output", (call.output,))):
            for i, tensor in enumerate(tensors):
                data_name = f"{name}.{kind}.{i}.pt"
                torch.save(tensor.detach().cpu().contiguous().clone(), data_dir / data_name)
                entry[key].append(_tensor_entry(tensor, data_name))
        data[name] = entry
    document = {**HEADER, "dump_data_dir": str(final_rank_dir / DATA_DIR), "data": data}
    (rank_dir / DUMP_JSON).write_text(json.dumps(document, indent=1), encoding="utf-8")


def check_dump_dir(folder: str | Path) -> Path:
    """Fail early, before any forward pass, when the dump cannot be written in ``folder``: a
    file stands there, or no folder can be made in it (it is created when missing)."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".probe-", dir=path)
        os.rmdir(probe)
    except OSError as exc:
        reason = "it is not a folder" if path.exists() and not path.is_dir() else (exc.strerror or str(exc))
        raise InputError(f"dump folder {show(path)}: cannot write the msprobe dump there ({reason})") from None
    return path


def write_dumps(folder: str | Path, sides: Mapping[str, Mapping[str, StageTensors]]) -> dict[str, Path]:
    """Write each side (``{"target": stages, "reference": stages}``) as a complete msprobe dump
    tree ``folder/SIDE``, replacing an older one; return the trees' paths. Every tree is built
    in a temporary folder first, and only when all are complete are they renamed into place."""
    folder = check_dump_dir(folder).resolve()
    built: dict[str, Path] = {}
    aside: dict[str, Path] = {}  # the older trees, kept until every new one is in place
    installed: list[str] = []
    try:
        for side, stages in sides.items():
            built[side] = Path(tempfile.mkdtemp(prefix=f".{side}.", suffix=".tmp", dir=folder))
            _write_tree(built[side], stages, folder / side / STEP_RANK)
        for side in built:
            final = folder / side
            if final.is_dir() and not final.is_symlink():
                aside[side] = Path(tempfile.mkdtemp(prefix=f".{side}.", suffix=".old", dir=folder))
                os.replace(final, aside[side] / side)
            elif final.exists() or final.is_symlink():
                final.unlink()
        for side, tmp in built.items():
            os.replace(tmp, folder / side)
            installed.append(side)
    except OSError as exc:
        for side in installed:  # never a new target tree beside an old reference tree
            shutil.rmtree(folder / side, ignore_errors=True)
        for side, holder in aside.items():
            if not (folder / side).exists():
                os.replace(holder / side, folder / side)
        raise InputError(f"dump folder {show(folder)}: cannot write the msprobe dump ({exc.strerror or exc})") from None
    finally:
        for path in [*built.values(), *aside.values()]:
            shutil.rmtree(path, ignore_errors=True)
    return {side: folder / side for side in sides}


def read_dump(tree: str | Path) -> dict[str, dict[str, Any]]:
    """Check one side's tree as msprobe's compare reads it and return its entries (name ->
    entry): the header, every tensor entry's fields, and each data file that loads with
    ``torch.load(weights_only=True)`` as a tensor of the recorded shape. A defect is an
    :class:`InputError` naming the file and the entry."""
    import torch

    rank_dir = Path(tree) / STEP_RANK
    path = rank_dir / DUMP_JSON
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"msprobe dump {show(path)}: cannot read it ({exc})") from None
    for key, value in HEADER.items():
        if document.get(key) != value:
            raise InputError(f"msprobe dump {show(path)}: {key} is {document.get(key)!r}, not {value!r}")
    data = document.get("data")
    if not isinstance(data, dict) or not data:
        raise InputError(f"msprobe dump {show(path)}: no entries under 'data'")
    for name, entry in data.items():
        if not re.fullmatch(r"Module\.[\w.]+\.\w+\.forward\.\d+", name):
            raise InputError(f"msprobe dump {show(path)}: entry {name!r} is not named Module.NAME.CLASS.forward.N")
        for key in ("input_args", "output"):
            for i, tensor in enumerate(entry.get(key) or ()):
                where = f"entry {name!r} {key}[{i}]"
                missing = [f for f in TENSOR_FIELDS if f not in tensor]
                if missing:
                    raise InputError(f"msprobe dump {show(path)}: {where} lacks {', '.join(missing)}")
                file = rank_dir / DATA_DIR / tensor["data_name"]
                try:
                    value = torch.load(file, map_location="cpu", weights_only=True)
                except Exception as exc:  # torch.load raises many types for a bad file
                    raise InputError(f"msprobe dump {show(path)}: {where}: data file {show(file)} ({exc})") from None
                if not isinstance(value, torch.Tensor) or list(value.shape) != tensor["shape"]:
                    raise InputError(
                        f"msprobe dump {show(path)}: {where}: data file {show(file)} does not hold a tensor of "
                        f"shape {tensor['shape']}"
                    )
        if not entry.get("output"):
            raise InputError(f"msprobe dump {show(path)}: entry {name!r} has no output")
    return data


def dump_runs(folder: str | Path, target: Any, reference: Any, batch: torch.Tensor) -> dict[str, Path]:
    """Run ``target`` and ``reference`` (runners: ``name``, ``module``, ``run(batch)``) on
    ``batch`` with hooks on every stage and write both trees with :func:`write_dumps`."""
    from resnet34_npu.judge.localize import NO_MODULE

    sides = {}
    for side, runner in (("target", target), ("reference", reference)):
        module = runner.module
        stages = {} if module is None else capture_stages(module, lambda runner=runner: runner.run(batch))
        if not stages:
            raise InputError(f"target {runner.name!r}: cannot dump it for msprobe: {NO_MODULE}")
        sides[side] = stages
    return write_dumps(folder, sides)


def compare_command(trees: Mapping[str, Path]) -> str:
    """The ``msprobe compare`` line for the trees :func:`write_dumps` wrote. msprobe takes the
    step folder (the one holding ``rank0``) and writes its table under ``-o``."""
    step = STEP_RANK.parent
    out = trees["target"].parent / "msprobe_compare"
    return f"msprobe compare -tp {trees['target'] / step} -gp {trees['reference'] / step} -o {out}"


def summary_lines(trees: Mapping[str, Path], dumped: str, target: str, reference: str) -> list[str]:
    """What the CLI prints after writing: the trees, which run each holds, the command."""
    twin = "" if dumped == target else f", the eager twin of {plain(target)}, which has no module hooks"
    lines = [
        f"msprobe dump written: {plain(trees['target'])} ({plain(dumped)}{twin}) and "
        f"{plain(trees['reference'])} ({plain(reference)})",
        f"compare them with: {plain(compare_command(trees))}",
    ]
    if not MSPROBE_PATH.match(str(trees["target"])):
        lines.append("note: msprobe refuses paths with characters other than letters, digits and _ . : / -")
    return lines
