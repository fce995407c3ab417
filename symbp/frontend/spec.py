"""The architecture file ``arch.yaml`` (schema v1) -> frozen dataclasses (no SymPy objects).

Schema v1::

    name: seed_net      # optional: a Python identifier (ASCII, not a keyword, <= 64 characters);
                        # default: the file's stem, non-identifier characters replaced by '_'
                        # ('net_' prefixed if it starts with a digit)
    layout: column      # column (default: X has shape (features, n)) | row (X is (n, features))
    dtype: float64      # float64 (default) | float32
    input: 2            # the input dimension, an integer >= 1
    layers:             # a non-empty list; each entry has exactly `units` and `activation`
      - units: 4        # an integer >= 1
        activation: sigmoid
    loss: mse           # mse | bce | cross_entropy | {expr: "<expression in yhat and y>"}
    reduction: mean     # mean (default) | sum
    l2: 0.0             # optional number >= 0 (the weight-decay coefficient)
    activations:        # optional custom elementwise activations: name -> expression in x
      mish: "x*tanh(log(1 + exp(x)))"

Activations are the built-ins :data:`BUILTIN_ACTIVATIONS`, the aliases in
:data:`ACTIVATION_ALIASES` (resolved to their canonical name) or a key of ``activations``;
``softmax`` acts over the last axis (a vector's units, each position's features) of two or
more entries, on any layer but an image. Expressions use the language of
:mod:`symbp.frontend.expr`. Limits: ``input`` and ``units`` <= 1,000,000, at most 10,000 layers and
2,000,000,000 parameters, 16 custom activations, files of at most 1 MiB.

Every problem raises :class:`~symbp.errors.SpecError` (``ExpressionError`` for expressions)
carrying the file, the 1-based line and column, the YAML path (e.g. ``layers[1].activation``),
a message and a fix. :class:`Arch` equality ignores provenance (``source``,
``source_sha256``, ``marks``): two files describing the same network compare equal.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import sympy

from symbp.errors import ExpressionError, SpecError
from symbp.frontend import names, reader
from symbp.frontend.expr import MAX_SYMPY_CALLS, check_expression, parse_expression
from symbp.frontend.kind_keys import (
    DEFAULT_EPS,
    DEFAULT_MOMENTUM,
    KINDS,
    NONLINEARITIES,
    POSITIONS,
    RECURRENT,
    RETURNS,
    check_bias,
    check_eps,
    check_flag,
    check_momentum,
    entry_kind,
    keys_of,
)
from symbp.frontend.window import MAX_COLUMNS, Window, check_window

SCHEMA_VERSION = 2
BUILTIN_ACTIVATIONS = (
    "identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "swish", "gelu",
    "gelu_tanh", "softmax",
)  # fmt: skip
ACTIVATION_ALIASES = {"linear": "identity", "silu": "swish"}
LOSSES = ("mse", "bce", "cross_entropy")
LAYOUTS = ("column", "row")
DTYPES = ("float64", "float32")
REDUCTIONS = ("mean", "sum")
TOP_KEYS = ("name", "layout", "dtype", "input", "layers", "loss", "reduction", "l2", "activations")
REQUIRED_KEYS = ("input", "layers", "loss")
LAYER_KEYS = ("units", "activation")
MAX_UNITS = 1_000_000
MAX_LAYERS = 10_000
MAX_PARAMETERS = 2_000_000_000
MAX_NAME_LENGTH = names.MAX_NAME_LENGTH
MAX_CUSTOM_ACTIVATIONS = 16
SYMPY_CALLS_PER_FILE = 1_000_000  # SymPy's budget for all expressions of one file

_X = sympy.Symbol("x", real=True)
_LOSS_VARIABLES = {"yhat": sympy.Symbol("yhat", real=True), "y": sympy.Symbol("y", real=True)}


@dataclass(frozen=True)
class Layer:
    """One layer: a kind (dense, add, layernorm, batchnorm) with ``units`` outputs, followed
    by an elementwise (or softmax) activation. Kinds other than dense keep their input's size.
    """

    units: int
    activation: str  # canonical: aliases resolved (linear->identity, silu->swish) or a custom name
    type: str = "dense"
    name: str | None = None  # the layer's name, for `from` (None: unnamed)
    bias: bool = True  # dense only
    source: str | None = None  # add only: the name in `from` (a layer's name or "input")
    eps: float = DEFAULT_EPS  # layernorm and batchnorm only
    shape: tuple[int, ...] = ()  # its output per sample when an image (C, H, W); () a vector
    window: Window | None = None  # conv2d, maxpool2d, avgpool2d: kernel, stride, padding
    momentum: float = DEFAULT_MOMENTUM  # batchnorm only: its running statistics' update
    positions: str = "learned"  # embedding only: learned | sinusoidal | none
    vocab: int = 0  # embedding only: the token input's vocabulary V
    tie: str | None = None  # dense only: the embedding layer whose table E is its weight
    heads: int = 1  # attention only: the number of heads (dividing d)
    causal: bool = False  # attention only: each position attends to itself and earlier ones
    returns: str = "sequence"  # rnn, lstm, gru: every step's h (sequence) or h_T (last)
    nonlinearity: str = "tanh"  # rnn only: f of h_t = f(...)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The per-sample shape of its output: (C, H, W) or (units,)."""
        return self.shape or (self.units,)


