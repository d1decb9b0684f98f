"""The package's layout is its design: the wings' order (written once, in pyproject.toml's
import-linter contract) holds, and no module takes part in an import circle. Checked with the
maintained tools (import-linter's ``lint-imports`` and the grimp graph it is built on), and shown
failing on a graph with one upward import and one circle added."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")


def _layers() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return contract["layers"]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("resnet34_npu", cache_dir=None)


def upward_imports(graph: grimp.ImportGraph) -> list[str]:
    found = graph.find_illegal_dependencies_for_layers(layers=_layers())
    return sorted(
        f"{head} -> {' -> '.join(route.middle) + ' -> ' if route.middle else ''}{tail}"
        for dependency in found
        for route in dependency.routes
        for head in route.heads
        for tail in route.tails
    )


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_every_module_is_in_a_wing(graph):
    wings = tuple(layer + "." for layer in _layers())
    facade = {"resnet34_npu", "resnet34_npu.__main__", "resnet34_npu.faults", "resnet34_npu.pytest_plugin"}
    stray = sorted(m for m in graph.modules if not m.startswith(wings) and m not in facade and m + "." not in wings)
    assert not stray, f"modules outside every wing: {stray} (put each in the wing of its concern)"


def test_no_wing_imports_a_wing_above_it(graph):
    assert upward_imports(graph) == []


def test_no_import_circle(graph):
    assert circles(graph) == []


def test_lint_imports_keeps_the_contract():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_and_a_circle_are_caught():
    graph = grimp.build_graph("resnet34_npu", cache_dir=None)
    graph.add_import(importer="resnet34_npu.model.weights", imported="resnet34_npu.reports.fleet")
    graph.add_import(importer="resnet34_npu.core.files", imported="resnet34_npu.core.errors")
    graph.add_import(importer="resnet34_npu.core.errors", imported="resnet34_npu.core.files")
    assert any(line == "resnet34_npu.model.weights -> resnet34_npu.reports.fleet" for line in upward_imports(graph))
    assert any({"resnet34_npu.core.errors", "resnet34_npu.core.files"} <= set(c) for c in circles(graph))
