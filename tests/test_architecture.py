"""Imports inside the package flow one way: no cycle, counting imports inside functions."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cyclegan"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cyclegan."):
            names.add(node.module.split(".")[1])
    return names


def test_no_import_cycles():
    graph = {p.stem: _imports(p) - {"__init__"} for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    done, cycles = set(), []

    def visit(module: str, path: list[str]) -> None:
        for other in sorted(graph.get(module, ())):
            if other in path:
                cycles.append(path[path.index(other):] + [other])
            elif other not in done:
                visit(other, path + [other])
        done.add(module)

    for module in sorted(graph):
        visit(module, [module])
    assert not cycles, cycles
