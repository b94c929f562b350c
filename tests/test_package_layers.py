"""The package's import graph: no cycles between sub-packages, and the layering the design asks for (attacks
import neither evaluation nor the runners; the neutral signal package imports nothing of volrob but errors)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "volrob"


def _part(name: str) -> str | None:
    """The sub-package (or top-level module) of a ``volrob.…`` import, None for anything else (e.g.
    ``volrob.__version__``)."""
    parts = name.split(".")
    if parts[0] != "volrob" or len(parts) < 2:
        return None
    return parts[1] if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file() else None


def import_graph() -> dict[str, set[str]]:
    """Sub-package → sub-packages it imports (any import statement, at module level or inside a function)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        me = rel.parts[1] if len(rel.parts) > 1 else None
        if me is None or me in ("__main__", "__init__"):
            continue
        node_set = graph.setdefault(me.removesuffix(".py"), set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "volrob"]
            for name in names:
                part = _part(name)
                if part is not None and part != me and part != "__init__":
                    node_set.add(part)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state and (found := visit(m)) is not None:
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)) is not None:
            return found
    return None


def test_no_import_cycles_between_subpackages() -> None:
    assert _cycle(import_graph()) is None, " -> ".join(_cycle(import_graph()) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(("package", "forbidden"), [
    ("attacks", {"evaluation", "engine", "study", "cli", "report", "training", "defences", "analysis"}),
    ("signal", {"attacks", "evaluation", "engine", "data", "inference", "models", "analysis"}),
    ("evaluation", {"engine", "study", "cli", "report", "training"}),
    ("engine", {"study", "cli", "training"}),
    ("report", {"engine", "study", "cli"}),
])
def test_layers(package: str, forbidden: set[str]) -> None:
    assert not import_graph()[package] & forbidden, sorted(import_graph()[package] & forbidden)


def test_signal_imports_only_errors() -> None:
    assert import_graph()["signal"] <= {"errors"}
