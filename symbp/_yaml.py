"""Safe YAML reading that keeps where every value came from.

yaml.compose with the SafeLoader builds a node graph without running any tag;
symbp converts the nodes itself, accepting only the standard tags, refusing
duplicate keys and stopping after a fixed number of visited nodes, so an
alias bomb costs milliseconds instead of memory.
"""

from __future__ import annotations

from typing import Any

import yaml

from symbp.errors import SpecError

MAX_BYTES = 1 << 20
MAX_NODES = 10_000
_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"

Marks = dict[str, tuple[int, int]]


def decode(data: bytes | str, filename: str) -> str:
    """The document text, refusing oversized, NUL-containing or non-UTF-8 input."""
    if len(data) > MAX_BYTES:
        raise SpecError(f"the file is {len(data):,} bytes (limit {MAX_BYTES:,})", file=filename)
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SpecError(
                f"the file is not valid UTF-8 (byte {exc.start})", file=filename,
                fix="save the file as UTF-8 text",
            ) from None
    if "\x00" in data:
        line = data.count("\n", 0, data.index("\x00")) + 1
        raise SpecError("the file contains a NUL byte", file=filename, line=line)
    return data


def compose(text: str, filename: str) -> yaml.Node | None:
    """The node graph of a single YAML document."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(
            f"YAML syntax error: {exc.problem or exc.context}",
            file=filename,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            fix="check the indentation and the ':' after each key",
        ) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise SpecError(f"YAML error: {exc}", file=filename) from None


def mark_of(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class Converter:
    """Nodes -> plain values, recording the mark of each YAML path."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.marks: Marks = {}
        self.visited = 0
        self._constructor = yaml.SafeLoader("")

    def error(self, node: yaml.Node, path: str, message: str, fix: str | None = None) -> SpecError:
        line, column = mark_of(node)
        return SpecError(message, file=self.filename, line=line, column=column, path=path or None, fix=fix)

    def value(self, node: yaml.Node, path: str) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise self.error(node, path, f"the document has more than {MAX_NODES:,} values (an alias bomb?)",
                             fix="write the architecture out plainly, without nested aliases")
        self.marks.setdefault(path, mark_of(node))
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            return [self.value(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and node.tag in _SCALAR_TAGS:
            return self.scalar(node, path)
        raise self.error(node, path, f"the YAML tag {node.tag!r} is not allowed",
                         fix="remove the tag: symbp reads plain numbers, strings, lists and mappings")

    def scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except (ValueError, yaml.YAMLError) as exc:
            raise self.error(node, path, f"cannot read the value {node.value[:40]!r}: {exc}") from None

    def mapping(self, node: yaml.MappingNode, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str"):
                raise self.error(key_node, path, "mapping keys must be plain strings")
            key = key_node.value
            child = f"{path}.{key}" if path else key
            if key in out:
                raise self.error(key_node, child, f"duplicate key '{key}'", fix="keep one of them")
            self.marks[child] = mark_of(value_node)
            self.marks[f"{child}#key"] = mark_of(key_node)
            out[key] = self.value(value_node, child)
        return out
