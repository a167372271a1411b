"""The shape docs/architecture.md promises: imports flow one way, with no cycle."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "orchestrate"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(module: str) -> set[str]:
    """The orchestrate modules `module` imports at run time (TYPE_CHECKING blocks aside),
    at module level or inside functions: a lazy import is still a dependency."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(f"{name}."):
                found.add(name)  # a submodule using its own package's __init__ is no cycle
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def test_the_import_graph_has_no_cycle() -> None:
    """No module imports, even lazily, a module that imports it back."""
    try:
        tuple(graphlib.TopologicalSorter(GRAPH).static_order())
    except graphlib.CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")


@pytest.mark.parametrize(
    "module",
    sorted(
        m
        for m in MODULES
        if m.startswith(("orchestrate.history", "orchestrate.providers", "orchestrate._engine"))
    ),
)
def test_lower_layers_never_import_the_layers_above(module: str) -> None:
    """The engine, the providers and the history never import the API or the CLI."""
    assert GRAPH[module] & {"orchestrate._api", "orchestrate._cli"} == set()


def test_the_engine_knows_no_renderer_store_or_concrete_provider() -> None:
    """The engine emits events and sends requests; it imports no display, no history and
    no particular provider."""
    imported = GRAPH["orchestrate._engine"]
    assert {
        m
        for m in imported
        if m.startswith(("orchestrate.history", "orchestrate._render", "orchestrate.providers._"))
    } == set()


def _imports_rich(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        else:
            continue
        if any(name == "rich" or name.startswith("rich.") for name in names):
            return True
    return False


def test_only_the_render_modules_import_rich() -> None:
    """Rich is drawn with by _render and _render_batch alone (the CLI calls their print
    functions), so it is imported only where something is drawn."""
    importers = {module for module, path in MODULES.items() if _imports_rich(path)}
    assert importers == {"orchestrate._render", "orchestrate._render_batch"}
