"""Differential fuzzing of `symbp generate`: random networks and expressions, each generated,
imported and checked against an independent evaluation.

The reference here shares nothing with symbp but the file format: expressions are parsed with
Python's `ast` and evaluated by a small NumPy walker below (no SymPy, no symbp printer), on
dual numbers, so the same walk gives values and exact directional derivatives (forward mode,
derivative rules written out in `_RULES`). For each random case:

- the module's forward, loss, gradients and jvp must equal the reference wherever the
  reference is finite; hvp must match central differences of the module's own gradients;
- where the reference evaluates without any floating-point error, loss_and_grads must too,
  under np.errstate(all="raise", under="ignore") with warnings as errors;
- at inputs scaled by 1000, where the reference loss (and the gradient) is finite, the
  module's must be finite as well;
- a file symbp refuses must be refused with a clean SpecError/ExpressionError, never an
  internal error or a DerivationError ("cannot print ...");
- where the array-API target takes the network (row layout, no images), its module
  (<name>_xp.py, on NumPy arrays) passes the same checks.

The reference computes built-in losses as a careful library would (from the logits: log a
and log(1 - a) after a sigmoid or a softmax, log a after a softplus); everything else exactly
as written, with stable sigmoid, softplus and softmax.

Run long:  python tests/fuzzing.py --examples 2000 [--seed N] [--graphs | --images | --sequences]
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np

ROOT = Path(__file__).resolve().parent.parent

BUILTIN_HIDDEN = [
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "softplus",
    "swish",
    "gelu",
]
# softmax over the last axis: on vectors and sequences (image layers keep BUILTIN_HIDDEN)
HIDDEN_OR_SOFTMAX = [*BUILTIN_HIDDEN, "softmax"]
RECURRENT_KINDS = ("rnn", "lstm", "gru")
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
UNARY = [
    "exp",
    "log",
    "sqrt",
    "abs",
    "sin",
    "cos",
    "tan",
    "sinh",
    "cosh",
    "tanh",
    "atan",
    "erf",
    "sigmoid",
    "softplus",
]
NUMBERS = ["0", "1", "2", "3", "0.5", "0.1", "1.702", "0.044715", "10", "pi", "e", "2/4", "1e-3"]
EXPONENTS = ["2", "3", "0", "-1", "-2", "0.5", "(1/3)", "1.5", "4", "(2/3)", "-0.5"]


# ----------------------------------------------------------------------------- grammar


def expressions(variables: list[str], depth: int = 4) -> st.SearchStrategy[str]:
    """Expression text from the README's grammar: numbers, pi, e, variables, + - * / **,
    unary minus, the unary functions, min and max, nested."""
    leaves = st.one_of(
        st.sampled_from(variables), st.sampled_from(variables), st.sampled_from(NUMBERS)
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        )
        power = st.tuples(inner, st.sampled_from(EXPONENTS)).map(lambda t: f"({t[0]})**{t[1]}")
        call = st.tuples(st.sampled_from(UNARY), inner).map(lambda t: f"{t[0]}({t[1]})")
        minmax = st.tuples(
            st.sampled_from(["min", "max"]), st.lists(inner, min_size=2, max_size=3)
        ).map(lambda t: f"{t[0]}({', '.join(t[1])})")
        negate = inner.map(lambda t: f"-({t})")
        return st.one_of(binary, binary, power, call, call, minmax, negate)

    return st.recursive(leaves, extend, max_leaves=depth * 2)


@st.composite
def architectures(draw: Callable) -> dict:
    """A random architecture document: 1-3 layers, built-in and custom activations, every
    output activation, built-in and expression losses, both layouts and reductions, l2."""
    customs = {f"f{i}": draw(expressions(["x"])) for i in range(draw(st.integers(0, 2)))}
    hidden_choices = HIDDEN_OR_SOFTMAX + list(customs)
    depth = draw(st.integers(1, 3))
    layers = [
        {"units": draw(st.integers(1, 3)), "activation": draw(st.sampled_from(hidden_choices))}
        for _ in range(depth - 1)
    ]
    output = draw(st.sampled_from([*hidden_choices, "softmax", "sigmoid", "softmax"]))
    units = draw(st.integers(2, 3)) if output == "softmax" else draw(st.integers(1, 3))
    layers.append({"units": units, "activation": output})
    loss: Any = draw(st.sampled_from(["mse", "bce", "cross_entropy", "expr", "expr"]))
    if loss == "expr":
        loss = {"expr": draw(expressions(["yhat", "y"]))}
    doc = {
        "name": "fuzz",
        "input": draw(st.integers(1, 3)),
        "layers": layers,
        "loss": loss,
        "layout": draw(st.sampled_from(["column", "row"])),
        "reduction": draw(st.sampled_from(["mean", "sum"])),
        "l2": draw(st.sampled_from([0.0, 0.0, 0.1])),
    }
    if customs:
        doc["activations"] = customs
    return _no_softmax_of_one(doc)


@st.composite
def graphs(draw: Callable) -> dict:
    """A random graph of layer kinds: dense (with or without bias), add (from the input or an
    earlier named layer of the right size), layernorm and batchnorm, 2-6 layers."""
    width = draw(st.integers(1, 3))
    sizes = {"input": width}
    layers: list[dict] = []
    previous = width
    for k in range(draw(st.integers(1, 5))):
        kinds = ["dense", "dense", "layernorm", "batchnorm"]
        sources = [name for name, size in sizes.items() if size == previous]
        kinds += ["add", "add"] if sources else []
        kind = draw(st.sampled_from(kinds))
        layer: dict[str, Any] = {"activation": draw(st.sampled_from(HIDDEN_OR_SOFTMAX))}
        if kind == "dense":
            previous = draw(st.integers(1, 3))
            layer.update(units=previous, bias=draw(st.booleans()))
        else:
            layer["type"] = kind
        if kind == "add":
            layer["from"] = draw(st.sampled_from(sources))
        if kind in ("layernorm", "batchnorm") and draw(st.booleans()):
            layer["eps"] = draw(st.sampled_from([1e-5, 0.01, 0.5]))
        if draw(st.booleans()):
            layer["name"] = f"h{k}"
            sizes[f"h{k}"] = previous
        layers.append(layer)
    output = draw(st.sampled_from(["identity", "sigmoid", "softmax", "tanh"]))
    units = draw(st.integers(2, 3)) if output == "softmax" else draw(st.integers(1, 3))
    layers.append({"units": units, "activation": output, "bias": draw(st.booleans())})
    loss = {"softmax": "cross_entropy", "sigmoid": "bce"}.get(output, "mse")
    return _no_softmax_of_one(
        {
            "name": "fuzz",
            "input": width,
            "layers": layers,
            "loss": loss,
            "layout": draw(st.sampled_from(["column", "row"])),
            "reduction": draw(st.sampled_from(["mean", "sum"])),
            "l2": draw(st.sampled_from([0.0, 0.1])),
        }
    )


@st.composite
def sequence_graphs(draw: Callable) -> dict:
    """A random sequence network: real sequences [T, d] or token ids with an embedding
    (learned, sinusoidal or no positions), then 1-4 layers of dense (at every position),
    layernorm, add, attention (heads dividing the width, causal or not, bias or not) and
    rnn (tanh or relu), lstm, gru (bias or not), and a dense output at every position (tied
    to the embedding's table, sometimes), or a flatten (T*d per sample) or a recurrent layer
    returning its last h (sometimes a batch norm over the samples after either) and a dense
    output per sample."""
    T = draw(st.integers(1, 3))
    tokens = draw(st.booleans())
    layers: list[dict] = []
    if tokens:
        vocab, width = draw(st.integers(2, 4)), draw(st.integers(1, 4))
        positions = draw(st.sampled_from(["learned", "sinusoidal", "none"]))
        act = draw(st.sampled_from(BUILTIN_HIDDEN))
        layers.append(
            {"type": "embedding", "dim": width, "positions": positions, "name": "emb",
             "activation": act}
        )  # fmt: skip
        first: Any = {"tokens": T, "vocab": vocab}
        sizes = {"emb": width}
    else:
        width = draw(st.integers(1, 4))
        first, sizes = [T, width], {"input": width}
    for k in range(draw(st.integers(1, 4))):
        kinds = ["dense", "layernorm", "attention", "attention", "rnn", "lstm", "gru"]
        sources = [name for name, size in sizes.items() if size == width]
        kinds += ["add"] if sources else []
        kind = draw(st.sampled_from(kinds))
        layer: dict[str, Any] = {"activation": draw(st.sampled_from(HIDDEN_OR_SOFTMAX))}
        if kind == "dense":
            width = draw(st.integers(1, 4))
            layer.update(units=width, bias=draw(st.booleans()))
        else:
            layer["type"] = kind
        if kind == "add":
            layer["from"] = draw(st.sampled_from(sources))
        if kind == "attention":
            heads = draw(st.sampled_from([h for h in (1, 2, 4) if width % h == 0]))
            layer.update(heads=heads, causal=draw(st.booleans()), bias=draw(st.booleans()))
        if kind in RECURRENT_KINDS:
            width = draw(st.integers(1, 4))
            layer.update(units=width, bias=draw(st.booleans()))
            if kind == "rnn":
                layer["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
        if draw(st.booleans()):
            layer["name"] = f"h{k}"
            sizes[f"h{k}"] = width
        layers.append(layer)
    last = draw(st.sampled_from([None, None, *RECURRENT_KINDS]))
    if last is not None:  # a recurrent layer returning h_T: the rest reads a vector
        layers.append({"type": last, "units": draw(st.integers(1, 4)), "return": "last",
                       "activation": draw(st.sampled_from(HIDDEN_OR_SOFTMAX))})  # fmt: skip
    flat = last is None and draw(st.booleans())
    if flat:
        layers.append({"type": "flatten"})
    if flat or last is not None:
        if draw(st.booleans()):
            layers.append(
                {"type": "batchnorm", "activation": draw(st.sampled_from(HIDDEN_OR_SOFTMAX))}
            )
    output = draw(st.sampled_from(["identity", "sigmoid", "softmax", "tanh"]))
    units = draw(st.integers(2, 3)) if output == "softmax" else draw(st.integers(1, 3))
    head: dict[str, Any] = {"units": units, "activation": output, "bias": draw(st.booleans())}
    vector = flat or last is not None
    if not vector and tokens and width == layers[0]["dim"] and draw(st.booleans()):
        head.update(units=first["vocab"], tie="emb")
    layers.append(head)
    loss = {"softmax": "cross_entropy", "sigmoid": "bce"}.get(output, "mse")
    return _no_softmax_of_one(
        {
            "name": "fuzz",
            "input": first,
            "layers": layers,
            "loss": loss,
            "reduction": draw(st.sampled_from(["mean", "sum"])),
            "l2": draw(st.sampled_from([0.0, 0.1])),
        }
    )


def _no_softmax_of_one(doc: dict) -> dict:
    """doc with tanh for a softmax over a single entry (the constant 1, which the file
    validator refuses)."""
    for layer, shape in zip(doc["layers"], shapes(doc)[1:], strict=True):
        if layer.get("activation") == "softmax" and shape[-1] < 2:
            layer["activation"] = "tanh"
    return doc


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[-1])


def shapes(doc: dict) -> list[tuple[int, ...]]:
    """Every layer's per-sample output shape, input first, computed here from the file."""
    first = doc["input"]
    if isinstance(first, dict):  # token ids: T positions
        out: list[tuple[int, ...]] = [(first["tokens"],)]
    else:
        out = [tuple(first) if isinstance(first, list) else (first,)]
    for layer in doc["layers"]:
        kind, shape = layer.get("type", "dense"), out[-1]
        if kind == "embedding":
            out.append((shape[0], layer["dim"]))
        elif kind in RECURRENT_KINDS:
            last = layer.get("return", "sequence") == "last"
            out.append((layer["units"],) if last else (shape[0], layer["units"]))
        elif kind == "dense" and len(shape) == 2:  # at every position of a sequence
            out.append((shape[0], layer["units"]))
        elif kind == "dense":
            out.append((layer["units"],))
        elif kind == "flatten":
            out.append((int(np.prod(shape)),))
        elif kind in ("conv2d", "maxpool2d", "avgpool2d"):
            k = _pair(layer["kernel"] if kind == "conv2d" else layer["size"])
            s = _pair(layer.get("stride", 1 if kind == "conv2d" else list(k)))
            p = (
                (k[0] // 2, k[1] // 2)
                if layer.get("padding") == "same"
                else _pair(layer.get("padding", 0))
            )
            sides = [(shape[1 + a] + 2 * p[a] - k[a]) // s[a] + 1 for a in (0, 1)]
            out.append((layer["filters"] if kind == "conv2d" else shape[0], *sides))
        else:
            out.append(shape)
    return out


@st.composite
def image_graphs(draw: Callable) -> dict:
    """A random CNN: 1-4 image layers (conv2d with strides, padding, rectangular kernels,
    with or without bias; max and average pooling, overlapping or not; batch norm per
    channel; residual adds over a same-padded conv), then flatten and a dense output."""
    C, H, W = draw(st.integers(1, 2)), draw(st.integers(3, 6)), draw(st.integers(3, 6))
    layers: list[dict] = []
    shape = (C, H, W)
    for k in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv2d", "conv2d", "maxpool2d", "avgpool2d",
                                     "batchnorm", "layernorm", "residual"]))  # fmt: skip
        act = draw(st.sampled_from(BUILTIN_HIDDEN))
        if kind == "residual":
            name = f"r{k}"
            if layers:
                layers[-1] = {**layers[-1], "name": name}
            layers += [
                {"type": "conv2d", "filters": shape[0], "kernel": 3, "padding": "same",
                 "bias": draw(st.booleans()), "activation": act},
                {"type": "add", "from": name if layers else "input",
                 "activation": draw(st.sampled_from(BUILTIN_HIDDEN))},
            ]  # fmt: skip
            continue
        if kind in ("batchnorm", "layernorm"):
            layers.append({"type": kind, "activation": act})
            continue
        if kind == "conv2d":
            pad = draw(st.integers(0, 1))
            kh = draw(st.integers(1, min(3, shape[1] + 2 * pad)))
            kw = draw(st.integers(1, min(3, shape[2] + 2 * pad)))
            layer = {"type": "conv2d", "filters": draw(st.integers(1, 3)), "kernel": [kh, kw],
                     "stride": [draw(st.integers(1, 2)), draw(st.integers(1, 2))],
                     "padding": pad, "bias": draw(st.booleans()), "activation": act}  # fmt: skip
        else:
            size = [draw(st.integers(1, min(2, shape[1]))), draw(st.integers(1, min(2, shape[2])))]
            layer = {"type": kind, "size": size, "stride": draw(st.integers(1, 2))}
        layers.append(layer)
        shape = shapes({"input": [C, H, W], "layers": layers})[-1]
    output = draw(st.sampled_from(["identity", "sigmoid", "softmax", "tanh"]))
    units = draw(st.integers(2, 3)) if output == "softmax" else draw(st.integers(1, 3))
    layers += [{"type": "flatten"}, {"units": units, "activation": output}]
    loss = {"softmax": "cross_entropy", "sigmoid": "bce"}.get(output, "mse")
    return {
        "name": "fuzz",
        "layout": "row",
        "input": [C, H, W],
        "layers": layers,
        "loss": loss,
        "reduction": draw(st.sampled_from(["mean", "sum"])),
        "l2": draw(st.sampled_from([0.0, 0.1])),
    }


