"""The import graph of crewbus: every module imports on its own, and the parts of the
`crewbus` package do not import each other in a circle.

The graph is read from the source (every `import` statement, those inside functions
too), with each `crewbus.<part>` (a subpackage such as `crewbus.orchestrator`, or a
top-level module such as `crewbus.taskstore`) as one node.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

PACKAGES = ("crewbus", "crewbus_agents", "crewbus_contracts")

KNOWN_CYCLES: set[frozenset[str]] = set()
"""Cycles that were there before this test; a new one fails it."""


def _modules(package: str) -> dict[str, Path]:
    """Every module of `package` by dotted name, with its source file."""
    root = importlib.import_module(package)
    found = {package: Path(str(root.__file__))}
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        spec = importlib.util.find_spec(info.name)
        assert spec is not None and spec.origin is not None, info.name
        found[info.name] = Path(spec.origin)
    return found


def _imported(source: Path) -> set[str]:
    """The absolute module names a file imports anywhere in it (and `from m import x` as
    both `m` and `m.x`, since x may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _part(module: str) -> str | None:
    """The node of `crewbus.<part>[.more]`; None outside the crewbus package."""
    pieces = module.split(".")
    return ".".join(pieces[:2]) if pieces[0] == "crewbus" and len(pieces) > 1 else None


def crewbus_graph() -> dict[str, set[str]]:
    """`crewbus.<part>` -> the other parts it imports."""
    modules = _modules("crewbus")
    graph: dict[str, set[str]] = {}
    for module, source in modules.items():
        here = _part(module)
        if here is None:
            continue
        targets = {_part(name) for name in _imported(source) if name in modules}
        graph.setdefault(here, set()).update(t for t in targets if t and t != here)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_of_the_three_packages_imports(package: str) -> None:
    for module in _modules(package):
        if module.endswith(".__main__"):  # runs the CLI when imported
            continue
        importlib.import_module(module)


def test_the_gateway_and_the_orchestrator_do_not_import_each_other() -> None:
    graph = crewbus_graph()
    assert "crewbus.orchestrator" not in graph["crewbus.gateway"]
    assert "crewbus.gateway" not in graph["crewbus.orchestrator"]
    assert "crewbus.taskstore" in graph["crewbus.gateway"]
    assert "crewbus.taskstore" in graph["crewbus.orchestrator"]


def test_the_parts_of_crewbus_import_each_other_without_new_cycles() -> None:
    new = [sorted(c) for c in cycles(crewbus_graph()) if c not in KNOWN_CYCLES]
    assert new == [], f"import cycles between parts of crewbus: {new}"


def test_the_cycle_finder_finds_a_cycle_and_leaves_a_chain_alone() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        frozenset({"a", "b", "c"})
    ]
    assert cycles({"a": {"b"}, "b": {"c"}}) == []
