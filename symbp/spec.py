"""arch.yaml (schema v1) -> frozen dataclasses. No SymPy objects are stored here.

    name: seed_net       # optional Python identifier; default: the file's stem
    layout: column       # column (default) | row
    dtype: float64       # float64 (default) | float32
    input: 2             # input dimension, 1 <= d <= 1,000,000
    layers:              # non-empty list of {units, activation}
      - {units: 4, activation: sigmoid}
      - {units: 1, activation: sigmoid}
    loss: bce            # mse | bce | cross_entropy | {expr: "<expression in yhat and y>"}
    reduction: mean      # mean (default) | sum
    l2: 0.0              # optional, >= 0
    activations:         # optional custom elementwise activations, expressions in x
      mish: "x*tanh(log(1 + exp(x)))"

Every error names the file, line and column, the YAML path and a fix.
"""

from __future__ import annotations

import difflib
import hashlib
import keyword
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sympy as sp

from symbp import _yaml
from symbp.errors import ExpressionError, SpecError
from symbp.expr import parse_expression

SCHEMA_VERSION = 1
BUILTIN_ACTIVATIONS = (
    "identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "swish", "gelu", "softmax",
)
ACTIVATION_ALIASES = {"linear": "identity", "silu": "swish"}
LOSSES = ("mse", "bce", "cross_entropy")
LAYOUTS = ("column", "row")
DTYPES = ("float64", "float32")
REDUCTIONS = ("mean", "sum")
TOP_KEYS = ("name", "layout", "dtype", "input", "layers", "loss", "reduction", "l2", "activations")
REQUIRED = ("input", "layers", "loss")
LAYER_KEYS = ("units", "activation")
MAX_UNITS = 1_000_000
MAX_LAYERS = 10_000
MAX_PARAMS = 2_000_000_000
MAX_NAME = 64


@dataclass(frozen=True)
class Layer:
    """One dense layer: its width and activation (canonical name)."""

    units: int
    activation: str


@dataclass(frozen=True)
class Loss:
    """The declared loss: a built-in kind, or an expression e(yhat, y) per output unit."""

    kind: str
    expr: str | None = None


@dataclass(frozen=True)
class Arch:
    """A validated architecture."""

    name: str
    input: int
    layers: tuple[Layer, ...]
    loss: Loss
    layout: str = "column"
    dtype: str = "float64"
    reduction: str = "mean"
    l2: float = 0.0
    activations: tuple[tuple[str, str], ...] = ()
    source: str = "<memory>"
    source_sha256: str = ""
    marks: tuple[tuple[str, int, int], ...] = ()

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.input, *(layer.units for layer in self.layers))

    def mark(self, path: str) -> tuple[int, int] | None:
        for p, line, column in self.marks:
            if p == path:
                return line, column
        return None

    def __repr__(self) -> str:
        acts = "-".join(layer.activation for layer in self.layers)
        return (
            f"Arch({self.name!r}: sizes {self.layer_sizes}, {acts}, loss {self.loss.kind}, "
            f"{self.layout}, {self.dtype}, {self.reduction}, l2={self.l2})"
        )