# ----------------------------------------------------------------------------- dual numbers


class Dual:
    """A value and its directional derivative (forward mode), both NumPy arrays."""

    __array_priority__ = 1000

    def __init__(self, v: Any, t: Any = 0.0) -> None:
        self.v = np.asarray(v, dtype=np.float64)
        self.t = np.asarray(t, dtype=np.float64) * np.ones_like(self.v)

    def __add__(self, o: Any) -> Dual:
        o = lift(o)
        return Dual(self.v + o.v, self.t + o.t)

    __radd__ = __add__

    def __sub__(self, o: Any) -> Dual:
        o = lift(o)
        return Dual(self.v - o.v, self.t - o.t)

    def __rsub__(self, o: Any) -> Dual:
        return lift(o) - self

    def __mul__(self, o: Any) -> Dual:
        o = lift(o)
        return Dual(self.v * o.v, self.t * o.v + self.v * o.t)

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> Dual:
        o = lift(o)
        return Dual(self.v / o.v, (self.t * o.v - self.v * o.t) / (o.v * o.v))

    def __rtruediv__(self, o: Any) -> Dual:
        return lift(o) / self

    def __neg__(self) -> Dual:
        return Dual(-self.v, -self.t)

    def __matmul__(self, o: Any) -> Dual:
        o = lift(o)
        return Dual(self.v @ o.v, self.t @ o.v + self.v @ o.t)

    def __rmatmul__(self, o: Any) -> Dual:
        return lift(o) @ self

    @property
    def T(self) -> Dual:
        return Dual(self.v.T, self.t.T)

    def transpose(self, *axes: int) -> Dual:
        return Dual(self.v.transpose(axes), self.t.transpose(axes))

    def reshape(self, *shape: int) -> Dual:
        return Dual(self.v.reshape(shape), self.t.reshape(shape))

    def __getitem__(self, index: Any) -> Dual:
        return Dual(self.v[index], self.t[index])

    def sum(self, axis: Any, keepdims: bool = True) -> Dual:
        return Dual(
            self.v.sum(axis=axis, keepdims=keepdims), self.t.sum(axis=axis, keepdims=keepdims)
        )


