"""The core's layers, checked from the modules' own imports: no cycles, nothing imports upwards,
no module over 350 lines and no function over 50 (the team's style notes)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "grouping"

#: Lowest first. A module may import its own layer's modules and any lower layer's, never a higher.
LAYERS: list[set[str]] = [
    {"errors", "version"},
    {"plugins"},
    {"config"},
    {"accel"},
    {"engine"},
    {"data"},
    {"rundir"},
    {"evaluation"},
    {"figures"},
    {"training"},
    {"__init__"},  # the Python API: grouping.train, evaluate, visualize, ...
    {"cli", "__main__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module} is in no layer; add its package to LAYERS")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The grouping modules a module imports, anywhere in it (module level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name in known:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, known) - {name} for name, path in mods.items()}


def test_every_module_is_in_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
        for a, targets in graph().items()
        for b in targets
        if layer_of(b) > layer_of(a) and b != "grouping"  # a package's own __init__ is its API
    ]
    assert upward == []


def test_there_are_no_import_cycles() -> None:
    g = graph()
    # a package __init__ that re-exports its modules is not a cycle through them
    g = {a: {b for b in bs if not a.startswith(b + ".")} for a, bs in g.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    fake = tmp_path / "m.py"
    fake.write_text("from grouping.training.run import train\n", encoding="utf-8")
    found = imports_of(fake, set(modules()))
    assert found == {"grouping.training.run"}
    assert layer_of("grouping.training.run") > layer_of("grouping.engine.em")


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_and_functions_stay_short(name: str) -> None:
    path = modules()[name]
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 350, f"{name} has {len(text.splitlines())} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            length = (node.end_lineno or start) - start + 1
            assert length <= 50, f"{name}.{node.name} has {length} lines"
