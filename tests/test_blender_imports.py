"""The Blender layer's modules import in one direction (no circle), read from the source.

Function-level imports count too: a circle through a lazy import still ties the modules
together. No bpy is needed, so this runs in any test process.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "linerelifer_addon" / "blender"


def _graph() -> dict[str, set[str]]:
    mods = {p.stem for p in PKG.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PKG.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
        graph[path.stem] = {d for d in deps if d in mods and d != path.stem}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m != "__init__" and m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_circle_in_the_blender_layer():
    graph = _graph()
    assert {"ops", "pipeline", "props", "ui", "prefs", "state"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_one_place_each_for_settings_operators_and_drawing():
    graph = _graph()
    # Drawing reads state, never the operators; settings import neither.
    assert "ops" not in graph["ui"]
    assert not graph["props"] & {"ui", "ops", "pipeline", "handlers"}
    assert not graph["state"]
