"""Copy runtime helpers into a generated module: the ones it calls, and what they call.

The runtime (symbp/backends/numpy/runtime.py) is real Python, tested on its own. A generated
module must stay standalone, so the definitions it needs are copied into it, in the
runtime's order, each with the comment lines written above it. What a definition needs is
read from the runtime's syntax tree (the names it loads), not from its text.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from symbp.backends.numpy import runtime
from symbp.errors import DerivationError


@dataclass(frozen=True)
class Definition:
    """One top-level function or constant of the runtime."""

    name: str
    source: str  # its text, with the comment lines above it
    uses: frozenset[str]  # the runtime's other definitions it reads


@functools.lru_cache(maxsize=4)
def definitions(module: ModuleType = runtime) -> dict[str, Definition]:
    """name -> Definition, in the runtime module's order (a backend's runtime: NumPy's by
    default); its configuration, if it has one, is left out."""
    assert module.__file__ is not None
    text = Path(module.__file__).read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    skipped = {*getattr(module, "CONFIGURATION", ()), "CONFIGURATION", "configure"}
    found: dict[str, tuple[ast.stmt, str]] = {}
    for node in tree.body:
        name = _defined(node)
        if name is not None and name not in skipped:
            found[name] = (node, _with_comments(lines, node))
    return {
        name: Definition(name, source, frozenset(_loads(node) & (found.keys() - {name})))
        for name, (node, source) in found.items()
    }


def _defined(node: ast.stmt) -> str | None:
    """The name a top-level function or single-target assignment defines."""
    if isinstance(node, ast.FunctionDef):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return target.id if isinstance(target, ast.Name) else None
    return None


def _loads(node: ast.stmt) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _with_comments(lines: list[str], node: ast.stmt) -> str:
    """The node's lines, with the block of comment lines directly above it."""
    start = node.lineno - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    assert node.end_lineno is not None
    return "\n".join(lines[start : node.end_lineno])


def needed(names: Iterable[str], module: ModuleType = runtime) -> list[str]:
    """The names asked for and every runtime definition they use, in the runtime's order."""
    table = definitions(module)
    missing = sorted(set(names) - table.keys())
    if missing:
        raise DerivationError(
            f"the printer called runtime helpers that do not exist: {', '.join(missing)}",
            fix="report this network: symbp's printer and runtime disagree",
        )
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(table[name].uses)
    return [name for name in table if name in wanted]


@functools.lru_cache(maxsize=4)
def imported(module: ModuleType = runtime) -> frozenset[str]:
    """The names the runtime module's top-level `import x` statements bind."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    return frozenset(
        (alias.asname or alias.name).split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import)
        for alias in node.names
    )


def imports_needed(names: Iterable[str], module: ModuleType = runtime) -> list[str]:
    """The runtime's imported modules that the helpers `names` need read, sorted."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    nodes = {_defined(node): node for node in tree.body}
    read: set[str] = set()
    for name in needed(names, module):
        read |= _loads(nodes[name])
    return sorted(read & imported(module))


def helper_source(names: Iterable[str], module: ModuleType = runtime) -> str:
    """The source of the helpers `names` need, separated by two blank lines."""
    table = definitions(module)
    return "\n\n\n".join(table[name].source for name in needed(names, module))
