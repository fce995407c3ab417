"""Reading YAML safely: bytes -> plain Python values plus the line and column of every node.

Nothing is ever constructed by PyYAML: the parser's event stream (libyaml when available,
else PyYAML's pure-Python SafeLoader parser) is composed here by hand with budgets on the
number of nodes and the nesting depth, and only the standard str/int/float/bool/null/seq/map
tags are accepted, plus YAML's merge key ('<<: *defaults') as a mapping key. Aliases are
expanded under the same node budget, so alias bombs ("billion laughs") and deep nesting are
refused in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from symbp.errors import SpecError

MAX_BYTES = 1 << 20
MAX_NODES = 60_000  # 10,000 layers need about 50,000
MAX_DEPTH = 20
MAX_NUMBER_CHARS = 40

Mark = tuple[int, int]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP, _MERGE = _TAG + "seq", _TAG + "map", _TAG + "merge"
_SCALAR_TAGS = (_STR, _INT, _FLOAT, _BOOL, _NULL)
_TRUE = ("yes", "true", "on")
# YAML 1.1 needs a dot in a float; also read plain 1e-4 as a number, as YAML 1.2 does.
_EXPONENT_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Document:
    """A YAML document as plain Python values, with the 1-based position of every node."""

    value: Any
    marks: dict[str, Mark]  # path -> position of the value, in document order
    key_marks: dict[str, Mark]  # path -> position of the mapping key that names it


@dataclass(eq=False)
class _Node:
    """A composed node: a converted scalar, or the children of a sequence or mapping."""

    kind: str  # "scalar" | "seq" | "map"
    line: int
    column: int
    value: Any = None
    text: str = ""
    items: list[Any] = field(default_factory=list)
    merge: bool = False  # a '<<' key


def fail(
    filename: str,
    message: str,
    mark: Mark | None = None,
    path: str | None = None,
    fix: str | None = None,
) -> SpecError:
    """A SpecError located in the file."""
    line, column = mark if mark is not None else (None, None)
    return SpecError(message, file=filename, line=line, column=column, path=path, fix=fix)


def join(path: str, key: str) -> str:
    """The YAML path of a mapping entry, e.g. layers[1].activation."""
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def load_document(data: bytes, filename: str) -> Document:
    """Decode, compose and convert one YAML document; every problem is a SpecError."""
    text = _decode(data, filename)
    root = _Composer(text, filename).compose()
    converter = _Converter(filename)
    value = converter.convert(root, "", 1) if root is not None else None
    return Document(value, converter.marks, converter.key_marks)


def _position(data: bytes, offset: int) -> Mark:
    """The 1-based line and column (in characters) of a byte offset."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def _decode(data: bytes, filename: str) -> str:
    """Size, NUL and UTF-8 checks, then the text without a byte-order mark."""
    if len(data) > MAX_BYTES:
        raise fail(
            filename,
            f"the file is too large ({len(data)} bytes, at most {MAX_BYTES})",
            fix="an architecture file is a few lines of YAML; check the file name",
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise fail(filename, "the file is encoded as UTF-16", (1, 1), fix="save it as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise fail(
            filename,
            "the file contains a NUL byte (is it a binary file?)",
            _position(data, nul),
            fix="save the file as UTF-8 text",
        )
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise fail(
            filename,
            f"the file is not valid UTF-8 (byte 0x{data[err.start]:02x})",
            _position(data, err.start),
            fix="save the file as UTF-8 text",
        ) from None


class _Composer:
    """Builds _Node trees from parser events, with node, depth and tag checks."""

    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.events: Iterator[Any] = yaml.parse(text, Loader=_LOADER)
        self.resolver = yaml.resolver.Resolver()
        self.anchors: dict[str, _Node] = {}
        self.count = 0
        self.copied = 0  # mapping entries copied by merge keys

    def compose(self) -> _Node | None:
        """The single document's root node, or None for an empty stream."""
        try:
            self._next()  # StreamStartEvent
            if isinstance(self._next(), yaml.StreamEndEvent):
                return None
            root = self._node(self._next(), 1)
            self._next()  # DocumentEndEvent
            extra = self._next()
            if not isinstance(extra, yaml.StreamEndEvent):
                raise fail(
                    self.filename,
                    "the file contains more than one YAML document",
                    _mark(extra),
                    fix="keep one document (remove the extra '---')",
                )
            return root
        finally:
            close = getattr(self.events, "close", None)
            if close is not None:
                close()

    def _next(self) -> Any:
        """The next parser event; parser errors become SpecErrors with the problem's mark."""
        try:
            return next(self.events)
        except yaml.YAMLError as err:
            raise self._syntax_error(err) from None
        except StopIteration:
            raise fail(self.filename, "unexpected end of the YAML stream") from None

    def _syntax_error(self, err: yaml.YAMLError) -> SpecError:
        """A SpecError for a YAML syntax or reader error."""
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        position = (mark.line + 1, mark.column + 1) if mark is not None else None
        problem = getattr(err, "problem", None)
        offset = getattr(err, "position", None)  # reader errors: an offset into the input
        if position is None and isinstance(offset, int):
            if _LOADER is not yaml.SafeLoader:  # libyaml counts bytes, PyYAML characters
                offset = len(self.text.encode("utf-8")[:offset].decode("utf-8", "ignore"))
            line_start = self.text.rfind("\n", 0, offset) + 1
            position = (self.text.count("\n", 0, offset) + 1, offset - line_start + 1)
        message = f"invalid YAML: {problem or str(err).splitlines()[0]}"
        context = getattr(err, "context", None)
        if context:
            message += f" ({context})"
        return fail(self.filename, message, position, fix="check the indentation and quoting")

    def _node(self, event: Any, depth: int, key: bool = False) -> _Node:
        """Compose one node starting at ``event`` (a mapping key if ``key``)."""
        mark = _mark(event)
        self.count += 1
        if self.count > MAX_NODES:
            raise fail(self.filename, f"the document has more than {MAX_NODES} nodes", mark)
        if depth > MAX_DEPTH:
            raise fail(
                self.filename, f"the document is nested more than {MAX_DEPTH} levels deep", mark
            )
        if isinstance(event, yaml.AliasEvent):
            return self._alias(event)
        if isinstance(event, yaml.ScalarEvent):
            node = self._scalar(event, key)
        elif isinstance(event, yaml.SequenceStartEvent):
            node = self._sequence(event, depth)
        elif isinstance(event, yaml.MappingStartEvent):
            node = self._mapping(event, depth)
        else:
            raise fail(self.filename, f"unexpected YAML element ({type(event).__name__})", mark)
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        return node

    def _alias(self, event: Any) -> _Node:
        """A previously anchored node (recursive aliases are refused as unknown)."""
        node = self.anchors.get(event.anchor)
        if node is None:
            raise fail(
                self.filename,
                f"unknown or recursive alias '*{event.anchor}'",
                _mark(event),
                fix="define the anchor (&name) before using it",
            )
        return node

    def _tag(self, event: Any, kind: type[yaml.Node], allowed: tuple[str, ...]) -> str:
        """The resolved tag of an event, refused unless it is one of ``allowed``."""
        tag = event.tag
        if tag is None or tag == "!":
            value = event.value if kind is yaml.ScalarNode else None
            tag = self.resolver.resolve(kind, value, event.implicit)
        if tag not in allowed:
            shown = tag.replace(_TAG, "!!")
            raise fail(
                self.filename,
                f"the YAML type {shown!r} is not allowed",
                _mark(event),
                fix="use plain strings, numbers, booleans, lists and mappings; "
                "quote the value if it is meant as text",
            )
        return str(tag)

    def _scalar(self, event: Any, key: bool) -> _Node:
        """A scalar node holding its converted Python value; a key may be the merge key '<<'."""
        tag = self._tag(event, yaml.ScalarNode, _SCALAR_TAGS + ((_MERGE,) if key else ()))
        line, column = _mark(event)
        if tag == _MERGE:
            return _Node("scalar", line, column, value=event.value, text=event.value, merge=True)
        value = self._convert_scalar(tag, event)
        return _Node("scalar", line, column, value=value, text=event.value)

    def _convert_scalar(self, tag: str, event: Any) -> Any:
        """str/int/float/bool/null text -> Python value."""
        text: str = event.value
        if tag == _STR:
            plain = bool(event.implicit[0])  # untagged and unquoted
            return _to_float(text) if plain and _EXPONENT_FLOAT.fullmatch(text) else text
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return text.lower() in _TRUE
        try:
            return _to_int(text) if tag == _INT else _to_float(text)
        except ValueError as err:
            raise fail(
                self.filename, str(err), _mark(event), fix="write a plain decimal number"
            ) from None

    def _sequence(self, event: Any, depth: int) -> _Node:
        """A sequence node and its children."""
        self._tag(event, yaml.SequenceNode, (_SEQ,))
        node = _Node("seq", *_mark(event))
        child = self._next()
        while not isinstance(child, yaml.SequenceEndEvent):
            node.items.append(self._node(child, depth + 1))
            child = self._next()
        return node

    def _mapping(self, event: Any, depth: int) -> _Node:
        """A mapping node and its (key, value) pairs, with the pairs of a '<<' merged in."""
        self._tag(event, yaml.MappingNode, (_MAP,))
        node = _Node("map", *_mark(event))
        child = self._next()
        while not isinstance(child, yaml.MappingEndEvent):
            key = self._node(child, depth + 1, key=True)
            node.items.append((key, self._node(self._next(), depth + 1)))
            child = self._next()
        if any(key.merge for key, _ in node.items):
            node.items = self._merged(node.items)
        return node

    def _merged(self, pairs: list[tuple[_Node, _Node]]) -> list[tuple[_Node, _Node]]:
        """The pairs with the '<<' entry replaced by the entries it merges, in its place.

        YAML's merge key: a key written in the mapping wins over a merged one, and of
        '<<: [*a, *b]' the earlier mapping wins. The merged mappings were composed before
        this one (an alias names a finished node), so their own merges are done already.
        """
        taken = {_identity(key) for key, _ in pairs if not key.merge}
        result: list[tuple[_Node, _Node]] = []
        first: _Node | None = None
        for key, value in pairs:
            if not key.merge:
                result.append((key, value))
                continue
            if first is not None:
                raise fail(
                    self.filename,
                    f"a second merge key '<<' in one mapping (the first is on line {first.line})",
                    (key.line, key.column),
                    fix="merge several mappings with one key: '<<: [*a, *b]'",
                )
            first = key
            for source in self._merge_sources(value):
                result += self._entries(source, key, taken)
        return result

    def _merge_sources(self, value: _Node) -> list[_Node]:
        """The mappings a '<<' merges: one mapping, or a list of them."""
        sources = value.items if value.kind == "seq" else [value]
        for source in sources:
            if source.kind != "map":
                what = "a list" if source.kind == "seq" else f"the value {source.text!r}"
                inside = " inside the list" if source is not value else ""
                raise fail(
                    self.filename,
                    f"the merge key '<<' takes a mapping or a list of mappings, got {what}{inside}",
                    (source.line, source.column),
                    fix="write '<<: *name' where &name marks a mapping, or '<<: [*a, *b]'",
                )
        return sources

    def _entries(self, source: _Node, merge: _Node, taken: set[Any]) -> list[tuple[_Node, _Node]]:
        """The pairs of ``source`` whose keys are not ``taken`` yet (they are then taken)."""
        self.copied += len(source.items)
        if self.copied > MAX_NODES:
            raise fail(
                self.filename,
                f"merge keys ('<<') copy more than {MAX_NODES} mapping entries",
                (merge.line, merge.column),
                fix="write the values out instead of merging the same mappings many times",
            )
        own: set[Any] = set()
        result = []
        for key, value in source.items:
            identity = _identity(key)
            if identity in own:  # a duplicate key: kept for the converter to report
                result.append((key, value))
            elif identity not in taken:
                taken.add(identity)
                result.append((key, value))
            own.add(identity)
        return result


def _identity(key: _Node) -> Any:
    """What makes two mapping keys the same key: equal scalars of one type, else the node."""
    return (type(key.value), key.value) if key.kind == "scalar" else id(key)


def _mark(event: Any) -> Mark:
    """The 1-based (line, column) where an event starts."""
    return event.start_mark.line + 1, event.start_mark.column + 1


def _to_int(text: str) -> int:
    """A YAML int in decimal, 0x hex or 0b binary; octal-looking and sexagesimal are refused."""
    digits = text.replace("_", "")
    if len(digits) > MAX_NUMBER_CHARS:
        raise ValueError(f"the number {text[:20]}... is too long")
    sign = -1 if digits.startswith("-") else 1
    body = digits.lstrip("+-")
    if ":" in body:
        raise ValueError(f"{text!r} is a base-60 number in YAML 1.1; write it in decimal")
    if len(body) > 1 and body.startswith("0") and body[1] not in "xb":
        raise ValueError(f"{text!r} has a leading zero (YAML 1.1 reads it as octal)")
    base = {"0x": 16, "0b": 2}.get(body[:2], 10)
    try:
        return sign * int(body[2:] if base != 10 else body, base)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid integer") from None


def _to_float(text: str) -> float:
    """A YAML float, including .inf and .nan; sexagesimal floats are refused."""
    digits = text.replace("_", "").lower()
    if len(digits) > MAX_NUMBER_CHARS:
        raise ValueError(f"the number {text[:20]}... is too long")
    if ":" in digits:
        raise ValueError(f"{text!r} is a base-60 number in YAML 1.1; write it in decimal")
    if digits.lstrip("+-") in (".inf", ".nan"):
        digits = digits.replace(".", "")
    try:
        return float(digits)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid number") from None


class _Converter:
    """Expands a _Node tree into plain values and marks, counting every visit (aliases too)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.visits = 0
        self.marks: dict[str, Mark] = {}
        self.key_marks: dict[str, Mark] = {}

    def convert(self, node: _Node, path: str, depth: int) -> Any:
        """The Python value of ``node`` at ``path``."""
        mark = (node.line, node.column)
        self.visits += 1
        if self.visits > MAX_NODES or depth > MAX_DEPTH:
            raise fail(
                self.filename,
                f"the document expands to more than {MAX_NODES} nodes or "
                f"{MAX_DEPTH} levels (through aliases?)",
                mark,
                path or None,
                fix="write the values out instead of using anchors and aliases",
            )
        self.marks[path] = mark
        if node.kind == "scalar":
            return node.value
        if node.kind == "seq":
            return [
                self.convert(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node.items)
            ]
        return self._mapping(node, path, depth)

    def _mapping(self, node: _Node, path: str, depth: int) -> dict[str, Any]:
        """A dict with string keys; duplicate and non-string keys are refused."""
        result: dict[str, Any] = {}
        for key_node, value_node in node.items:
            key = self._key(key_node, path)
            child = join(path, key)
            if key in result:
                first = self.key_marks[child][0]
                raise fail(
                    self.filename,
                    f"duplicate key '{key}' (first defined on line {first})",
                    (key_node.line, key_node.column),
                    child,
                    fix="keep only one of them",
                )
            self.key_marks[child] = (key_node.line, key_node.column)
            result[key] = self.convert(value_node, child, depth + 1)
        return result

    def _key(self, node: _Node, path: str) -> str:
        """A mapping key, which must be a string scalar."""
        if node.kind == "scalar" and isinstance(node.value, str):
            return node.value
        if node.kind != "scalar":
            raise fail(
                self.filename,
                "mapping keys must be strings, got a "
                + ("list" if node.kind == "seq" else "mapping"),
                (node.line, node.column),
                path or None,
                fix="use a plain word as the key",
            )
        kind = {bool: "a boolean", type(None): "null"}.get(type(node.value), "a number")
        raise fail(
            self.filename,
            f"mapping keys must be strings; YAML reads {node.text!r} as {kind}",
            (node.line, node.column),
            path or None,
            fix=f"quote the key: '{node.text}':",
        )
