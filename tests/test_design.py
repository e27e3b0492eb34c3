"""Rules that keep the design: benchmarks own their names, layers point down, no import cycles, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cirbench"
BENCHMARK_NAMES = {"circo", "cirr", "fashioniq", "genecis", "shapes"}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    """Every cirbench module ``path`` imports: at module level, inside functions, and under ``if TYPE_CHECKING:``
    (an import made only for type hints still ties the two modules: a type checker follows it, and moving it out
    of the guard must not create a cycle)."""
    return _imports_in(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")


def _imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "cirbench" or name.startswith("cirbench.")}


def _graph() -> dict[str, set[str]]:
    """Edges to imported modules, and to the packages whose ``__init__`` an import runs (when the importer is not
    inside that package already)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in _imports(path, name):
            if target not in modules:
                continue
            edges.add(target)
            parts = target.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent in modules and not name.startswith(parent + ".") and name != parent:
                    edges.add(parent)
        graph[name] = edges - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_no_import_cycle():
    """No cycle anywhere in the package, counting imports inside functions and under ``if TYPE_CHECKING:``."""
    assert _cycles(_graph()) == []


def test_the_graph_sees_imports_inside_functions():
    graph = _graph()
    assert "cirbench.evaluation" in graph["cirbench.lincir.selection"]  # imported inside a function
    assert "cirbench.benchmarks" in graph["cirbench.results"]  # imported inside upgrade_v1


def test_the_graph_sees_imports_made_only_for_type_checking():
    assert "cirbench.lincir.selection" in _graph()["cirbench.lincir.rundir"]  # only under ``if TYPE_CHECKING:``
    lower = "from cirbench import b\n"
    upper = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from cirbench.a import Thing\n"
    graph = {"cirbench.a": _imports_in(lower, "cirbench.a"), "cirbench.b": _imports_in(upper, "cirbench.b")}
    assert graph["cirbench.b"] == {"cirbench.a", "cirbench.a.Thing"}
    assert _cycles(graph) == [["cirbench.a", "cirbench.b"]]  # a cycle made by a type-only import is found


def test_nothing_below_the_cli_imports_the_cli():
    for name, edges in _graph().items():
        if name.startswith("cirbench.commands") or name in ("cirbench.cli", "cirbench.__main__"):
            continue
        assert not {e for e in edges if e.startswith("cirbench.commands") or e == "cirbench.cli"}, name


def test_inference_does_not_import_the_trainer():
    graph = _graph()
    for name in [n for n in graph if n.startswith("cirbench.methods")]:
        assert not {e for e in graph[name] if e.startswith("cirbench.lincir")}, name


def _names_compared(tree: ast.AST) -> list[tuple[int, str]]:
    """Benchmark names used in a comparison (==, !=, in, not in), a match case or a dict key.

    The one exception is ``MethodEntry(benchmark_defaults={...})``: a method's declared option values per published
    protocol (Slerp's alpha), looked up by the benchmark's name, never branched on.
    """
    hits = []
    declared = {
        id(kw.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "benchmark_defaults"
    }

    def strings(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [s for elt in node.elts for s in strings(elt)]
        return []

    for node in ast.walk(tree):
        values: list[str] = []
        if isinstance(node, ast.Compare):
            values = [s for side in (node.left, *node.comparators) for s in strings(side)]
        elif isinstance(node, ast.MatchValue):
            values = strings(node.value)
        elif isinstance(node, ast.Dict) and id(node) not in declared:
            values = [s for key in node.keys if key is not None for s in strings(key)]
        hits += [(node.lineno, v) for v in values if v.lower() in BENCHMARK_NAMES]
    return hits


def test_no_benchmark_name_is_compared_outside_the_benchmarks_package():
    offenders = []
    for name, path in _modules().items():
        if name.startswith("cirbench.benchmarks"):
            continue
        offenders += [
            f"{path.relative_to(PACKAGE.parent)}:{line}: {value!r}"
            for line, value in _names_compared(ast.parse(path.read_text(encoding="utf-8")))
        ]
    assert offenders == []


def test_the_name_check_finds_comparisons():
    code = "x == 'cirr'\nif b in ('circo', 'other'): pass\nd = {'genecis': 1}\nmatch n:\n    case 'shapes': pass\n"
    assert [v for _, v in _names_compared(ast.parse(code))] == ["cirr", "circo", "genecis", "shapes"]
    declared = "MethodEntry('m', f, 'd', benchmark_defaults={'cirr': {'alpha': 0.9}})\nother(x={'circo': 1})\n"
    assert [v for _, v in _names_compared(ast.parse(declared))] == ["circo"]


def test_modules_stay_small():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}
