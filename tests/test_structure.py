"""The package's stages and their order: each module imports only from its own stage and the
stages before it (function-local imports included), and no modules import each other in a
circle. The order is the pipeline's:

    base -> frontend -> ir -> symbolic -> derivation -> codegen -> backends
                                                     -> documents
         -> pipeline -> check -> cli

codegen (the program IR) and backends (its printing) make the generated code; documents
(LaTeX, Markdown) read the derivation; neither side reads the other. Equation numbers, which
the code's comments cite, are in ir.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "symbp"

STAGES = {
    "base": ("symbp.errors", "symbp.version", "symbp.options", "symbp.budget", "symbp.parallel"),
    "frontend": ("symbp.frontend",),
    "ir": ("symbp.ir",),
    "symbolic": ("symbp.symbolic",),
    "derivation": ("symbp.derivation",),
    "codegen": ("symbp.codegen",),
    "backends": ("symbp.backends",),
    "documents": ("symbp.documents",),
    "pipeline": ("symbp.pipeline", "symbp.render", "symbp.pdf"),
    "check": ("symbp.check",),
    "cli": ("symbp.cli", "symbp.__main__", "symbp"),
}
_CHAIN = ("base", "frontend", "ir", "symbolic", "derivation")
ALLOWED = {
    **{stage: set(_CHAIN[: k + 1]) for k, stage in enumerate(_CHAIN)},
    "codegen": {*_CHAIN, "codegen"},
    "backends": {*_CHAIN, "codegen", "backends"},
    "documents": {*_CHAIN, "documents"},
    "pipeline": {*_CHAIN, "codegen", "backends", "documents", "pipeline"},
    "check": set(STAGES) - {"cli"},
    "cli": set(STAGES),
}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage_of(module: str) -> str:
    """The stage of a module: the longest prefix of STAGES that it falls under."""
    best = ""
    for stage, prefixes in STAGES.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, found = prefix, stage
    assert best, f"{module} belongs to no stage: add it to STAGES in {__file__}"
    return found


def imports() -> dict[str, set[str]]:
    """module -> the symbp modules it imports anywhere in its body."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    found: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "symbp" or node.module.startswith("symbp."):
                    for alias in node.names:
                        sub = f"{node.module}.{alias.name}"
                        targets.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "symbp"}
        found[name] = targets & modules.keys()
    return found


def test_every_import_follows_the_stage_order() -> None:
    wrong = [
        f"{module} ({stage_of(module)}) imports {target} ({stage_of(target)})"
        for module, targets in imports().items()
        for target in sorted(targets)
        if stage_of(target) not in ALLOWED[stage_of(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph = imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (circle := visit(target)):
                return circle
        state[module] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module)):
            raise AssertionError("import circle: " + " -> ".join(circle))


def test_the_check_fails_on_a_wrong_import(tmp_path: Path) -> None:
    """The stage table sees a later stage imported by an earlier one."""
    assert "derivation" not in ALLOWED[stage_of("symbp.symbolic.output")]
    assert stage_of("symbp.derivation.kinds.conv") == "derivation"
    assert stage_of("symbp") == "cli"


# --- names are data -----------------------------------------------------------------------
#
# Meaning lives in fields (symbp.ir.naming: a symbol's role and layer; the bindings; the
# kinds' modules), never in a name or a printed text. Reading text is allowed where the text
# comes from outside: the user's file (YAML, names, expressions), pdflatex's log, and symbp's
# own runtime source, which the backend copies into each module.
TEXT_READERS = {
    "symbp.frontend.reader": "the YAML reader (the user's file)",
    "symbp.frontend.spec": "the file's values (a source shown as <dict>, exponent floats)",
    "symbp.frontend.names": "the identifier rule of the names in the user's file",
    "symbp.frontend.expr": "the expression tokenizer (the user's expressions)",
    "symbp.pdf": "pdflatex's log",
    "symbp.backends.numpy.inline": "the runtime's own source, copied into modules",
    "symbp.ir.labels": "formats a document label (eq:delta-2 -> eq:net:delta-2)",
}
_STRING_METHODS = {"startswith", "endswith", "removeprefix", "removesuffix"}


def _text_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every regex call, startswith-like call, `x in str(...)` and class
    name dispatch in a module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id == "re":
                found.append((node.lineno, f"re.{node.func.attr}"))
            elif node.func.attr in _STRING_METHODS:
                found.append((node.lineno, f".{node.func.attr}()"))
        elif isinstance(node, ast.Compare):
            for op, right in zip(node.ops, node.comparators, strict=True):
                called = isinstance(right, ast.Call) and isinstance(right.func, ast.Name)
                if isinstance(op, ast.In | ast.NotIn) and called and right.func.id == "str":
                    found.append((node.lineno, "in str(...)"))
        elif isinstance(node, ast.Attribute) and node.attr == "__name__":
            parent = node.value
            if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name):
                if parent.func.id == "type":
                    found.append((node.lineno, "type(...).__name__"))
    return found


def test_no_meaning_is_read_from_names_or_printed_text() -> None:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    allowed_messages = {"type(...).__name__"}  # class names in error messages only
    wrong = []
    for name, path in sorted(modules.items()):
        if name in TEXT_READERS:
            continue
        text = path.read_text(encoding="utf-8")
        for line, what in _text_reads(ast.parse(text)):
            source = text.splitlines()[line - 1]
            if what in allowed_messages and ("raise" in source or 'f"' in source):
                continue
            wrong.append(f"{name}:{line}: {what}: {source.strip()}")
    assert not wrong, "\n".join(wrong)


def test_the_text_check_sees_each_pattern() -> None:
    sample = (
        "import re\nre.match('A', n)\nn.startswith('Z')\n"
        "ok = 'x' in str(e)\nif type(e).__name__ == 'Conv2d': pass\n"
    )
    assert [w for _, w in _text_reads(ast.parse(sample))] == [
        "re.match",
        ".startswith()",
        "in str(...)",
        "type(...).__name__",
    ]
