"""The package's imports go one way: no module imports, at any depth and even inside a function, one that imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "unlearn_mc"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> nx.DiGraph:
    """Module → every ``unlearn_mc`` module it imports (``import`` and ``from … import``, top level or in a function;
    ``from package import name`` points at the submodule ``name`` when there is one, else at the package), and → each
    package above that module which is not above the importing one: importing ``a.b.c`` from outside ``a.b`` runs
    ``a/b/__init__.py`` first, so a package that imports its own modules is part of every import through it."""
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)

    def known(name: str) -> str:
        while name not in files:
            name = name.rpartition(".")[0]
        return name

    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.split(".")[0] == "unlearn_mc"]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                if base.split(".")[0] == "unlearn_mc":
                    targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            own_packages = {".".join(module.split(".")[:k]) for k in range(1, len(module.split(".")))}
            for target in targets:
                target = known(target)
                parts = target.split(".")
                for name in [*(".".join(parts[:k]) for k in range(2, len(parts))), target]:
                    if name != module and name not in own_packages and name in files:
                        graph.add_edge(module, name)
    return graph


def test_no_module_imports_one_that_imports_it():
    cycles = [sorted(component) for component in nx.strongly_connected_components(import_graph()) if len(component) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert graph.has_edge("unlearn_mc.cli", "unlearn_mc.study")  # imported inside _study()
    assert graph.has_edge("unlearn_mc.study.stage_runner", "unlearn_mc.lightning_cli")
    with pytest.raises(nx.NetworkXNoPath):
        nx.shortest_path(graph, "unlearn_mc.lightning_cli", "unlearn_mc.study")
