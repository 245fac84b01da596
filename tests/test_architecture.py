"""The shape of the code: no import cycles, and nothing below the wiring reaches it.

The contracts live in pyproject.toml ([tool.importlinter]); `lint-imports` checks them
here, and a cycle search over the module graph (grimp, import-linter's engine) makes
sure no module imports one that imports it back, however indirectly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every group of modules that import each other in a ring (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            ring = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                ring.append(member)
                if member == module:
                    break
            if len(ring) > 1:
                cycles.append(sorted(ring))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_of_tenantry_is_part_of_an_import_cycle() -> None:
    # TYPE_CHECKING imports count too: a cycle hidden from the interpreter is still one.
    graph = grimp.build_graph("tenantry")
    assert len(graph.modules) > 50
    assert import_cycles(graph) == []


def test_the_cycle_search_finds_an_indirect_ring() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
        graph.add_import(importer=importer, imported=imported)
    assert import_cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_the_import_contracts_hold() -> None:
    lint = "import importlinter.cli as c; raise SystemExit(c.lint_imports(no_cache=True))"
    done = subprocess.run(
        [sys.executable, "-c", lint],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