def lift(x: Any) -> Dual:
    return x if isinstance(x, Dual) else Dual(x)


def _erf(v: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[float])(v)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1 / (1 + e), e / (1 + e))


# name -> (f, f'), both on plain arrays.
_RULES: dict[str, tuple[Callable, Callable]] = {
    "exp": (np.exp, np.exp),
    "log": (np.log, lambda v: 1 / v),
    "sqrt": (np.sqrt, lambda v: 0.5 / np.sqrt(v)),
    "abs": (np.abs, np.sign),
    "sin": (np.sin, np.cos),
    "cos": (np.cos, lambda v: -np.sin(v)),
    "tan": (np.tan, lambda v: 1 / np.cos(v) ** 2),
    "sinh": (np.sinh, np.cosh),
    "cosh": (np.cosh, np.sinh),
    "tanh": (np.tanh, lambda v: 1 - np.tanh(v) ** 2),
    "atan": (np.arctan, lambda v: 1 / (1 + v * v)),
    "erf": (_erf, lambda v: 2 / math.sqrt(math.pi) * np.exp(-v * v)),
    "sigmoid": (_sigmoid, lambda v: _sigmoid(v) * _sigmoid(-v)),
    "softplus": (lambda v: np.logaddexp(0, v), _sigmoid),
}


def _chain(df: Callable, x: Dual) -> np.ndarray:
    """f'(v) t, evaluated only where the tangent t is not 0 (where it is, the product is 0
    even if f' is infinite there, as for sqrt(max(x, 0)) on the flat side)."""
    moving = x.t != 0
    out = np.zeros(np.broadcast(x.v, x.t).shape)
    v, t = np.broadcast_to(x.v, out.shape), np.broadcast_to(x.t, out.shape)
    out[moving] = df(v[moving]) * t[moving]
    return out


def apply(name: str, x: Dual) -> Dual:
    f, df = _RULES[name]
    return Dual(f(x.v), _chain(df, x))


def power(x: Dual, p: Fraction) -> Dual:
    if p == 0:
        return Dual(np.ones_like(x.v))
    e = int(p) if p.denominator == 1 else float(p)
    return Dual(np.power(x.v, e), _chain(lambda v: float(p) * np.power(v, e - 1), x))


def pick(a: Dual, b: Dual, smaller: bool) -> Dual:
    """min or max of a and b; NaN where either is (an argument undefined there, as x**-0.5
    for x < 0, leaves the min or max undefined: a comparison alone would drop it)."""
    take_a = a.v <= b.v if smaller else a.v >= b.v
    undefined = np.isnan(a.v) | np.isnan(b.v)
    value = np.where(undefined, np.nan, np.where(take_a, a.v, b.v))
    return Dual(value, np.where(undefined, np.nan, np.where(take_a, a.t, b.t)))