class _Checker:
    """Validation with locations: every failure becomes a SpecError at the right line."""

    def __init__(self, source: str, marks: _yaml.Marks) -> None:
        self.source = source
        self.marks = marks

    def fail(self, path: str, message: str, fix: str | None = None, key: bool = False) -> SpecError:
        line_col = self.marks.get(f"{path}#key" if key else path) or self.marks.get(path)
        line, column = line_col if line_col else (None, None)
        return SpecError(message, file=self.source, line=line, column=column, path=path or None, fix=fix)

    def choice(self, path: str, value: Any, allowed: tuple[str, ...], what: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"{what} must be a string, got {_kind(value)}", _one_of(allowed))
        if value not in allowed:
            raise self.fail(path, f"unknown {what} {value!r}", _did_you_mean(value, allowed))
        return value

    def integer(self, path: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            fix = f"write {int(value)}" if isinstance(value, float) and value.is_integer() else None
            raise self.fail(path, f"expected a whole number, got {_kind(value)}", fix or f"write a number from {low} to {high:,}")
        if not low <= value <= high:
            raise self.fail(path, f"{value:,} is out of range", f"use a number from {low} to {high:,}")
        return value

    def keys(self, path: str, doc: Mapping[str, Any], allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
        for key in doc:
            if key not in allowed:
                child = f"{path}.{key}" if path else key
                raise self.fail(child, f"unknown key '{key}'", _did_you_mean(key, allowed), key=True)
        missing = [k for k in required if k not in doc]
        if missing:
            names = ", ".join(f"'{k}'" for k in missing)
            raise self.fail(path, f"missing required key{'s' if len(missing) > 1 else ''} {names}",
                            f"add {names}; required keys are {', '.join(required)}")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {bool: "a boolean", int: "an integer", float: "a decimal number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__) + (
        f" ({value!r})" if isinstance(value, (bool, int, float, str)) and len(repr(value)) < 40 else "")


def _one_of(allowed: tuple[str, ...] | list[str]) -> str:
    return "use one of: " + ", ".join(allowed)


def _did_you_mean(value: str, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(value, list(allowed), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return hint + _one_of(allowed)


def _default_name(source: str) -> str:
    stem = Path(source).stem if source and not source.startswith("<") else "net"
    name = re.sub(r"\W", "_", stem, flags=re.ASCII) or "net"
    if name[0].isdigit():
        name = "net_" + name
    if keyword.iskeyword(name):
        name += "_net"
    return name[:MAX_NAME]


_X = sp.Symbol("x", real=True)
_LOSS_VARS = {"yhat": sp.Symbol("yhat", real=True), "y": sp.Symbol("y", real=True)}


def _check_expression(c: _Checker, path: str, text: Any, variables: Mapping[str, sp.Symbol]) -> str:
    """Validate an expression string now, so its errors point into the file."""
    if not isinstance(text, str):
        raise c.fail(path, f"expected an expression string, got {_kind(text)}", "quote the expression")
    try:
        parse_expression(text, variables)
    except ExpressionError as exc:
        raise c.fail(path, exc.message, exc.fix) from None
    return text


def _name(c: _Checker, doc: Mapping[str, Any], source: str) -> str:
    if "name" not in doc:
        return _default_name(source)
    name = doc["name"]
    if not isinstance(name, str):
        raise c.fail("name", f"name must be a string, got {_kind(name)}", "write a Python identifier such as my_net")
    if "/" in name or "\\" in name or not name.isidentifier() or not name.isascii() or keyword.iskeyword(name) or len(name) > MAX_NAME:
        suggestion = _default_name(name) if name.strip() else "my_net"
        raise c.fail("name", f"{name!r} is not usable as a module name",
                     f"use an ASCII Python identifier of at most {MAX_NAME} characters, e.g. '{suggestion}'")
    return name


def _custom_activations(c: _Checker, doc: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    raw = doc.get("activations", {})
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise c.fail("activations", f"expected a mapping name -> expression, got {_kind(raw)}",
                     'write e.g.  activations: {mish: "x*tanh(softplus(x))"}')
    out = []
    for name, text in raw.items():
        path = f"activations.{name}"
        if not name.isidentifier() or not name.isascii() or keyword.iskeyword(name):
            raise c.fail(path, f"{name!r} is not a valid activation name", "use a plain identifier", key=True)
        if name in BUILTIN_ACTIVATIONS or name in ACTIVATION_ALIASES:
            raise c.fail(path, f"'{name}' is a built-in activation", "choose another name", key=True)
        out.append((name, _check_expression(c, path, text, {"x": _X})))
    return tuple(sorted(out))


def _layers(c: _Checker, doc: Mapping[str, Any], custom: tuple[tuple[str, str], ...]) -> tuple[Layer, ...]:
    raw = doc["layers"]
    if not isinstance(raw, list) or not raw:
        raise c.fail("layers", f"layers must be a non-empty list, got {_kind(raw)}",
                     "list the layers, e.g.  - {units: 4, activation: sigmoid}")
    if len(raw) > MAX_LAYERS:
        raise c.fail("layers", f"{len(raw):,} layers is too many", f"use at most {MAX_LAYERS:,}")
    known = [*BUILTIN_ACTIVATIONS, *ACTIVATION_ALIASES, *(n for n, _ in custom)]
    layers = []
    for i, entry in enumerate(raw):
        path = f"layers[{i}]"
        if not isinstance(entry, dict):
            raise c.fail(path, f"each layer must be a mapping, got {_kind(entry)}", "write {units: 4, activation: tanh}")
        c.keys(path, entry, LAYER_KEYS, LAYER_KEYS)
        units = c.integer(f"{path}.units", entry["units"], 1, MAX_UNITS)
        act = entry["activation"]
        if not isinstance(act, str) or act not in known:
            what = f"unknown activation {act!r}" if isinstance(act, str) else f"activation must be a string, got {_kind(act)}"
            raise c.fail(f"{path}.activation", what, _did_you_mean(str(act), known))
        act = ACTIVATION_ALIASES.get(act, act)
        if act == "softmax" and i != len(raw) - 1:
            raise c.fail(f"{path}.activation", "softmax is only supported on the last layer",
                         "use an elementwise activation (tanh, relu, ...) for hidden layers")
        layers.append(Layer(units, act))
    return tuple(layers)


def _loss(c: _Checker, doc: Mapping[str, Any]) -> Loss:
    raw = doc["loss"]
    if isinstance(raw, dict):
        c.keys("loss", raw, ("expr",), ("expr",))
        return Loss("expr", _check_expression(c, "loss.expr", raw["expr"], _LOSS_VARS))
    if not isinstance(raw, str) or raw not in LOSSES:
        what = f"unknown loss {raw!r}" if isinstance(raw, str) else f"loss must be a name or {{expr: ...}}, got {_kind(raw)}"
        raise c.fail("loss", what, _did_you_mean(str(raw), LOSSES) + ', or {expr: "<expression in yhat and y>"}')
    return Loss(raw)


def _l2(c: _Checker, doc: Mapping[str, Any]) -> float:
    value = doc.get("l2", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise c.fail("l2", f"l2 must be a number, got {_kind(value)}", "write e.g. l2: 0.001")
    if not math.isfinite(value) or value < 0 or value > 1e6:
        raise c.fail("l2", f"l2 = {value!r} is out of range", "use a finite number from 0 to 1e6")
    return float(value)


def _validate(doc: Any, c: _Checker, source: str, sha: str) -> Arch:
    if not isinstance(doc, dict):
        raise c.fail("", f"the file must be a mapping, got {_kind(doc)}",
                     "write keys input, layers and loss at the top level (see the README)")
    c.keys("", doc, TOP_KEYS, REQUIRED)
    custom = _custom_activations(c, doc)
    layers = _layers(c, doc, custom)
    d = c.integer("input", doc["input"], 1, MAX_UNITS)
    sizes = [d, *(layer.units for layer in layers)]
    params = sum(sizes[i] * sizes[i - 1] + sizes[i] for i in range(1, len(sizes)))
    if params > MAX_PARAMS:
        raise c.fail("layers", f"the network has {params:,} parameters", f"use at most {MAX_PARAMS:,}")
    return Arch(
        name=_name(c, doc, source),
        input=d,
        layers=layers,
        loss=_loss(c, doc),
        layout=c.choice("layout", doc.get("layout", "column"), LAYOUTS, "layout"),
        dtype=c.choice("dtype", doc.get("dtype", "float64"), DTYPES, "dtype"),
        reduction=c.choice("reduction", doc.get("reduction", "mean"), REDUCTIONS, "reduction"),
        l2=_l2(c, doc),
        activations=custom,
        source=source,
        source_sha256=sha,
        marks=tuple(sorted((p, lc[0], lc[1]) for p, lc in c.marks.items() if not p.endswith("#key"))),
    )


def parse_arch(data: bytes | str, filename: str = "<string>") -> Arch:
    """Validate the text of an architecture file."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    sha = hashlib.sha256(raw).hexdigest()
    text = _yaml.decode(data, filename)
    node = _yaml.compose(text, filename)
    if node is None:
        raise SpecError("the file is empty", file=filename, fix="write keys input, layers and loss (see the README)")
    converter = _yaml.Converter(filename)
    doc = converter.value(node, "")
    return _validate(doc, _Checker(filename, converter.marks), filename, sha)


def load_arch(path: str | os.PathLike[str]) -> Arch:
    """Read and validate an architecture file."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read(_yaml.MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror or exc}", file=name) from None
    return parse_arch(data, name)


def arch_from_mapping(doc: Mapping[str, Any], source: str = "<dict>") -> Arch:
    """Validate an architecture given as a Python mapping (the Python API)."""
    return _validate(dict(doc), _Checker(source, {}), source, "")
