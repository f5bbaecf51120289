"""The package's import graph, read from the source with ast: no circles, and the library
never imports its command line.

Every import counts, at the top of a module or inside a function (a function-level import
hides a circle from Python, not from the design), except those under ``if TYPE_CHECKING:``,
which never run: they name a type for the checker.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sheetsync"
# The command line and its words; the entry points that print as the command line does.
FRONT = {"sheetsync.cli", "sheetsync._words"}
MAY_IMPORT_FRONT = {"sheetsync.cli", "sheetsync.__main__", "sheetsync.demo"}


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in its body)."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                # `from . import x` and `from .sheets import local` import modules by name.
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                          for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_circle() -> None:
    assert cycles(import_graph()) == []


def test_the_library_never_imports_the_command_line_or_its_words() -> None:
    graph = import_graph()
    wrong = {m: sorted(graph[m] & FRONT) for m in graph
             if graph[m] & FRONT and m not in MAY_IMPORT_FRONT}
    assert wrong == {}


def test_the_graph_sees_function_level_imports(tmp_path: Path) -> None:
    # A circle closed only inside a function, and one only under TYPE_CHECKING.
    pkg = tmp_path / "sheetsync"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def x():\n    from .a import y\n    return y\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from .a import y\n")
    graph = import_graph(pkg)
    assert cycles(graph) == [["sheetsync.a", "sheetsync.b"]]
    assert graph["sheetsync.c"] == set()


def layers(graph: dict[str, set[str]]) -> dict[str, int]:
    """module -> its layer: the longest chain of imports below it (0: imports no module of the
    package). Defined only for a graph without circles."""
    found: dict[str, int] = {}

    def layer(m: str) -> int:
        if m not in found:
            found[m] = 1 + max((layer(d) for d in graph[m]), default=-1)
        return found[m]

    for m in graph:
        layer(m)
    return found


def _documented_layers() -> dict[str, int]:
    """The layer table of docs/development.md ("| 3 | `augment push` |"), module -> layer."""
    page = (PACKAGE.parent / "docs" / "development.md").read_text(encoding="utf-8")
    table = page.split("| layer | modules |", 1)[1].split("\n\n", 1)[0]
    out = {}
    for row in table.splitlines()[2:]:
        cells = row.split("|")
        names = cells[2].split("`")[1].split()
        out |= {("sheetsync" if n == "sheetsync" else f"sheetsync.{n}"): int(cells[1]) for n in names}
    return out


def test_the_documented_layers_are_the_graph() -> None:
    # docs/development.md shows the graph as layers; a module moved or renamed shows there.
    assert _documented_layers() == layers(import_graph())
