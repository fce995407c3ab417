"""Copy runtime helpers into a generated module: the ones it calls, and what they call.

The runtime (symbp/backends/numpy/runtime.py) is real Python, tested on its own. A generated
module must stay standalone, so the definitions it needs are copied into it, in the
runtime's order, each with the comment lines written above it. What a definition needs is
read from the runtime's syntax tree (the names it loads), not from its text.
"""

from __future__ import annotations

import ast
import functools
import importlib
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
    reads: frozenset[str]  # every name it reads (modules the runtime imports included)


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
        if isinstance(node, ast.ImportFrom) and _shared(node):
            found.update(_imported_definitions(node, lines))
            continue
        name = _defined(node)
        if name is not None and name not in skipped:
            found[name] = (node, _with_comments(lines, node))
    return {
        name: Definition(
            name, source, frozenset(_loads(node) & (found.keys() - {name})), frozenset(_loads(node))
        )
        for name, (node, source) in found.items()
    }


def _shared(node: ast.ImportFrom) -> bool:
    """Whether node imports names from another symbp module (tables several runtimes
    share), which a generated module gets as copies of their definitions."""
    return (node.module or "").startswith("symbp.")


def _imported_definitions(node: ast.ImportFrom, lines: list[str]) -> dict:
    """name -> (its node, its source) for each name the import brings, from the module
    that defines it, the comment lines above the import put before the first one. Only
    definitions that read nothing else of their module can be brought."""
    assert node.module is not None
    other = importlib.import_module(node.module)
    assert other.__file__ is not None
    text = Path(other.__file__).read_text(encoding="utf-8")
    nodes = {_defined(n): n for n in ast.parse(text).body}
    above = lines[_first_line(lines, node) : node.lineno - 1]
    out: dict = {}
    for alias in node.names:
        found = nodes.get(alias.name)
        if found is None or alias.asname or _loads(found) - {alias.name}:
            raise DerivationError(
                f"{node.module}.{alias.name} cannot be copied into a generated module",
                fix="share only constants that read no other name, imported without `as`",
            )
        source = _with_comments(text.splitlines(), found)
        if not out and above:
            source = "\n".join([*above, source])
        out[alias.name] = (found, source)
    return out


def _first_line(lines: list[str], node: ast.stmt) -> int:
    """The index of the first comment line directly above node (its own line if none)."""
    start = node.lineno - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return start


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
    assert node.end_lineno is not None
    return "\n".join(lines[_first_line(lines, node) : node.end_lineno])


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
    table = definitions(module)
    read = set().union(*(table[name].reads for name in needed(names, module)))
    return sorted(read & imported(module))


def helper_source(names: Iterable[str], module: ModuleType = runtime) -> str:
    """The source of the helpers `names` need, separated by two blank lines."""
    table = definitions(module)
    return "\n\n\n".join(table[name].source for name in needed(names, module))
