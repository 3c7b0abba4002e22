"""Check the package's shape from its source (no import of it): no import circles, no
module over the line limit, no ``settings: Any`` at a seam, no module (other than a
package's ``__init__``, its public face) listing in ``__all__`` names it only imports:
each name has one address.

An import is any ``import``/``from ... import`` anywhere in a module: at the top, inside
a function (lazy imports still tie the modules together) or under ``TYPE_CHECKING``. A
package's ``__init__`` importing its own submodules counts as its imports too. Implicit
parent imports (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``) do not:
Python's own order, not a design choice.

Usage: ``python scripts/check_architecture.py [ROOT]``; exit status 1 lists each problem.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "carbon_magic"
MAX_LINES = 500


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _absolute(module: str, is_package: bool, target: str | None, level: int) -> str:
    """The absolute name ``from <level dots><target> import`` means inside ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """The package's modules that ``module`` imports, with the line of each import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, is_package, node.module, node.level)
            if not target.startswith(PACKAGE):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                name = submodule if submodule in known else target
                if name in known:
                    yield name, node.lineno


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of ``graph`` with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                part.append(other)
                if other == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def untyped_settings(path: Path) -> Iterator[int]:
    """Lines where a parameter named ``settings`` is annotated ``Any``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.arg == "settings":
            annotation = node.annotation
            if isinstance(annotation, ast.Name) and annotation.id == "Any":
                yield node.lineno


def reexported(path: Path) -> list[str]:
    """Names a module lists in ``__all__`` but imports from elsewhere (none for a
    package's ``__init__``, which presents its submodules' names)."""
    if path.name == "__init__.py":
        return []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    imported: set[str] = set()
    listed: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign) and isinstance(node.value, (ast.List, ast.Tuple)):
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                listed = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return [name for name in listed if name in imported]


def problems(root: Path) -> list[str]:
    """Everything wrong with the package's shape under ``root``, one line each."""
    known = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in known}
    found: list[str] = []
    for name, path in known.items():
        for target, _line in imports(name, path, known):
            if target != name:
                graph[name].add(target)
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            found.append(f"{path.relative_to(root)}: {lines} lines (at most {MAX_LINES})")
        for line in untyped_settings(path):
            found.append(f"{path.relative_to(root)}:{line}: settings annotated Any")
        for alias in reexported(path):
            found.append(f"{path.relative_to(root)}: re-exports {alias} (import it from its home)")
    for part in cycles(graph):
        edges = [f"{a} -> {b}" for a in part for b in sorted(graph[a]) if b in part]
        found.append("import circle: " + "; ".join(edges))
    return found


def main(argv: list[str]) -> int:
    """Print each problem; 0 when there is none, 1 otherwise."""
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    found = problems(root)
    for problem in found:
        print(problem)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
