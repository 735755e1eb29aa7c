"""The layers of the core and of the built-in plugins, checked from the modules' own imports: no
cycles, nothing imports upwards (the core never imports a built-in), no module over 350 lines and
no function over 50 (the team's style notes; the benchmarks keep the sizes too)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "grouping"
#: The built-in plugins: held to the core's rules, and above all of it.
BUILTINS = ROOT / "plugins" / "grouping_plugins"
#: Data sources of the built-ins (digit readers, sprites, motion): not plugins, below them.
SOURCES = BUILTINS / "sources"
#: Layers the built-in networks are made of: not plugins, below them.
PARTS = BUILTINS / "layers"
PACKAGES = (CORE, BUILTINS)
#: Scripts held to the sizes only (they import nothing of each other).
BENCHMARKS = ROOT / "benchmarks"
#: Modules known to break the sizes, each with the work that fixes it. A strict xfail: once it
#: passes, the entry must go.
OVERSIZED: dict[str, str] = {}

#: Lowest first. A module may import its own layer's modules and any lower layer's, never a higher.
LAYERS: list[set[str]] = [
    {"errors", "version"},
    {"plugin_api"},
    {"plugins"},  # the plugin API's public face: what plugins import
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
    {f"{BUILTINS.name}.{SOURCES.name}", f"{BUILTINS.name}.{PARTS.name}"},
    {BUILTINS.name},
]


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """The core's and the built-ins' modules by dotted name."""
    return {module_name(p, pkg): p for pkg in PACKAGES for p in sorted(pkg.rglob("*.py"))}


def layer_key(module: str) -> str:
    """The name LAYERS knows a module by: the core's subpackage, or the built-ins' own."""
    parts = module.split(".")
    if parts[0] == CORE.name:
        return parts[1] if len(parts) > 1 else "__init__"
    sub = ".".join(parts[:2])
    return sub if any(sub in layer for layer in LAYERS) else parts[0]


def layer_of(module: str) -> int:
    top = layer_key(module)
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module} is in no layer; add its package to LAYERS")


def imported_names(path: Path) -> set[str]:
    """Every absolute name a module imports, anywhere in it (module level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update([node.module] + [f"{node.module}.{a.name}" for a in node.names])
    return names


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The core's and the built-ins' modules a module imports."""
    return imported_names(path) & known


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


def test_the_core_never_imports_a_builtin() -> None:
    """Built-ins may use any of the core; the core reaches them only through the entry points."""
    found = [
        f"{name} imports {target}"
        for name, path in modules().items()
        if name.split(".")[0] == CORE.name
        for target in sorted(imported_names(path))
        if target.split(".")[0] == BUILTINS.name
    ]
    assert found == []


def test_every_builtin_module_is_a_plugin_or_a_source() -> None:
    """A module beside the plugins is registered by an entry point; helpers live in SOURCES."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    registered = set(project["project"]["entry-points"]["grouping"].values())
    top = {module_name(p, BUILTINS) for p in BUILTINS.glob("*.py")} - {BUILTINS.name}
    assert top - registered == set(), f"not plugins: move them to {SOURCES.relative_to(ROOT)}"


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    fake = tmp_path / "m.py"
    fake.write_text("from grouping.training.run import train\n", encoding="utf-8")
    found = imports_of(fake, set(modules()))
    assert found == {"grouping.training.run"}
    assert layer_of("grouping.training.run") > layer_of("grouping.engine.em")
    core = fake.with_name("core.py")
    core.write_text(f"import {BUILTINS.name}.shapes\n", encoding="utf-8")
    assert imports_of(core, set(modules())) == {f"{BUILTINS.name}.shapes"}
    assert layer_of(f"{BUILTINS.name}.shapes") > layer_of(f"{BUILTINS.name}.sources.sprites")
    assert layer_of(f"{BUILTINS.name}.sources.sprites") > layer_of("grouping.cli.main")


def sized() -> dict[str, Path]:
    """Every module held to the sizes: the core's, the built-ins' and the benchmarks'."""
    scripts = {module_name(p, BENCHMARKS): p for p in sorted(BENCHMARKS.glob("*.py"))}
    return {**modules(), **scripts}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=OVERSIZED[n]))
        if n in OVERSIZED
        else n
        for n in sorted(sized())
    ],
)
def test_modules_and_functions_stay_short(name: str) -> None:
    path = sized()[name]
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 350, f"{name} has {len(text.splitlines())} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            length = (node.end_lineno or start) - start + 1
            assert length <= 50, f"{name}.{node.name} has {length} lines"