@dataclass(frozen=True)
class Loss:
    """The loss: a built-in kind, or ``kind == "expr"`` with the expression's source text."""

    kind: str  # "mse" | "bce" | "cross_entropy" | "expr"
    expr: str | None = None  # the expression source text when kind == "expr"


@dataclass(frozen=True)
class Arch:
    """A validated architecture. Equality and hashing ignore where it came from."""

    name: str
    input: int  # the size of one sample (C*H*W for an image)
    layers: tuple[Layer, ...]
    loss: Loss
    layout: str = "column"
    dtype: str = "float64"
    reduction: str = "mean"
    l2: float = 0.0
    activations: tuple[tuple[str, str], ...] = ()  # custom activations (name, source), sorted
    input_shape: tuple[int, ...] = ()  # (C, H, W) an image, (T, d) a sequence, (T,) tokens
    vocab: int = 0  # token input: ids in [0, vocab); 0 for real-valued input
    source: str = field(default="<memory>", compare=False)  # the file name as given
    source_sha256: str = field(default="", compare=False, repr=False)  # "" when from a dict
    marks: tuple[tuple[str, int, int], ...] = field(default=(), compare=False, repr=False)

    @functools.cached_property
    def layer_sizes(self) -> tuple[int, ...]:
        """(input, units_1, ..., units_L)."""
        return (self.input, *(layer.units for layer in self.layers))

    @functools.cached_property
    def layer_shapes(self) -> tuple[tuple[int, ...], ...]:
        """The per-sample shape after each layer, input first."""
        return (self.input_shape or (self.input,), *(layer.out_shape for layer in self.layers))

    @property
    def positions(self) -> int:
        """T for a sequence input (T, d): each sample is computed as the T rows of its
        positions; 0 for a vector or an image."""
        return self.input_shape[0] if len(self.input_shape) == 2 or self.vocab else 0

    @property
    def images(self) -> bool:
        """Whether any tensor of the network is an image."""
        return any(len(shape) == 3 for shape in self.layer_shapes)

    @functools.cached_property
    def layer_index(self) -> dict[str, int]:
        """Layer name -> its 1-based position; "input" -> 0."""
        named = {layer.name: l for l, layer in enumerate(self.layers, 1) if layer.name}
        return {"input": 0, **named}

    def mark(self, path: str) -> tuple[int, int] | None:
        """The 1-based (line, column) of the value at a YAML path, if it was read from a file."""
        for where, line, column in self.marks:
            if where == path:
                return line, column
        return None


def load_arch(path: str | os.PathLike[str]) -> Arch:
    """Read and validate an architecture file."""
    filename = os.fspath(path)
    try:
        with open(filename, "rb") as handle:
            data = handle.read(reader.MAX_BYTES + 1)
    except OSError as err:
        raise SpecError(
            f"cannot read file: {err.strerror or err}",
            file=filename,
            fix="check the path and the file's permissions",
        ) from None
    return parse_arch(data, filename)


def parse_arch(data: bytes | str, filename: str = "<string>") -> Arch:
    """Validate the text of an architecture file; ``filename`` is used in messages and names."""
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as err:
            raise SpecError(
                f"the text cannot be encoded as UTF-8 ({err.reason})", file=filename
            ) from None
    raw = bytes(data)
    document = reader.load_document(raw, filename)
    checker = _Checker(filename, document.marks, document.key_marks)
    arch = _build(checker, document.value, filename)
    marks = tuple((p, line, col) for p, (line, col) in document.marks.items() if p)
    return dataclasses.replace(arch, source_sha256=hashlib.sha256(raw).hexdigest(), marks=marks)


def arch_from_mapping(doc: Mapping[str, Any], source: str = "<dict>") -> Arch:
    """Validate an already-parsed document (plain dicts and lists) like a file."""
    return _build(_Checker(source, {}, {}), doc, source)


