"""The package's layers (docs/architecture.md): no module of bench imports from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

#: Bottom to top. A module may import its own layer and those below, never one above.
LAYERS = [
    {"errors", "specs", "seeding", "scoped", "files", "device", "config"},
    {"data", "noise"},
    {"bench", "hookspecs", "plugins", "registry", "provenance", "code_identity"},
    {"store"},
    {"training"},
    {"sampling"},
    {"grid"},
    {"reports"},
    {"api", "bench"},
    {"cli", "entry", "__main__"},
]
#: (importing module, imported module): allowed upward imports, each with its reason (none today).
EXCEPTIONS: set[tuple[str, str]] = set()


def layer_of(module: str) -> int:
    parts = module.split(".")
    room = parts[1] if len(parts) > 1 else "bench"
    for index, rooms in enumerate(LAYERS):
        if room in rooms:
            return index
    raise AssertionError(f"{module} is in no layer: add {room!r} to LAYERS in tests/test_layers.py "
                         "and to docs/architecture.md")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(BENCH.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST) -> set[str]:
    """Every bench module a module imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "bench"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bench":
            # ``from bench.reports import tables`` imports the module bench.reports.tables
            found |= {f"{node.module}.{alias.name}" if (BENCH.parent / node.module.replace(".", "/")
                                                         / f"{alias.name}.py").exists() else node.module
                      for alias in node.names}
    return found


MODULES = sorted(BENCH.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in MODULES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(BENCH.parent)))
def test_no_import_runs_up_a_layer(path):
    source = module_name(path)
    upward = sorted(target for target in imported(ast.parse(path.read_text(encoding="utf-8")))
                    if layer_of(target) > layer_of(source) and (source, target) not in EXCEPTIONS)
    assert not upward, f"{source} (layer {layer_of(source)}) imports from above: " + ", ".join(
        f"{t} (layer {layer_of(t)})" for t in upward)


SCRIPTS = sorted([*(BENCH.parent / "benchmarks").glob("*.py"), *(BENCH.parent / "docs").rglob("*.py")])


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(BENCH.parent)))
def test_scripts_beside_the_package_import_names_that_exist(path):
    """benchmarks/ and docs/ scripts run rarely; a layout change must not leave them importing ghosts."""
    import importlib

    missing = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in {"bench", "bench_plugins"}:
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{alias.name}" for alias in node.names if not hasattr(module, alias.name)
                        and importlib.util.find_spec(f"{node.module}.{alias.name}") is None]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in {"bench", "bench_plugins"}:
                    importlib.import_module(alias.name)
    assert not missing, f"{path.name} imports names that do not exist: {', '.join(missing)}"


def import_graph() -> dict[str, set[str]]:
    """bench module -> the bench modules it imports (at the top or inside functions)."""
    known = {module_name(path) for path in MODULES}
    graph = {}
    for path in MODULES:
        targets = imported(ast.parse(path.read_text(encoding="utf-8")))
        graph[module_name(path)] = {t for t in targets if t in known and t != module_name(path)}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import loop, each once, as the modules along it (depth-first search)."""
    cycles, seen = [], set()
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for target in sorted(graph.get(node, ())):
                if target == start:
                    cycle = frozenset(path)
                    if cycle not in seen:
                        seen.add(cycle)
                        cycles.append(path + [start])
                elif target not in path and target > start:  # each loop found from its smallest module
                    stack.append((target, path + [target]))
    return cycles


def test_import_cycles_are_found():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_bench():
    """A module that imports a module that (through others) imports it back is a loop to untie:
    move what both need below them."""
    loops = import_cycles(import_graph())
    assert not loops, "import loops: " + "; ".join(" -> ".join(loop) for loop in loops)