# ----------------------------------------------------------------------------- the walker


def _exponent(node: ast.expr) -> Fraction:
    """A constant exponent: a signed number or a signed ratio of numbers."""
    if isinstance(node, ast.UnaryOp):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        return sign * _exponent(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _exponent(node.left) / _exponent(node.right)
    assert isinstance(node, ast.Constant)
    value = node.value
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))


def evaluate(text: str, env: dict[str, Dual]) -> Dual:
    """The value of expression text over dual numbers (variables from env)."""
    return _walk(ast.parse(text, mode="eval").body, env)


def _walk(node: ast.expr, env: dict[str, Dual]) -> Dual:
    if isinstance(node, ast.Constant):
        return Dual(float(node.value))
    if isinstance(node, ast.Name):
        constants = {"pi": math.pi, "e": math.e}
        return env[node.id] if node.id in env else Dual(constants[node.id])
    if isinstance(node, ast.UnaryOp):
        inner = _walk(node.operand, env)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        return power(_walk(node.left, env), _exponent(node.right))
    if isinstance(node, ast.BinOp):
        left, right = _walk(node.left, env), _walk(node.right, env)
        op = {
            ast.Add: Dual.__add__,
            ast.Sub: Dual.__sub__,
            ast.Mult: Dual.__mul__,
            ast.Div: Dual.__truediv__,
        }[type(node.op)]
        return op(left, right)
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    args = [_walk(a, env) for a in node.args]
    name = node.func.id
    if name in ("min", "max"):
        out = args[0]
        for a in args[1:]:
            out = pick(out, a, name == "min")
        return out
    return apply(name, args[0])


# ----------------------------------------------------------------------------- the network

_BUILTIN_TEXT = {
    "identity": "x",
    "sigmoid": "sigmoid(x)",
    "tanh": "tanh(x)",
    "relu": "max(x, 0)",
    "leaky_relu": "max(x, 0.01*x)",
    "elu": None,
    "softplus": "softplus(x)",
    "swish": "x*sigmoid(x)",
    "gelu": "x/2*(1 + erf(x/sqrt(2)))",
}


def activation(name: str, z: Dual, customs: dict[str, str], axis: int) -> Dual:
    if name == "softmax":
        m = z.v.max(axis=axis, keepdims=True)
        e = apply("exp", z - m)
        return e / e.sum(axis)
    if name == "elu":
        neg = apply("exp", Dual(np.minimum(z.v, 0), np.where(z.v > 0, 0, z.t))) - 1
        return Dual(np.where(z.v > 0, z.v, neg.v), np.where(z.v > 0, z.t, neg.t))
    text = customs[name] if name in customs else _BUILTIN_TEXT[name]
    out = evaluate(text, {"x": z})
    # A constant activation gives every unit its value.
    return Dual(np.broadcast_to(out.v, z.v.shape).copy(), np.broadcast_to(out.t, z.v.shape).copy())


def log_softmax(z: Dual, axis: int) -> Dual:
    m = z.v.max(axis=axis, keepdims=True)
    return z - m - apply("log", apply("exp", z - m).sum(axis))


def log_one_minus_softmax(z: Dual, axis: int) -> Dual:
    """log(1 - a_k) = log sum_{m != k} exp(z_m) - log sum_m exp(z_m), each shifted by its max."""
    lse = -log_softmax(z, axis) + z
    out_v, out_t = np.empty_like(z.v), np.empty_like(z.v)
    units = z.v.shape[axis]
    for k in range(units):
        others = [m for m in range(units) if m != k]
        zo = Dual(np.take(z.v, others, axis=axis), np.take(z.t, others, axis=axis))
        mo = zo.v.max(axis=axis, keepdims=True)
        lse_o = Dual(mo) + apply("log", apply("exp", zo - mo).sum(axis))
        term = lse_o - Dual(np.take(lse.v, [k], axis=axis), np.take(lse.t, [k], axis=axis))
        idx = [slice(None)] * z.v.ndim
        idx[axis] = slice(k, k + 1)
        out_v[tuple(idx)], out_t[tuple(idx)] = term.v, term.t
    return Dual(out_v, out_t)


def log_softplus(z: Dual) -> Dual:
    """log(softplus(z)) as a careful library computes it: for z < 0, with t = e^z,
    z + log(log1p(t) / t), which tends to z where softplus(z) underflows; its derivative
    sigmoid(z) / softplus(z) = 1 / ((1 + t) log1p(t) / t). For z >= 0 softplus(z) >= log 2."""
    t = np.exp(np.minimum(z.v, 0))
    ratio = np.log1p(t) / np.where(t > 0, t, 1)
    ratio = np.where(t > 0, ratio, 1.0)
    zp = np.maximum(z.v, 0)
    soft = zp + np.log1p(np.exp(-zp))
    value = np.where(z.v < 0, z.v + np.log(ratio), np.log(soft))
    slope = np.where(z.v < 0, 1 / ((1 + t) * ratio), _sigmoid(zp) / soft)
    return Dual(value, slope * z.t)


def unit_loss(doc: dict, a: Dual, z: Dual, y: np.ndarray, axis: int) -> Dual:
    """The per-element loss, from the logits for bce after sigmoid and ce after softmax."""
    loss = doc["loss"]
    out_act = doc["layers"][-1]["activation"]
    Y = Dual(y)
    if isinstance(loss, dict):
        out = evaluate(loss["expr"], {"yhat": a, "y": Y})
        # A constant loss is summed over every unit of every sample too.
        shape = a.v.shape
        return Dual(np.broadcast_to(out.v, shape).copy(), np.broadcast_to(out.t, shape).copy())
    if loss == "mse":
        return (a - Y) * (a - Y) * 0.5
    if out_act == "softmax":
        log_a, log_1ma = log_softmax(z, axis), log_one_minus_softmax(z, axis)
    elif out_act == "sigmoid":
        log_a, log_1ma = -apply("softplus", -z), -apply("softplus", z)
    elif out_act == "softplus":
        log_a, log_1ma = log_softplus(z), apply("log", 1 - a)
    else:
        log_a, log_1ma = apply("log", a), apply("log", 1 - a)
    if loss == "cross_entropy":
        return -(Y * log_a)
    return -(Y * log_a + (1 - Y) * log_1ma)


def _param(params: dict, tangents: dict, key: str) -> Dual:
    return Dual(params[key], tangents.get(key, 0.0))