class _Checker:
    """Makes located SpecErrors and checks the generic shapes (keys, integers, choices)."""

    def __init__(
        self, source: str, marks: Mapping[str, reader.Mark], key_marks: Mapping[str, reader.Mark]
    ) -> None:
        self.source = source
        self.marks = marks
        self.key_marks = key_marks

    def locate(self, path: str, key: bool = False) -> reader.Mark | None:
        """The mark of ``path`` (its key if ``key``), else of its nearest located parent."""
        if key and path in self.key_marks:
            return self.key_marks[path]
        while path not in self.marks and path:
            cut = max(path.rfind("."), path.rfind("["))
            path = path[: max(cut, 0)]
        return self.marks.get(path)

    def fail(
        self,
        path: str,
        message: str,
        fix: str | None = None,
        key: bool = False,
        error: type[SpecError] = SpecError,
    ) -> SpecError:
        """A SpecError at ``path``."""
        line, column = self.locate(path, key) or (None, None)
        return error(
            message, file=self.source, line=line, column=column, path=path or None, fix=fix
        )

    def mapping(
        self, value: Any, path: str, allowed: Sequence[str], required: Sequence[str], what: str
    ) -> Mapping[str, Any]:
        """A mapping with only ``allowed`` keys and all ``required`` ones."""
        if not isinstance(value, Mapping):
            raise self.fail(
                path,
                f"{what} must be a mapping, got {_describe(value)}",
                f"write it as keys: {', '.join(required or allowed)}",
            )
        for key in value:
            if not isinstance(key, str):
                raise self.fail(path, f"keys must be strings, got {_describe(key)}")
            if key not in allowed:
                raise self.fail(
                    reader.join(path, key),
                    f"unknown key '{key}' in {what}{_did_you_mean(key, allowed)}",
                    f"allowed keys: {', '.join(allowed)}",
                    key=True,
                )
        missing = [key for key in required if key not in value]
        if missing:
            names = ", ".join(f"'{key}'" for key in missing)
            raise self.fail(
                path,
                f"{what} is missing the required key{'s' * (len(missing) > 1)} {names}",
                f"add {', '.join(missing)}",
            )
        return value

    def integer(self, value: Any, path: str, low: int, high: int) -> int:
        """An integer in [low, high]; bools, floats and strings are refused with a fix."""
        what = path.rsplit(".", 1)[-1]
        if isinstance(value, Integral) and not isinstance(value, bool):
            if low <= int(value) <= high:
                return int(value)
            raise self.fail(
                path,
                f"{what} must be between {low:,} and {high:,}, got {int(value):,}",
                f"use a value from {low} to {high:,}",
            )
        fix = f"write a whole number such as {low}"
        if isinstance(value, float) and value.is_integer():
            fix = f"write {int(value)}"
        elif isinstance(value, str) and value.strip().isdigit():
            fix = f"remove the quotes: {value.strip()}"
        raise self.fail(path, f"{what} must be a whole number, got {_describe(value)}", fix)

    def choice(self, value: Any, path: str, allowed: Sequence[str], what: str) -> str:
        """A string among ``allowed``."""
        if not isinstance(value, str):
            raise self.fail(
                path,
                f"{what} must be a string, got {_describe(value)}",
                f"use one of: {', '.join(allowed)}",
            )
        if value not in allowed:
            raise self.fail(
                path,
                f"unknown {what} '{value}'{_did_you_mean(value, allowed)}",
                f"use one of: {', '.join(allowed)}",
            )
        return value


