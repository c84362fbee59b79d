"""The import graph of harness/ has no cycles, and no module imports one of a higher layer.

Every `import` counts, at module level or inside a function (a lazy import is still a
dependency); only imports under `if TYPE_CHECKING:` are left out (they never run). Run this file
with python to print the layers, the cycles and the upward edges.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "harness"

# Lowest first. A module may import its own layer (without a cycle) and any lower one. A module
# belongs to the layer of the longest prefix that matches it, so a package's orchestration
# modules (`*.demo`, runners that start servers) can sit above the package's library modules.
LAYERS: list[tuple[str, list[str]]] = [
    # Imports nothing from harness but these: errors, paths, atomic writes, Hydra config, URLs.
    (
        "foundation",
        [
            "harness",
            "harness.errors",
            "harness.paths",
            "harness.io",
            "harness.config",
            "harness.urls",
        ],
    ),
    # Libraries: each does one thing on files, arrays or one client connection; none starts a
    # server. Report writers live here, next to the results they render.
    (
        "core",
        [
            "harness.data",
            "harness.models",
            "harness.kernels",
            "harness.export",
            "harness.storage",
            "harness.serving",  # repository, materialize (a pure transform), client, golden
            "harness.files",  # pool, verify, nginx config, the WSGI app
            "harness.embeddings",
            "harness.roofline",
            "harness.perf",
        ],
    ),
    # Process/container backends (MLflow, Triton, S3, file server): they know no training.
    ("services", ["harness.services"]),
    # The training loop: uses a tracking server (services) and a checkpoint store (storage).
    ("training", ["harness.training"]),
    # Whole workflows: start services, run the libraries against them, write reports.
    (
        "orchestration",
        [
            "harness.serving.predict",
            "harness.serving.demo",
            "harness.verify",
            "harness.deploy",
            "harness.perf.tuning",
            "harness.embeddings.serving",
            "harness.embeddings.demo",
            "harness.files.demo",
            "harness.files.search",
            "harness.kernels.demo",
            "harness.roofline.demo",
            "harness.training.resume_demo",
            "harness.training.demo",
        ],
    ),
    # pytest-facing: the conformance checks and the plugin with its fixtures.
    ("pytest", ["harness.conformance", "harness.testing"]),
    # One module per CLI command, and the argument helpers they share.
    ("commands", ["harness.commands"]),
    # The entry point: loads the chosen command by name.
    ("entry", ["harness.cli", "harness.__main__"]),
]

# Edges allowed to break the rules, each with its reason. Keep this empty.
ALLOWED: dict[tuple[str, str], str] = {}


def modules() -> dict[str, Path | None]:
    """Every module of harness/ by dotted name (extension modules map to None)."""
    found: dict[str, Path | None] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in PACKAGE.rglob("*.so"):
        parts = path.relative_to(ROOT).parts
        found[".".join(parts[:-1] + (path.name.split(".")[0],))] = None
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _imports_of(other)
            continue
        yield from _imports_of(child)


def _imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _imports(node)


def edges() -> dict[str, set[str]]:
    """module -> the harness modules it imports (`from P import m` counts as P.m if m is one)."""
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        if path is None:
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base
                    for alias in node.names
                ]
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the longest prefix that matches `module` (None: unassigned)."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix != "harness" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    return None if best is None else best[0]


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    """'a (layer) -> b (layer)' for every import of a higher layer."""
    out = []
    for src in sorted(graph):
        for dst in sorted(graph[src]):
            ls, ld = layer_of(src), layer_of(dst)
            if ls is not None and ld is not None and ls < ld and (src, dst) not in ALLOWED:
                out.append(f"{src} ({LAYERS[ls][0]}) -> {dst} ({LAYERS[ld][0]})")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph = {a: {b for b in bs if (a, b) not in ALLOWED} for a, bs in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_module_has_a_layer():
    """A new module must be placed in LAYERS, so its imports are checked."""
    assert [m for m in sorted(modules()) if layer_of(m) is None] == []


def test_no_import_cycles():
    """Modules import each other in one direction only."""
    assert cycles(edges()) == []


def test_no_lower_layer_imports_a_higher_one():
    """Libraries never import services, training, workflows, pytest code or the CLI."""
    assert upward_edges(edges()) == []


def test_allowed_exceptions_are_still_needed():
    """An exception whose edge is gone is deleted, so the list only shrinks."""
    graph = edges()
    assert [edge for edge in ALLOWED if edge[1] not in graph.get(edge[0], set())] == []


def test_the_checker_sees_lazy_imports(tmp_path):
    """A function-level import is an edge; one under TYPE_CHECKING is not."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import harness.cli\n"
        "def f():\n    from harness.errors import HarnessError\n"
    )
    found = {
        n.module or n.names[0].name for n in _imports(ast.parse(source)) if n.module != "typing"
    }
    assert found == {"harness.errors"}


if __name__ == "__main__":
    graph = edges()
    for name, prefixes in LAYERS:
        print(f"{name}: {', '.join(prefixes)}")
    found = cycles(graph)
    up = upward_edges(graph)
    print(f"cycles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    print(f"upward edges: {len(up)}")
    for line in up:
        print("  " + line)
    sys.exit(1 if found or up else 0)