def _image_layer(layer: dict, l: int, a: Dual, shape_in: tuple, shape_out: tuple, p: Any) -> Dual:
    """z of an image layer on rows of C*H*W entries, from its definition: conv2d as a sum
    over kernel offsets of shifted slices (x zero-padded), pooling over the same slices
    (max pooling keeps the first largest entry and its tangent), batch norm per channel."""
    n, (C, H, W), (F, Ho, Wo) = a.v.shape[0], shape_in, shape_out
    x = a.reshape(n, C, H, W)
    kind = layer["type"]
    if kind == "batchnorm":
        g = x.reshape(n, C, H * W)
        count = n * H * W
        mu = g.sum((0, 2)) * (1.0 / count)
        centred = g - mu
        var = (centred * centred).sum((0, 2)) * (1.0 / count)
        xhat = centred / power(var + layer.get("eps", 1e-5), Fraction(1, 2))
        z = p(f"gamma{l}").reshape(1, C, 1) * xhat + p(f"beta{l}").reshape(1, C, 1)
        return z.reshape(n, C * H * W)
    k = _pair(layer["kernel"] if kind == "conv2d" else layer["size"])
    st_ = _pair(layer.get("stride", 1 if kind == "conv2d" else list(k)))
    pad = (
        (k[0] // 2, k[1] // 2) if layer.get("padding") == "same" else _pair(layer.get("padding", 0))
    )
    padded = Dual(np.zeros((n, C, H + 2 * pad[0], W + 2 * pad[1])))
    padded.v[:, :, pad[0] : pad[0] + H, pad[1] : pad[1] + W] = x.v
    padded.t[:, :, pad[0] : pad[0] + H, pad[1] : pad[1] + W] = x.t
    cells = [
        (i, j, padded[:, :, i : i + (Ho - 1) * st_[0] + 1 : st_[0],
                      j : j + (Wo - 1) * st_[1] + 1 : st_[1]])
        for i in range(k[0]) for j in range(k[1])
    ]  # fmt: skip
    if kind == "conv2d":
        w = p(f"W{l}")
        z = Dual(np.zeros((n, F, Ho, Wo)))
        for i, j, cell in cells:
            kernel = w[:, :, i, j]  # (F, C)
            z = z + Dual(
                np.einsum("fc,nchw->nfhw", kernel.v, cell.v),
                np.einsum("fc,nchw->nfhw", kernel.t, cell.v)
                + np.einsum("fc,nchw->nfhw", kernel.v, cell.t),
            )
        if layer.get("bias", True):
            z = z + p(f"b{l}").reshape(1, F, 1, 1)
        return z.reshape(n, F * Ho * Wo)
    if kind == "avgpool2d":
        total = cells[0][2]
        for _, _, cell in cells[1:]:
            total = total + cell
        return (total * (1.0 / len(cells))).reshape(n, F * Ho * Wo)
    best_v, best_t = cells[0][2].v.copy(), cells[0][2].t.copy()
    for _, _, cell in cells[1:]:
        larger = cell.v > best_v
        best_v, best_t = np.where(larger, cell.v, best_v), np.where(larger, cell.t, best_t)
    return Dual(best_v, best_t).reshape(n, F * Ho * Wo)


def _layer(
    layer: dict,
    l: int,
    a: Dual,
    outputs: dict,
    params: dict,
    tangents: dict,
    row: bool,
    io: tuple = ((), ()),
) -> Dual:
    """z of one layer of any kind, from its definition (written here independently);
    io: the per-sample shapes it reads and writes."""
    kind = layer.get("type", "dense")
    if kind == "flatten":  # an image is held flat already; a sequence (n, T, d) is not
        return a.reshape(a.v.shape[0], -1) if a.v.ndim == 3 else a
    if kind == "embedding":
        return _embedding(layer, l, a, params, tangents)
    if kind == "attention":
        return _attention(layer, l, a, params, tangents)
    if kind in RECURRENT_KINDS:
        return _recurrent(layer, l, a, params, tangents)
    if kind == "dense" and "tie" in layer:
        owner = next(
            k for k, e in enumerate(outputs["_layers"], 1) if e.get("name") == layer["tie"]
        )
        z = a @ _param(params, tangents, f"E{owner}").T
        return z + _param(params, tangents, f"b{l}") if layer.get("bias", True) else z
    if kind in ("conv2d", "maxpool2d", "avgpool2d") or (kind == "batchnorm" and len(io[0]) == 3):
        return _image_layer(layer, l, a, *io, lambda key: _param(params, tangents, key))
    if kind == "dense":
        W = _param(params, tangents, f"W{l}")
        z = (a @ W.T) if row else (W @ a)
        return z + _param(params, tangents, f"b{l}") if layer.get("bias", True) else z
    if kind == "add":
        return a + outputs[layer["from"]]
    # normalisation: over the features of a sample (layernorm) or the samples of a feature
    features, samples = (-1, 0) if row else (0, 1)
    axis = features if kind == "layernorm" else samples
    count = a.v.shape[axis]
    mu = a.sum(axis) * (1.0 / count)
    centred = a - mu
    var = (centred * centred).sum(axis) * (1.0 / count)
    sigma = power(var + layer.get("eps", 1e-5), Fraction(1, 2))
    xhat = centred / sigma
    gamma, beta = _param(params, tangents, f"gamma{l}"), _param(params, tangents, f"beta{l}")
    if gamma.v.ndim == 3:  # layer norm on an image: one per entry, in C order
        gamma, beta = gamma.reshape(-1), beta.reshape(-1)
    return gamma * xhat + beta


def _embedding(layer: dict, l: int, ids: Dual, params: dict, tangents: dict) -> Dual:
    """E[x_t] + P_t, the positions learned, Vaswani's sinusoids or none."""
    rows = ids.v.astype(int)
    E = _param(params, tangents, f"E{l}")
    z = Dual(E.v[rows], E.t[rows])
    T, dim = rows.shape[1], layer["dim"]
    if layer.get("positions", "learned") == "learned":
        return z + _param(params, tangents, f"P{l}")
    if layer.get("positions") == "sinusoidal":
        table = np.array([[math.sin(t / 10000 ** (2 * (i // 2) / dim)) if i % 2 == 0
                           else math.cos(t / 10000 ** (2 * (i // 2) / dim))
                           for i in range(dim)] for t in range(T)])  # fmt: skip
        return z + table
    return z


def _attention(layer: dict, l: int, a: Dual, params: dict, tangents: dict) -> Dual:
    """Multi-head self-attention on (n, T, d) duals, written from its definition."""
    n, T, d = a.v.shape
    h = layer.get("heads", 1)
    dh = d // h

    def project(p: str) -> Dual:
        z = a @ _param(params, tangents, f"W{p}{l}").T
        return z + _param(params, tangents, f"b{p}{l}") if layer.get("bias", True) else z

    def split(x: Dual) -> Dual:  # (n, T, d) -> (n, h, T, dh)
        return x.reshape(n, T, h, dh).transpose(0, 2, 1, 3)

    q, k, v = (split(project(p)) for p in "qkv")
    s = (q @ k.transpose(0, 1, 3, 2)) * (1 / math.sqrt(dh))
    if layer.get("causal", False):
        s = s + np.triu(np.full((T, T), -1e30), 1)
    e = apply("exp", s - s.v.max(axis=-1, keepdims=True))
    o = (e / e.sum(-1)) @ v
    merged = o.transpose(0, 2, 1, 3).reshape(n, T, d)
    z = merged @ _param(params, tangents, f"Wo{l}").T
    return z + _param(params, tangents, f"bo{l}") if layer.get("bias", True) else z


def _stack(steps: list[Dual]) -> Dual:
    return Dual(np.stack([x.v for x in steps], 1), np.stack([x.t for x in steps], 1))


def _recurrent(layer: dict, l: int, a: Dual, params: dict, tangents: dict) -> Dual:
    """PyTorch's rnn, lstm and gru on (n, T, d) duals, one step after another from zero
    states, written from their definitions: every step's h (n, T, h) or the last (n, h)."""
    kind, h = layer["type"], layer["units"]
    n, T, _ = a.v.shape
    W, U = _param(params, tangents, f"Wih{l}"), _param(params, tangents, f"Whh{l}")
    bias = layer.get("bias", True)
    state, cell = Dual(np.zeros((n, h))), Dual(np.zeros((n, h)))
    outs = []
    for t in range(T):
        gx, gh = a[:, t] @ W.T, state @ U.T
        if bias:
            gx = gx + _param(params, tangents, f"bih{l}")
            gh = gh + _param(params, tangents, f"bhh{l}")

        def part(x: Dual, k: int) -> Dual:
            return x[:, k * h : (k + 1) * h]

        if kind == "rnn":
            pre = gx + gh
            relu = layer.get("nonlinearity", "tanh") == "relu"
            state = pick(pre, Dual(np.zeros_like(pre.v)), False) if relu else apply("tanh", pre)
        elif kind == "lstm":
            pre = gx + gh
            i, f = apply("sigmoid", part(pre, 0)), apply("sigmoid", part(pre, 1))
            g, o = apply("tanh", part(pre, 2)), apply("sigmoid", part(pre, 3))
            cell = f * cell + i * g
            state = o * apply("tanh", cell)
        else:
            r = apply("sigmoid", part(gx, 0) + part(gh, 0))
            z = apply("sigmoid", part(gx, 1) + part(gh, 1))
            new = apply("tanh", part(gx, 2) + r * part(gh, 2))
            state = (1 - z) * new + z * state
        outs.append(state)
    return state if layer.get("return", "sequence") == "last" else _stack(outs)


def activations_finite(doc: dict, params: dict, X: np.ndarray, Y: np.ndarray) -> bool:
    """True when every layer's activation is finite on this batch (the reference's)."""
    seen: list[Dual] = []
    with np.errstate(all="ignore"):
        reference(doc, params, X, Y, trace=seen)
    return all(np.isfinite(a.v).all() for a in seen)


def reference(
    doc: dict,
    params: dict,
    X: np.ndarray,
    Y: np.ndarray,
    tangents: dict | None = None,
    trace: list | None = None,
) -> tuple[Dual, Dual]:
    """(output, loss) of the network on dual numbers; tangents: directions of the parameters."""
    sequence = isinstance(doc["input"], (dict, list)) and len(shapes(doc)[0]) < 3
    row = doc.get("layout", "column") == "row" or sequence
    axis = -1 if row else 0
    customs = doc.get("activations", {})
    tangents = tangents or {}
    a = Dual(X)
    z = a
    outputs: dict[str, Any] = {"input": a, "_layers": doc["layers"]}
    sizes = shapes(doc)
    for l, layer in enumerate(doc["layers"], start=1):
        z = _layer(layer, l, a, outputs, params, tangents, row, (sizes[l - 1], sizes[l]))
        a = activation(layer.get("activation", "identity"), z, customs, axis)
        if "name" in layer:
            outputs[layer["name"]] = a
        if trace is not None:
            trace.append(a)
    n = int(np.prod(Y.shape[:-1])) if row else Y.shape[1]  # rows: samples, or their positions
    scale = 1.0 / n if doc.get("reduction", "mean") == "mean" else 1.0
    per = unit_loss(doc, a, z, Y, axis)
    total = Dual(per.v.sum(), per.t.sum()) * scale
    l2 = float(doc.get("l2", 0.0))
    for key in params:  # weights, kernels, projections, embedding tables and positions
        if key[0] not in "WEP":
            continue
        W = Dual(params[key], tangents.get(key, 0.0))
        sq = W * W
        total = total + Dual(sq.v.sum(), sq.t.sum()) * (l2 / 2)
    return a, total


def reference_gradient(doc: dict, params: dict, X: np.ndarray, Y: np.ndarray) -> dict:
    """Every gradient entry, by one forward-mode pass per parameter entry."""
    grads = {}
    for key, value in params.items():
        g = np.empty_like(value)
        for idx in np.ndindex(value.shape):
            e = np.zeros_like(value)
            e[idx] = 1.0
            g[idx] = float(reference(doc, params, X, Y, {key: e})[1].t)
        grads[key] = g
    return grads


# ----------------------------------------------------------------------------- one case


@dataclass
class Outcome:
    """What one case showed: problems (failures), and what was checked or skipped."""

    problems: list[str] = field(default_factory=list)
    refused: str = ""
    checked: list[str] = field(default_factory=list)


def _sequence_problem(doc: dict, seed: int, n: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Parameters, inputs (n, T, d) or token ids (n, T), and targets (n, T, k)."""
    rng = np.random.default_rng(seed)
    every = shapes(doc)
    params: dict[str, np.ndarray] = {}
    for l, layer in enumerate(doc["layers"], start=1):
        kind = layer.get("type", "dense")
        d_in, d_out = every[l - 1][-1], every[l][-1]
        if kind == "embedding":
            params[f"E{l}"] = rng.standard_normal((doc["input"]["vocab"], d_out))
            if layer.get("positions", "learned") == "learned":
                params[f"P{l}"] = rng.standard_normal(every[l]) * 0.5
        elif kind == "attention":
            for p in "qkvo":
                params[f"W{p}{l}"] = rng.standard_normal((d_out, d_out)) * 0.8
                if layer.get("bias", True):
                    params[f"b{p}{l}"] = rng.standard_normal(d_out) * 0.3
        elif kind in RECURRENT_KINDS:
            G = _GATES[kind] * d_out
            params[f"Wih{l}"] = rng.standard_normal((G, d_in)) * 0.8
            params[f"Whh{l}"] = rng.standard_normal((G, d_out)) * 0.8
            if layer.get("bias", True):
                params[f"bih{l}"] = rng.standard_normal(G) * 0.3
                params[f"bhh{l}"] = rng.standard_normal(G) * 0.3
        elif kind == "dense":
            if "tie" not in layer:
                params[f"W{l}"] = rng.standard_normal((d_out, d_in)) * 0.8
            if layer.get("bias", True):
                params[f"b{l}"] = rng.standard_normal(d_out) * 0.3
        elif kind in ("layernorm", "batchnorm"):
            params[f"gamma{l}"] = 1 + rng.standard_normal(d_out) * 0.3
            params[f"beta{l}"] = rng.standard_normal(d_out) * 0.3
    first = doc["input"]
    if isinstance(first, dict):
        X = rng.integers(0, first["vocab"], (n, first["tokens"]))
    else:
        X = rng.standard_normal((n, *first))
    shape = (n, *every[-1])
    if doc["loss"] == "cross_entropy":
        raw = np.exp(rng.standard_normal(shape))
        Y = raw / raw.sum(axis=-1, keepdims=True)
    elif doc["loss"] == "mse":
        Y = rng.standard_normal(shape)
    else:
        Y = rng.uniform(0.05, 0.95, shape)
    return params, X, Y


def _problem_data(doc: dict, seed: int, n: int = 6) -> tuple[dict, np.ndarray, np.ndarray]:
    if isinstance(doc["input"], dict) or (
        isinstance(doc["input"], list) and len(doc["input"]) == 2
    ):
        return _sequence_problem(doc, seed, n)
    rng = np.random.default_rng(seed)
    row = doc.get("layout", "column") == "row"
    every = shapes(doc)
    sizes = [int(np.prod(shape)) for shape in every]
    params = {}
    for l, layer in enumerate(doc["layers"], start=1):
        kind = layer.get("type", "dense")
        unit_shape = (sizes[l],) if row else (sizes[l], 1)
        if kind == "conv2d":
            F, C = every[l][0], every[l - 1][0]
            kh, kw = _pair(layer["kernel"])
            params[f"W{l}"] = rng.standard_normal((F, C, kh, kw)) * 0.8 / np.sqrt(C * kh * kw)
            if layer.get("bias", True):
                params[f"b{l}"] = rng.standard_normal(F) * 0.3
        elif kind == "batchnorm" and len(every[l]) == 3:
            params[f"gamma{l}"] = 1 + rng.standard_normal(every[l][0]) * 0.3
            params[f"beta{l}"] = rng.standard_normal(every[l][0]) * 0.3
        elif kind == "layernorm" and len(every[l]) == 3:  # one per entry, image-shaped
            params[f"gamma{l}"] = 1 + rng.standard_normal(every[l]) * 0.3
            params[f"beta{l}"] = rng.standard_normal(every[l]) * 0.3
        elif kind == "dense":
            params[f"W{l}"] = rng.standard_normal((sizes[l], sizes[l - 1])) * 0.8
            if layer.get("bias", True):
                params[f"b{l}"] = rng.standard_normal(unit_shape) * 0.3
        elif kind in ("layernorm", "batchnorm"):
            params[f"gamma{l}"] = 1 + rng.standard_normal(unit_shape) * 0.3
            params[f"beta{l}"] = rng.standard_normal(unit_shape) * 0.3
    X = rng.standard_normal((n, sizes[0]) if row else (sizes[0], n))
    k = sizes[-1]
    shape = (n, k) if row else (k, n)
    if doc["loss"] == "cross_entropy":
        raw = np.exp(rng.standard_normal(shape))
        Y = raw / raw.sum(axis=1 if row else 0, keepdims=True)
    elif doc["loss"] == "mse":
        Y = rng.standard_normal(shape)
    else:
        Y = rng.uniform(0.05, 0.95, shape)
    return params, X, Y


def _close(got: Any, want: Any, rtol: float) -> np.ndarray:
    """Entrywise agreement where `want` is finite, relative to the array's largest entry."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    finite = np.isfinite(want)
    if not finite.any():
        return np.ones(want.shape, bool)
    scale = max(1.0, float(np.max(np.abs(want[finite]))))
    ok = np.abs(got - want) <= rtol * scale
    return ok | ~finite


def _clean(call: Callable) -> tuple[bool, Any]:
    """(True, result) if call raises no floating-point error or warning, else (False, None)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            with np.errstate(all="raise", under="ignore"):
                return True, call()
        except (FloatingPointError, RuntimeWarning) as err:
            return False, err


def generate_module(doc: dict, folder: Path, target: str = "numpy") -> tuple[Any, str]:
    """(module, "") or (None, refusal message) for the target's module; (None, "") when the
    array-API target does not take the network. Unexpected errors propagate."""
    from symbp.backends.array_api.emit import check_supported
    from symbp.check.gradcheck import import_path
    from symbp.errors import DerivationError, SymbpError
    from symbp.frontend.spec import arch_from_mapping
    from symbp.options import MODULE_SUFFIX
    from symbp.pipeline import generate, write_files

    try:
        arch = arch_from_mapping({**doc, "dtype": "float64"})
        if target != "numpy":
            try:
                check_supported(arch)
            except DerivationError:
                return None, ""
        result = generate(arch, targets=(target,))
    except DerivationError:
        raise
    except SymbpError as err:
        return None, str(err)
    write_files(result.files, folder)
    return import_path(folder / f"{arch.name}{MODULE_SUFFIX[target]}.py"), ""


def check_case(doc: dict, folder: Path, seed: int = 0) -> Outcome:
    """Generate, import and check one architecture document; see the module docstring."""
    out = Outcome()
    module, refused = generate_module(doc, folder)
    if module is None:
        out.refused = refused
        return out
    params, X, Y = _problem_data(doc, seed)
    large = X if isinstance(doc["input"], dict) else X * 1000.0  # token ids do not scale
    _check_values(out, module, doc, params, X, Y)
    _check_large(out, module, doc, params, large, Y)
    _check_workspace(out, module, doc, seed)
    xp_module, _ = generate_module(doc, folder / "xp", "array-api")
    if xp_module is not None:
        xp = Outcome()
        _check_values(xp, xp_module, doc, params, X, Y)
        _check_large(xp, xp_module, doc, params, large, Y)
        out.problems += [f"array-api: {p}" for p in xp.problems]
        out.checked += [f"array-api {c}" for c in xp.checked]
    return out


def _check_workspace(out: Outcome, module: Any, doc: dict, seed: int) -> None:
    """loss_and_grads with make_workspace: bit-identical, gradients in the workspace."""
    from symbp.check.gradcheck import workspace_problems
    from symbp.frontend.spec import arch_from_mapping

    arch = arch_from_mapping({**doc, "dtype": "float64"})
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out.problems += [f"workspace: {p}" for p in workspace_problems(module, arch, seed, 4)]
    out.checked.append("workspace")


def _check_values(
    out: Outcome, module: Any, doc: dict, params: dict, X: np.ndarray, Y: np.ndarray
) -> None:
    """Forward, loss, gradients, jvp and hvp at ordinary inputs; no FP error where the
    reference has none."""
    ref_ok, ref = _clean(
        lambda: (reference(doc, params, X, Y), reference_gradient(doc, params, X, Y))
    )
    with np.errstate(all="ignore"):
        if not ref_ok:
            ref = (reference(doc, params, X, Y), reference_gradient(doc, params, X, Y))
        (yhat, loss), grads = ref
        got_yhat = module.forward(params, X)
        if not _close(got_yhat, yhat.v, 1e-9).all():
            out.problems.append(f"forward differs: {got_yhat} vs reference {yhat.v}")
        value, got = module.loss_and_grads(params, X, Y)
        if np.isfinite(loss.v) and not _close(value, loss.v, 1e-9).all():
            out.problems.append(f"loss differs: {value!r} vs reference {float(loss.v)!r}")
        if not activations_finite(doc, params, X, Y):
            # A layer's activation is not finite here (log of a negative, cosh overflowing):
            # where a later constant layer or loss ignores it, the reference's gradient is 0
            # and IEEE arithmetic's (0 * inf, in any framework) NaN; no verdict.
            out.checked.append("values (output undefined)")
            return
        for key in params:
            if not _close(got[key], grads[key], 1e-7).all():
                out.problems.append(f"gradient {key} differs:\n{got[key]}\nreference\n{grads[key]}")
        _check_jvp_hvp(out, module, doc, params, X, Y)
    out.checked.append("values")
    if ref_ok and np.isfinite(loss.v) and all(np.isfinite(g).all() for g in grads.values()):
        ok, err = _clean(lambda: module.loss_and_grads(params, X, Y))
        if not ok:
            out.problems.append(f"floating-point error where the reference has none: {err}")
        out.checked.append("errstate")


def _check_jvp_hvp(
    out: Outcome, module: Any, doc: dict, params: dict, X: np.ndarray, Y: np.ndarray
) -> None:
    rng = np.random.default_rng(5)
    v = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    yhat, _ = reference(doc, params, X, Y, v)
    _, got = module.jvp(params, X, v)
    if not _close(got, yhat.t, 1e-7).all():
        out.problems.append(f"jvp differs: {got} vs reference {yhat.t}")
    hv = module.hvp(params, X, Y, v)
    agree = []
    for h in (1e-4, 1e-5, 1e-6, 1e-7):
        plus = module.loss_and_grads({k: p + h * v[k] for k, p in params.items()}, X, Y)[1]
        minus = module.loss_and_grads({k: p - h * v[k] for k, p in params.items()}, X, Y)[1]
        fd = {k: (plus[k] - minus[k]) / (2 * h) for k in params}
        if not all(np.isfinite(f).all() for f in fd.values()):
            agree.append(True)  # central differences undefined here: nothing to compare
            continue
        agree.append(all(_close(hv[k], fd[k], 1e-4).all() for k in params))
    if not any(agree):
        out.problems.append("hvp differs from central differences of the gradient")


def _check_large(
    out: Outcome, module: Any, doc: dict, params: dict, X: np.ndarray, Y: np.ndarray
) -> None:
    """At large inputs: finite loss and gradients wherever the reference's are, equal to it
    (to 1e-6 of the largest entry), and no floating-point error where the reference has none."""
    clean, ref = _clean(
        lambda: (reference(doc, params, X, Y)[1], reference_gradient(doc, params, X, Y))
    )
    with np.errstate(all="ignore"):
        if not clean:
            ref = (reference(doc, params, X, Y)[1], reference_gradient(doc, params, X, Y))
        loss, grads = ref
        if not np.isfinite(loss.v) or abs(float(loss.v)) > 1e250:
            return
        if not activations_finite(doc, params, X, Y):
            out.checked.append("large (output undefined)")
            return
        value, got = module.loss_and_grads(params, X, Y)
    if not np.isfinite(value):
        out.problems.append(f"x1000: loss {value} where the reference gives {float(loss.v)!r}")
    elif not _close(value, loss.v, 1e-6).all():
        out.problems.append(f"x1000: loss {value!r} vs reference {float(loss.v)!r}")
    if clean and all(np.isfinite(g).all() and np.abs(g).max() < 1e250 for g in grads.values()):
        ok, err = _clean(lambda: module.loss_and_grads(params, X, Y))
        if not ok:
            out.problems.append(f"x1000: floating-point error where the reference has none: {err}")
    for key in params:
        finite = np.isfinite(grads[key]) & (np.abs(grads[key]) < 1e250)
        if not np.isfinite(got[key][finite]).all():
            out.problems.append(f"x1000: gradient {key} not finite where the reference is")
        elif not _close(np.where(finite, got[key], 0), np.where(finite, grads[key], 0), 1e-6).all():
            out.problems.append(
                f"x1000: gradient {key} differs:\n{got[key]}\nreference\n{grads[key]}"
            )
    out.checked.append("large")


# ----------------------------------------------------------------------------- long mode


def main(argv: list[str] | None = None) -> int:
    """Run many random cases; print each failing document (shrunk by hypothesis)."""
    import yaml
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--show-refusals", action="store_true")
    parser.add_argument("--graphs", action="store_true", help="random graphs of layer kinds")
    parser.add_argument("--images", action="store_true", help="random CNNs (image layers)")
    parser.add_argument(
        "--sequences", action="store_true", help="random sequence networks (attention, embeddings)"
    )
    parser.add_argument("--shrink", action="store_true", help="shrink a failing case (slow)")
    args = parser.parse_args(argv)
    failures: list[str] = []
    counts = {"cases": 0, "refused": 0}
    strategy = (
        image_graphs()
        if args.images
        else graphs()
        if args.graphs
        else sequence_graphs()
        if args.sequences
        else architectures()
    )

    @settings(
        max_examples=args.examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        phases=[Phase.explicit, Phase.reuse, Phase.generate]
        + ([Phase.shrink] if args.shrink else []),
    )
    @given(doc=strategy, seed=st.integers(0, 2**16))
    def run(doc: dict, seed: int) -> None:
        counts["cases"] += 1
        with tempfile.TemporaryDirectory() as folder:
            try:
                outcome = check_case(doc, Path(folder), seed)
            except Exception:  # noqa: BLE001 - reported with the document
                outcome = Outcome(problems=[traceback.format_exc(limit=-4)])
        counts["refused"] += bool(outcome.refused)
        if outcome.refused and args.show_refusals:
            print("refused:", outcome.refused.splitlines()[0][:200])
        assert not outcome.problems, (
            f"seed {seed}\n" + yaml.safe_dump(doc) + "\n".join(outcome.problems)
        )

    if args.seed is not None:
        run = hypothesis_seed(args.seed)(run)
    try:
        run()
    except Exception as err:  # noqa: BLE001 - the report is the point
        failures.append(str(err))
    print(f"{counts['cases']} cases, {counts['refused']} refused, {len(failures)} failing")
    for failure in failures:
        print(failure[:4000])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
