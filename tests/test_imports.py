"""Imports point one way: the import graph of hvc/ has no cycle, between modules or between its
packages, and scoring without propagation loads no torch (docs/design.md, "Layers")."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from helpers.locations import REPO

PACKAGE = REPO / "hvc"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the hvc modules it imports (anywhere in the file, function bodies too), each
    with the packages above it, whose ``__init__`` the import runs; ``hvc`` itself left out."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, one level up per extra dot
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target.count("."):  # the module and every package above it but hvc
                    if target in files and target != name and not name.startswith(target + "."):
                        graph[name].add(target)
                    target = target.rpartition(".")[0]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between hvc's packages and top-level modules (hvc.metrics, hvc.inference ...)."""
    top = lambda name: ".".join(name.split(".")[:2])
    out: dict[str, set[str]] = {}
    for source, targets in graph.items():
        out.setdefault(top(source), set()).update(top(t) for t in targets if top(t) != top(source))
    return out


# hvc's packages and top-level modules, lowest layer first (docs/design.md, "Layers"): each imports
# only from its own layer or lower ones. A new package or module gets its place here.
LAYERS = [
    {"hvc.errors", "hvc.speed"},
    {"hvc.fileio", "hvc.cli", "hvc.names"},
    {"hvc.config", "hvc.checkpoint", "hvc.distributed"},
    {"hvc.data", "hvc.models", "hvc.propagation"},
    {"hvc.exports", "hvc.scribbles", "hvc.metrics", "hvc.completion", "hvc.segmenter"},
    {"hvc.inference", "hvc.engine", "hvc.export", "hvc.tasks", "hvc.segment"},
    {"hvc.entry", "hvc.demo", "hvc.download", "hvc.app"},
]


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert "hvc.config.core" in graph["hvc.config.propagation"]
    assert "hvc.propagation" in graph["hvc.tasks.clips"]  # the package of the name imported
    assert "hvc.propagation.propagator" in graph["hvc.propagation"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


def test_no_package_imports_itself_back():
    assert cycles(package_graph(import_graph())) == []


def test_imports_point_down_the_layers():
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    packages = package_graph(import_graph())
    unplaced = sorted(set(packages) - set(rank) - {"hvc"})
    assert unplaced == [], f"place {unplaced} in LAYERS (tests/test_imports.py) and docs/design.md"
    upward = sorted(f"{source} -> {target}" for source, targets in packages.items() if source != "hvc"
                    for target in targets if rank[target] > rank[source])
    assert upward == []


# Scoring needs no propagation: these must load without torch.
TORCH_FREE = ["hvc.metrics", "hvc.metrics.pck", "hvc.metrics.vip", "hvc.metrics.vost", "hvc.metrics.report",
              "hvc.data.jhmdb", "hvc.data.vip", "hvc.config.inference", "hvc.config.propagation",
              "hvc.entry.eval_metrics"]


def test_scoring_loads_no_torch():
    script = ("import importlib, sys\n"
              f"for name in {TORCH_FREE!r}:\n"
              "    importlib.import_module(name)\n"
              "from hvc.entry.eval_metrics import main\n"
              "try:\n"
              "    main(['--help'])\n"
              "except SystemExit:\n"
              "    pass\n"
              "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout  # --help ran
    assert done.stdout.strip().splitlines()[-1] == "[]"