def _describe(value: Any) -> str:
    """A short description of a value's YAML type for messages."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return "a mapping" if isinstance(value, Mapping) else f"a {type(value).__name__}"


def _did_you_mean(word: str, allowed: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest allowed word, or ''."""
    close = difflib.get_close_matches(word, list(allowed), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _build(c: _Checker, doc: Any, source: str) -> Arch:
    """Validate every field (cheap checks first, expressions last) and build the Arch."""
    if not isinstance(doc, Mapping):
        raise c.fail(
            "",
            "the file must be a mapping with keys input, layers, loss",
            "start from:  input: 2 / layers: [{units: 1, activation: sigmoid}] / loss: mse",
        )
    c.mapping(doc, "", TOP_KEYS, REQUIRED_KEYS, "the architecture")
    declared = doc.get("activations")
    custom = _custom_activations(c, {} if declared is None else declared)
    shape, vocab = _input_shape(c, doc)
    sequence = len(shape) == 2 or vocab > 0
    layout = c.choice(
        doc.get("layout", "row" if sequence else "column"), "layout", LAYOUTS, "layout"
    )
    if sequence and layout != "row":
        raise c.fail(
            "layout",
            "a sequence input is row layout (one sample, then its T positions, first)",
            "remove  layout: column  (or write layout: row)",
        )
    if len(shape) == 3 and layout != "row":
        raise c.fail(
            "layout" if "layout" in doc else "input",
            "an image input [C, H, W] needs layout: row (images are NCHW, one sample first)",
            "add  layout: row",
        )
    arch = Arch(
        name=_name(c, doc, source),
        input=math.prod(shape),
        input_shape=shape if len(shape) in (2, 3) or vocab else (),
        vocab=vocab,
        layers=_layers(c, doc["layers"], custom, shape, vocab),
        loss=_loss(c, doc["loss"]),
        layout=layout,
        dtype=c.choice(doc.get("dtype", "float64"), "dtype", DTYPES, "dtype"),
        reduction=c.choice(doc.get("reduction", "mean"), "reduction", REDUCTIONS, "reduction"),
        l2=_l2(c, doc.get("l2", 0.0)),
        activations=custom,
        source=source,
    )
    _check_parameters(c, arch)
    expressions = [(reader.join("activations", name), text, {"x": _X}) for name, text in custom]
    if arch.loss.expr is not None:
        expressions.append(("loss.expr", arch.loss.expr, _LOSS_VARIABLES))
    share = min(MAX_SYMPY_CALLS, SYMPY_CALLS_PER_FILE // max(len(expressions), 1))
    build = functools.partial(parse_expression, budget=share)
    for check in (check_expression, build):  # all cheap checks before any SymPy
        for path, text, variables in expressions:
            _expression(c, check, path, text, variables)
    return arch


def _input_shape(c: _Checker, doc: Mapping[str, Any]) -> tuple[tuple[int, ...], int]:
    """(shape, vocab): (d,) for a vector input, (T, d) for a sequence: [T, d], (C, H, W) for
    an image: [C, H, W], all with vocab 0; (T,) and V for token ids: {tokens: T, vocab: V}."""
    value = doc["input"]
    if isinstance(value, Mapping):
        c.mapping(value, "input", ("tokens", "vocab"), ("tokens", "vocab"), "a token input")
        tokens = c.integer(value["tokens"], "input.tokens", 1, MAX_UNITS)
        return (tokens,), c.integer(value["vocab"], "input.vocab", 1, MAX_UNITS)
    if not isinstance(value, Sequence) or isinstance(value, str):
        return (c.integer(value, "input", 1, MAX_UNITS),), 0
    if len(value) not in (2, 3):
        raise c.fail(
            "input",
            f"a sequence input is [T, d] and an image input [C, H, W], got {len(value)} items",
            "write e.g.  input: [16, 8]  (positions, features), input: [1, 28, 28]  (channels, "
            "height, width), or one number",
        )
    shape = tuple(c.integer(v, f"input[{k}]", 1, MAX_UNITS) for k, v in enumerate(value))
    what = "sequence" if len(shape) == 2 else "image"
    if math.prod(shape) > MAX_UNITS:
        raise c.fail(
            "input",
            f"the {what} has {math.prod(shape):,} values per sample (at most {MAX_UNITS:,})",
            f"use a smaller {what}",
        )
    return shape, 0


def _name(c: _Checker, doc: Mapping[str, Any], source: str) -> str:
    """The given name (validated) or one derived from the file's stem."""
    if "name" not in doc:
        return _default_name(source)
    name = doc["name"]
    fix = f"use a Python identifier such as '{names.suggest(str(name), 'net')}'"
    if not isinstance(name, str):
        raise c.fail("name", f"name must be a string, got {_describe(name)}", fix)
    if "/" in name or "\\" in name:
        raise c.fail("name", f"name must not contain '/' or '\\': {name!r}", fix)
    refusal = names.refusal("name", name)
    if refusal is not None:
        raise c.fail("name", refusal, fix)
    return name


def _default_name(source: str) -> str:
    """A module name from a file name: its stem made into an identifier."""
    base = re.split(r"[\\/]", source)[-1]
    dot = base.rfind(".")
    stem = base[:dot] if dot > 0 else base
    if source.startswith("<") and source.endswith(">"):
        return "net"
    return names.suggest(stem, "net")


def _custom_activations(c: _Checker, value: Any) -> tuple[tuple[str, str], ...]:
    """Custom activation names and texts, sorted by name (expressions are checked later)."""
    if not isinstance(value, Mapping):
        raise c.fail(
            "activations",
            f"activations must be a mapping, got {_describe(value)}",
            'write e.g.  activations: {mish: "x*tanh(softplus(x))"}',
        )
    if len(value) > MAX_CUSTOM_ACTIVATIONS:
        raise c.fail(
            "activations",
            f"too many custom activations ({len(value)}, at most {MAX_CUSTOM_ACTIVATIONS})",
            "remove the unused ones",
        )
    for name, text in value.items():
        path = reader.join("activations", str(name))
        refusal = names.refusal("a custom activation name", str(name))
        if refusal is not None:
            fix = f"rename it, e.g. '{names.suggest(str(name), 'my_activation')}'"
            raise c.fail(path, refusal, fix, key=True)
        if name in BUILTIN_ACTIVATIONS or name in ACTIVATION_ALIASES:
            raise c.fail(
                path,
                f"'{name}' is already a built-in activation",
                f"rename it, e.g. 'my_{name}'",
                key=True,
            )
        if not isinstance(text, str):
            raise c.fail(
                path,
                f"the activation must be an expression string in x, got {_describe(text)}",
                'quote it, e.g. "2*x"',
            )
    return tuple(sorted(value.items()))


def _layers(
    c: _Checker,
    value: Any,
    custom: tuple[tuple[str, str], ...],
    input_shape: tuple[int, ...],
    vocab: int = 0,
) -> tuple[Layer, ...]:
    """The layer list; each entry a mapping with a type's keys (schema v2, v1 entries are
    dense layers); softmax over a last axis of 2 or more, not on an image; names unique;
    `from` names an earlier layer; image kinds read images, the others vectors or sequences;
    a token input's first layer, and only it, is an embedding; the output is a vector or a
    sequence."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise c.fail(
            "layers",
            f"layers must be a list, got {_describe(value)}",
            "write one '- units: N' / '  activation: NAME' entry per layer",
        )
    if not value:
        raise c.fail(
            "layers",
            "layers must not be empty",
            "add at least one layer, e.g. - {units: 1, activation: sigmoid}",
        )
    if len(value) > MAX_LAYERS:
        raise c.fail("layers", f"too many layers ({len(value):,}, at most {MAX_LAYERS:,})")
    activations = [*BUILTIN_ACTIVATIONS, *ACTIVATION_ALIASES, *(name for name, _ in custom)]
    shapes = {"input": input_shape}
    declared = {
        entry["name"]: index
        for index, entry in enumerate(value)
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
    }
    layers: list[Layer] = []
    for index, entry in enumerate(value):
        path = f"layers[{index}]"
        kind = _kind(c, entry, path)
        previous = layers[-1].out_shape if layers else input_shape
        if KINDS[kind].keeps_size and "units" in entry:
            raise c.fail(
                f"{path}.units",
                f"a {kind} layer keeps the size of its input "
                f"{_shape_text(previous) if len(previous) > 1 else f'({previous[0]})'}; "
                "it takes no units",
                "remove units (put a dense layer before it to change the size)",
                key=True,
            )
        if not KINDS[kind].activation and "activation" in entry:
            raise c.fail(
                f"{path}.activation",
                f"a {kind} layer takes no activation",
                "remove activation (put it on the layer before, which the window reads)",
                key=True,
            )
        c.mapping(entry, path, keys_of(kind), KINDS[kind].required, f"layer {index} ({kind})")
        if vocab and index == 0 and kind != "embedding":
            raise c.fail(
                f"{path}.type" if "type" in entry else path,
                f"a token input holds integer ids, which a {kind} layer cannot read",
                "add an embedding as the first layer:  - {type: embedding, dim: 32}",
            )
        if kind == "embedding" and not (vocab and index == 0):
            raise c.fail(
                f"{path}.type",
                "an embedding reads token ids: it is the first layer of a token input",
                "declare  input: {tokens: T, vocab: V}  and put the embedding first"
                if not vocab
                else "keep one embedding, as the first layer",
            )
        if kind != "embedding":
            _check_input_kind(c, path, kind, previous)
        activation = c.choice(
            entry.get("activation", "identity"), f"{path}.activation", activations, "activation"
        )
        activation = ACTIVATION_ALIASES.get(activation, activation)
        layer = _layer_fields(c, entry, path, kind, activation, previous, (shapes, declared))
        if activation == "softmax" and len(layer.out_shape) == 3:
            raise c.fail(
                f"{path}.activation",
                f"softmax acts over a vector's units or each position's features, but this "
                f"layer outputs the image {_shape_text(layer.out_shape)}",
                "put it after a flatten, or use an elementwise activation here",
            )
        if activation == "softmax" and layer.out_shape[-1] == 1:
            raise c.fail(
                f"{path}.activation",
                "softmax over a single entry is the constant 1 (nothing flows back through it)",
                "give the layer 2 or more units, or use sigmoid",
            )
        if kind == "embedding":
            layer = dataclasses.replace(layer, vocab=vocab)
        if layer.tie is not None:
            _check_tie(c, f"{path}.tie", layer, previous, layers)
        if layer.name is not None:
            shapes[layer.name] = layer.out_shape
        layers.append(layer)
    if len(layers[-1].out_shape) == 3:
        raise c.fail(
            f"layers[{len(layers) - 1}]",
            f"the network ends in an image {_shape_text(layers[-1].out_shape)}; "
            "its output must be a vector per sample",
            "add a flatten and a dense layer at the end: - {type: flatten} / "
            "- {units: 10, activation: softmax}",
        )
    return tuple(layers)


def _check_tie(
    c: _Checker, path: str, layer: Layer, previous: tuple[int, ...], layers: list[Layer]
) -> None:
    """A tied dense layer uses an earlier embedding's E (V, dim) as its weight: it has V
    units and reads vectors of dim."""
    found = [earlier for earlier in layers if earlier.name == layer.tie]
    if not found or found[0].type != "embedding":
        what = f"the {found[0].type} layer '{layer.tie}'" if found else f"'{layer.tie}'"
        raise c.fail(
            path,
            f"tie names {what}, not an earlier embedding layer",
            "write the name of the embedding layer (give it one with name:)",
        )
    table = found[0]
    units, dim = layer.out_shape[-1], table.out_shape[-1]
    if units != table.vocab or previous[-1] != dim:
        raise c.fail(
            path,
            f"a layer tied to '{layer.tie}' uses its table E ({table.vocab}, {dim}) as its "
            f"weight, so it needs units: {table.vocab} and input features {dim}; it has "
            f"units: {units} and input features {previous[-1]}",
            f"write  units: {table.vocab}  and put it after a layer of {dim} features",
        )


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]" if len(shape) > 1 else f"({shape[0]},)"


def _check_input_kind(c: _Checker, path: str, kind: str, previous: tuple[int, ...]) -> None:
    """Image kinds read an image [C, H, W]; dense and the norms a vector or a sequence (at
    each position); batch norm not a sequence."""
    image, sequence = len(previous) == 3, len(previous) == 2
    if KINDS[kind].image and not image and not (sequence and KINDS[kind].also_sequence):
        what = "sequence" if sequence else "vector"
        raise c.fail(
            f"{path}.type",
            f"a {kind} layer reads an image [C, H, W], but its input is the {what} "
            f"{_shape_text(previous)}",
            "a sequence's layers are dense, layernorm and add, each acting at every position, "
            "attention, and flatten (to a vector of T*d)"
            if sequence
            else "declare the input as [C, H, W] and keep image layers before the flatten",
        )
    if KINDS[kind].mixes_positions and not sequence:
        raise c.fail(
            f"{path}.type",
            f"{kind} mixes the positions of a sequence, but its input is the "
            f"{'image' if image else 'vector'} {_shape_text(previous)}",
            "declare the input as a sequence, input: [T, d], or as token ids with an embedding",
        )
    if sequence and kind == "batchnorm":
        raise c.fail(
            f"{path}.type",
            f"batch norm is not defined here for the sequence {_shape_text(previous)}",
            "use  type: layernorm  (it normalises each position over its features)",
        )
    if image and kind == "dense":
        raise c.fail(
            path,
            f"a dense layer reads a vector, but its input is the image {_shape_text(previous)}",
            "put a - {type: flatten} layer before it",
        )


def _kind(c: _Checker, entry: Any, path: str) -> str:
    """The layer's type, checked (dense when absent)."""
    if not isinstance(entry, Mapping):
        raise c.fail(
            path,
            f"layer {path[7:-1]} must be a mapping, got {_describe(entry)}",
            "write it as keys, e.g. {units: 4, activation: relu}",
        )
    return c.choice(entry_kind(entry), f"{path}.type", tuple(KINDS), "layer type")


def _layer_fields(
    c: _Checker,
    entry: Mapping[str, Any],
    path: str,
    kind: str,
    activation: str,
    previous: tuple[int, ...],
    names: tuple[dict[str, tuple[int, ...]], Mapping[str, int]],
) -> Layer:
    """One validated layer: its name, its kind's keys, and the shape it outputs. names: the
    shapes of the layers named so far, and the index of every name declared in the file."""
    shapes, declared = names
    name = _layer_name(c, entry.get("name"), f"{path}.name", shapes)

    def fail(key: str) -> Callable[[str, str], SpecError]:
        return lambda message, fix: c.fail(f"{path}.{key}", message, fix)

    units, bias, source, eps = math.prod(previous), True, None, DEFAULT_EPS
    shape, window = previous if len(previous) in (2, 3) else (), None
    positions, tie = "learned", None
    if kind == "embedding":
        dim = c.integer(entry["dim"], f"{path}.dim", 1, MAX_UNITS)
        positions = c.choice(
            entry.get("positions", "learned"), f"{path}.positions", POSITIONS, "positions"
        )
        shape = (previous[0], dim)
        if math.prod(shape) > MAX_UNITS:
            raise c.fail(
                f"{path}.dim",
                f"the embedding outputs {math.prod(shape):,} values per sample (at most "
                f"{MAX_UNITS:,})",
                "use a smaller dim",
            )
    if kind == "dense" and "tie" in entry:
        tie = entry["tie"]
        if not isinstance(tie, str):
            raise c.fail(
                f"{path}.tie",
                f"tie must be a layer name, got {_describe(tie)}",
                "write the name of an embedding layer",
            )
    if kind == "dense":
        units = c.integer(entry["units"], f"{path}.units", 1, MAX_UNITS)
        if len(previous) == 2:  # a sequence: the same dense layer at every position
            shape = (previous[0], units)
            if math.prod(shape) > MAX_UNITS:
                raise c.fail(
                    f"{path}.units",
                    f"the layer's output has {math.prod(shape):,} values per sample (at most "
                    f"{MAX_UNITS:,})",
                    "use fewer units",
                )
    if kind in ("dense", "conv2d", "attention", *RECURRENT):
        bias = check_bias(entry.get("bias", True), fail("bias"))
    heads, causal = 1, False
    if kind == "attention":
        heads, causal = _attention_fields(c, entry, path, previous)
    if kind == "add":
        source = _source(c, entry["from"], f"{path}.from", names, previous)
    if "eps" in entry:
        eps = check_eps(entry["eps"], fail("eps"))
    momentum = DEFAULT_MOMENTUM
    if "momentum" in entry:
        momentum = check_momentum(entry["momentum"], fail("momentum"))
    if kind == "conv2d":
        c.integer(entry["filters"], f"{path}.filters", 1, MAX_UNITS)
    if kind in ("conv2d", "maxpool2d", "avgpool2d"):
        window, shape = check_window(
            entry, kind, previous, lambda key, msg, fix: c.fail(f"{path}.{key}", msg, fix or None)
        )
        _check_image_size(c, path, kind, previous, window, shape)
    if kind == "flatten":
        shape = ()
    returns, nonlinearity = "sequence", "tanh"
    if kind in RECURRENT:
        units, shape, returns, nonlinearity = _recurrent_fields(c, entry, path, kind, previous)
    units = math.prod(shape) if shape else units
    return Layer(
        units,
        activation,
        kind,
        name,
        bias,
        source,
        eps,
        shape,
        window,
        momentum,
        positions,
        tie=tie,
        heads=heads,
        causal=causal,
        returns=returns,
        nonlinearity=nonlinearity,
    )


MAX_STEPS = 100_000  # positions a recurrent layer loops over (one step at a time)


def _recurrent_fields(
    c: _Checker, entry: Mapping[str, Any], path: str, kind: str, previous: tuple[int, ...]
) -> tuple[int, tuple[int, ...], str, str]:
    """units, the output shape ((T, units) or () for return: last), return, nonlinearity."""
    T = previous[0]
    units = c.integer(entry["units"], f"{path}.units", 1, MAX_UNITS)
    returns = c.choice(entry.get("return", "sequence"), f"{path}.return", RETURNS, "return")
    nonlinearity = "tanh"
    if "nonlinearity" in entry:
        nonlinearity = c.choice(
            entry["nonlinearity"], f"{path}.nonlinearity", NONLINEARITIES, "nonlinearity"
        )
    if T > MAX_STEPS:
        raise c.fail(
            f"{path}.type",
            f"a {kind} layer steps through the positions one at a time; this sequence has "
            f"{T:,} (at most {MAX_STEPS:,})",
            "use shorter sequences",
        )
    kept = RECURRENT[kind] * 2 + 3  # the widest kept row, in blocks of units (lstm: 7; 2 G + 3)
    if T * units * kept > MAX_UNITS * 8:
        raise c.fail(
            f"{path}.units",
            f"the layer keeps about {T * units * kept:,} values per sample for its backward pass "
            f"(at most {MAX_UNITS * 8:,})",
            "use fewer units or shorter sequences",
        )
    if returns == "last":
        return units, (), returns, nonlinearity
    if T * units > MAX_UNITS:
        raise c.fail(
            f"{path}.units",
            f"the layer's output has {T * units:,} values per sample (at most {MAX_UNITS:,})",
            "use fewer units, or return: last",
        )
    return units, (T, units), returns, nonlinearity


MAX_SCORES = 16_000_000  # attention scores per sample (heads T^2), as MAX_UNITS for arrays


def _attention_fields(
    c: _Checker, entry: Mapping[str, Any], path: str, previous: tuple[int, ...]
) -> tuple[int, bool]:
    """heads (dividing d) and causal, on a sequence of at most MAX_SCORES scores."""
    T, d = previous
    heads = c.integer(entry.get("heads", 1), f"{path}.heads", 1, MAX_UNITS)
    if d % heads:
        divisors = [k for k in range(1, d + 1) if d % k == 0]
        raise c.fail(
            f"{path}.heads",
            f"heads: {heads} does not divide the input's {d} features (each head takes d/heads)",
            f"use one of {', '.join(map(str, divisors[:12]))}",
        )
    causal = check_flag(
        entry.get("causal", False), "causal", lambda m, f: c.fail(f"{path}.causal", m, f)
    )
    if heads * T * T > MAX_SCORES:
        raise c.fail(
            path,
            f"this attention layer has {heads} x {T}^2 = {heads * T * T:,} scores per sample "
            f"(at most {MAX_SCORES:,})",
            "use fewer positions or heads",
        )
    return heads, causal


def _check_image_size(
    c: _Checker,
    path: str,
    kind: str,
    previous: tuple[int, ...],
    window: Window,
    shape: tuple[int, ...],
) -> None:
    """Refuse, before anything is allocated, outputs and unfolded inputs too large."""
    if math.prod(shape) > MAX_UNITS:
        raise c.fail(
            path,
            f"this {kind} outputs {_shape_text(shape)} = {math.prod(shape):,} values per "
            f"sample (at most {MAX_UNITS:,})",
            "use fewer filters, a larger stride or a smaller input",
        )
    columns = previous[0] * window.area * shape[1] * shape[2]
    if kind == "conv2d" and columns > MAX_COLUMNS:
        raise c.fail(
            path,
            f"this conv2d unfolds its input into {columns:,} values per sample "
            f"(C kh kw Ho Wo; at most {MAX_COLUMNS:,})",
            "use a smaller kernel, a larger stride or a smaller input",
        )


def _layer_name(c: _Checker, name: Any, path: str, taken: Mapping[str, Any]) -> str | None:
    """An identifier not used before; "input" is reserved."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise c.fail(
            path, f"a layer name must be a string, got {_describe(name)}", "write e.g. block1"
        )
    refusal = names.refusal("a layer name", name)
    if refusal is not None:
        raise c.fail(path, refusal, f"rename it, e.g. '{names.suggest(name, 'block')}'")
    if name == "input":
        raise c.fail(path, "'input' is reserved for the network's input", "choose another name")
    if name in taken:
        raise c.fail(path, f"the name '{name}' is used by an earlier layer", "names must be unique")
    return str(name)


def _source(
    c: _Checker,
    value: Any,
    path: str,
    names: tuple[Mapping[str, tuple[int, ...]], Mapping],
    previous: tuple[int, ...],
) -> str:
    """The `from` of an add: an earlier layer's name (or input) with the previous layer's shape."""
    sizes, declared = names
    if not isinstance(value, str):
        raise c.fail(
            path,
            f"from must be a layer name, got {_describe(value)}",
            "write the name of an earlier layer (give it one with name:), or input",
        )
    if value not in sizes and value in declared:
        raise c.fail(
            path,
            f"from names layer {declared[value]} ('{value}'), "
            "which is not computed before this one",
            "an add can only read a layer computed before it; move it, or name an earlier layer",
        )
    if value not in sizes:
        known = ", ".join(sizes)
        raise c.fail(
            path,
            f"from names no earlier layer: '{value}'{_did_you_mean(value, list(sizes))}",
            f"name a layer above this one (known: {known}); a layer can only add what was "
            "computed before it",
        )
    if sizes[value] != previous:
        raise c.fail(
            path,
            f"shape mismatch at add: the previous layer gives {_shape_text(previous)}, "
            f"'{value}' gives {_shape_text(sizes[value])}",
            "add tensors of the same size (put a dense layer of that size before the add)",
        )
    return value


def _loss(c: _Checker, value: Any) -> Loss:
    """A built-in loss name or {expr: "..."} (the expression is checked later)."""
    if isinstance(value, Mapping):
        c.mapping(value, "loss", ("expr",), ("expr",), "the loss")
        text = value["expr"]
        if not isinstance(text, str):
            raise c.fail(
                "loss.expr",
                f"the loss expression must be a string, got {_describe(text)}",
                'quote it, e.g. "(yhat - y)**2"',
            )
        return Loss("expr", text)
    if isinstance(value, str) and value not in LOSSES and any(ch in value for ch in "()*+-/"):
        raise c.fail(
            "loss", f"unknown loss '{value}'", f'for a custom loss write  loss: {{expr: "{value}"}}'
        )
    return Loss(c.choice(value, "loss", LOSSES, "loss"))


def _l2(c: _Checker, value: Any) -> float:
    """The L2 coefficient: a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, Real):
        fix = "write a number such as 0.0001"
        if isinstance(value, str):
            fix = "remove the quotes" if _is_number(value) else fix
        raise c.fail("l2", f"l2 must be a number, got {_describe(value)}", fix)
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise c.fail(
            "l2",
            f"l2 must be a finite number >= 0, got {value}",
            "use 0 for no weight decay, or a small positive value",
        )
    return number


def _is_number(text: str) -> bool:
    """Whether float() accepts the text."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def parameter_count(arch: Arch) -> int:
    """Every parameter's entries, as each kind's registry entry gives them (a tied weight
    counted once, with the embedding that owns it)."""
    count = 0
    for shape, layer in zip(arch.layer_shapes, arch.layers, strict=False):
        for _, size, _, _ in KINDS[layer.type].parameters(layer, shape)[int(bool(layer.tie)) :]:
            count += math.prod(size)
    return count


def _check_parameters(c: _Checker, arch: Arch) -> None:
    """Refuse networks with more than MAX_PARAMETERS weights and biases."""
    count = parameter_count(arch)
    if count > MAX_PARAMETERS:
        raise c.fail(
            "layers",
            f"the network has {count:,} parameters (at most {MAX_PARAMETERS:,})",
            "use fewer or smaller layers",
        )


def _expression(
    c: _Checker, check: Callable[..., Any], path: str, text: str, variables: Mapping[str, Any]
) -> None:
    """Run an expression check, re-raising its error at the YAML position."""
    try:
        check(text, variables)
    except ExpressionError as err:
        raise c.fail(path, err.message, err.fix, error=ExpressionError) from err
