"""``symbp verify``: symbp's derived gradients against SymPy's own, on a small instance.

The architecture is shrunk (every width at most ``max_units``) and run on n = 2 samples.
Two computations of every gradient entry use the same Symbols for weights, biases, inputs
and targets:

* the reference (symbp.check.reference): sympy.diff of the scalar loss, or for networks whose
  loss is too large to differentiate whole, the chain rule over sympy.diff of each layer;
* symbp's own IR (``symbp.derivation.derive.derive``) evaluated on explicit matrices exactly as the
  generated NumPy code evaluates it (see ``_Mirror``).

Each parameter's difference is proven zero by ``sympy.simplify`` within a time budget, or
else evaluated at random rational points: exactly when rational, else to 60 digits.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy as sp

from symbp.check import image_eval as images
from symbp.check import reference as net
from symbp.check import sequence_eval as sequences
from symbp.check.reference import unsupported
from symbp.derivation.derive import Derivation, derive
from symbp.derivation.network import Network, derive_network
from symbp.errors import SymbpError
from symbp.frontend.kind_keys import KINDS, RECURRENT
from symbp.frontend.spec import Arch, arch_from_mapping, load_arch, parameter_count
from symbp.ir.attention_ops import ATTENTION_OPS
from symbp.ir.bindings import Kind
from symbp.ir.graph import build_graph
from symbp.ir.image_ops import ChannelOp, ImageOp, PerChannel
from symbp.ir.naming import Role
from symbp.ir.naming import name as array_name
from symbp.ir.recurrent_ops import RECURRENT_OPS
from symbp.ir.reductions import (
    BatchSum,
    ExclusiveSoftmaxMean,
    ExclusiveSoftmaxSum,
    ExclusiveSoftmaxSumTangent,
    LogOneMinusSoftmax,
    LogSumExp,
    UnitSum,
)
from symbp.ir.sequence_ops import SEQUENCE_OPS
from symbp.symbolic.bounded import bounded
from symbp.symbolic.equal import per_unit
from symbp.symbolic.stable import through_sigmoid

_SOFTMAX_SUMS = (
    LogOneMinusSoftmax,
    ExclusiveSoftmaxSum,
    ExclusiveSoftmaxMean,
    ExclusiveSoftmaxSumTangent,
)
TOLERANCE = sp.Float("1e-40")
SIMPLIFY_SECONDS = 5.0  # per parameter matrix
MAX_WORK = 100_000  # parameters x layers of the shrunk network
REFERENCES = ("auto", "nested", "chain")
_REFERENCE_TEXT = {
    "nested": "sympy.diff of the scalar loss",
    "chain": "the chain rule over sympy.diff of each layer's map",
}


_WHY = {"chain": " (the scalar loss is too large to differentiate whole)"}


class VerifyError(SymbpError, ValueError):
    """verify was asked for something it cannot do (bad option values, too large a network)."""


class MirrorError(Exception):
    """The IR holds something the generated code would not compute as a matrix expression."""


@dataclass(frozen=True)
class VerifyRow:
    """One parameter matrix: how its gradient was checked and whether it holds."""

    parameter: str
    method: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class VerifyResult:
    """Every row, the instance that was checked and the reference it was checked against."""

    rows: tuple[VerifyRow, ...]
    small_arch: Arch
    reference: str  # "nested" or "chain"
    n: int = net.N_SAMPLES

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(row.ok for row in self.rows)

    @property
    def reference_text(self) -> str:
        return _REFERENCE_TEXT[self.reference]


def _cut(layer: Any, units: int, max_units: int) -> int:
    """A layer's units cut to max_units; a softmax keeps two (over one unit it is the
    constant 1, which the file validator refuses)."""
    return min(units, max(max_units, 2 if layer.activation == "softmax" else 1))


def shrink(arch: Arch, max_units: int) -> Arch:
    """arch itself if every width is <= max_units, else every width cut to max_units; an
    image network keeps its layers' geometry on the smallest image it fits, with at most
    max_units channels and filters."""
    if arch.images:
        return _shrink_images(arch, max_units)
    mixing = any(KINDS[layer.type].mixes_positions for layer in arch.layers)
    if arch.positions and (mixing or arch.vocab):
        return _shrink_positions(arch, max_units)
    if arch.positions:
        return _shrink_sequences(arch, max_units)
    if max(arch.layer_sizes) <= max_units:
        return arch
    layers = tuple(
        dataclasses.replace(layer, units=_cut(layer, layer.units, max_units))
        for layer in arch.layers
    )
    return dataclasses.replace(arch, input=min(arch.input, max_units), layers=layers)


def _shrink_sequences(arch: Arch, max_units: int) -> Arch:
    """The network of one position, in row layout: every layer of a sequence network acts
    at each position alone, so on the n*T rows of its positions it is this vector network
    (the same derivation, the same 1/(n T) for a mean), features cut to max_units."""
    doc = _image_doc(arch, (), max_units)
    doc["input"] = min(arch.input_shape[-1], max_units)
    doc["layout"] = "row"
    for entry, layer in zip(doc["layers"], arch.layers, strict=True):
        if layer.type == "dense":
            entry["units"] = _cut(layer, layer.out_shape[-1], max_units)
    return arch_from_mapping(doc)


SHRUNK_POSITIONS = 2  # a mixing network's positions in verify's instance


def _shrink_positions(arch: Arch, max_units: int) -> Arch:
    """A network whose layers read other positions (attention) or token ids, on 2 positions:
    every width w becomes min(w, cap) (equal widths stay equal, so adds and ties still fit),
    the cap a multiple of the heads kept (at most 2), the vocabulary at most max_units."""
    heads = max([layer.heads for layer in arch.layers if layer.type == "attention"] or [1])
    kept = min(heads, 2)
    cap = max(kept, max_units // kept * kept)
    doc = _image_doc(arch, (), max_units)
    T = min(arch.input_shape[0], SHRUNK_POSITIONS)
    vocab = min(arch.vocab, max(max_units, 2))
    if arch.vocab:
        doc["input"] = {"tokens": T, "vocab": vocab}
    else:
        doc["input"] = [T, min(arch.input_shape[-1], cap)]
    doc["layout"] = "row"
    for k, (entry, layer) in enumerate(zip(doc["layers"], arch.layers, strict=True)):
        if layer.type == "dense":
            entry["units"] = vocab if layer.tie else _cut(layer, layer.out_shape[-1], cap)
            if layer.tie:
                entry["tie"] = layer.tie
        elif layer.type == "embedding":
            entry.update(dim=min(layer.out_shape[-1], cap), positions=layer.positions)
        elif layer.type in RECURRENT:
            entry["units"] = _cut(layer, layer.out_shape[-1], cap)
        elif layer.type == "attention":  # its width: the heads kept divide the cap
            width = arch.layer_shapes[k][-1]
            heads = layer.heads if width <= cap else kept
            entry.update(heads=heads, causal=layer.causal, bias=layer.bias)
    return arch_from_mapping(doc)


def _shrink_images(arch: Arch, max_units: int) -> Arch:
    C, H, W = arch.input_shape
    for side in range(1, max(H, W) + 1):
        try:
            return arch_from_mapping(_image_doc(arch, (min(C, max_units), min(side, H),
                                                       min(side, W)), max_units))  # fmt: skip
        except SymbpError:
            continue
    return arch


def _image_doc(arch: Arch, shape: tuple[int, ...], max_units: int) -> dict:
    """arch as a mapping, on an input of `shape`, channels and units cut to max_units."""
    layers = []
    for layer in arch.layers:
        entry: dict[str, Any] = {"type": layer.type}
        if layer.name:
            entry["name"] = layer.name
        if layer.type not in ("maxpool2d", "avgpool2d", "flatten"):
            entry["activation"] = layer.activation
        if layer.type == "dense":
            entry.update(units=_cut(layer, layer.units, max_units), bias=layer.bias)
        elif layer.type in RECURRENT:
            entry.update(units=_cut(layer, layer.out_shape[-1], max_units), bias=layer.bias)
            entry["return"] = layer.returns
            if layer.type == "rnn":
                entry["nonlinearity"] = layer.nonlinearity
        elif layer.type == "add":
            entry["from"] = layer.source
        elif layer.type in ("layernorm", "batchnorm"):
            entry["eps"] = layer.eps
        elif layer.window is not None:
            window = layer.window
            if layer.type == "conv2d":
                entry.update(filters=min(layer.shape[0], max_units), kernel=list(window.kernel),
                             padding=list(window.padding), bias=layer.bias)  # fmt: skip
            else:
                entry["size"] = list(window.kernel)
            entry["stride"] = list(window.stride)
        layers.append(entry)
    loss: Any = arch.loss.kind if arch.loss.kind != "expr" else {"expr": arch.loss.expr}
    return {
        "name": arch.name, "layout": arch.layout, "dtype": arch.dtype, "input": list(shape),
        "layers": layers, "loss": loss, "reduction": arch.reduction, "l2": arch.l2,
        "activations": dict(arch.activations),
    }  # fmt: skip


# ---------------------------------------------------------------- the IR, as the code runs it


@dataclass(frozen=True)
class _Broadcast:
    """A vector the generated code adds by NumPy broadcasting (b 1^T or 1 b^T)."""

    value: sp.Matrix  # in NumPy's orientation: (1, k) for a 1-D (k,) array


def _dims(expr: sp.MatrixExpr, n: int) -> tuple[int, int]:
    """expr's shape with the batch size n put in."""

    def size(dim: sp.Expr) -> int:
        dim = sp.sympify(dim)
        return int(dim.xreplace({s: n for s in dim.free_symbols if s.name == "n"}))

    rows, cols = expr.shape
    return size(rows), size(cols)


class _Mirror:
    """Evaluates symbp's IR on explicit matrices with the semantics of the generated code."""

    def __init__(self, row: bool, n: int, settle: Callable[[sp.Basic], sp.Basic]) -> None:
        self.row, self.n, self.settle = row, n, settle
        self.env: dict[str, Any] = {}  # name -> sympy.Matrix (arrays) or expression (scalars)

    def matrix(self, expr: sp.MatrixExpr) -> sp.Matrix:
        """The value of a matrix expression; shapes are checked like NumPy would."""
        value = self._node(expr)
        if isinstance(value, _Broadcast):
            raise MirrorError(f"{expr}: a broadcast vector outside a sum")
        if value.shape != _dims(expr, self.n):
            raise MirrorError(f"{expr}: shape {value.shape}, expected {_dims(expr, self.n)}")
        return value

    def _node(self, expr: sp.MatrixExpr) -> sp.Matrix | _Broadcast:
        if isinstance(expr, sp.MatrixSymbol):
            return self._array(expr.name)
        if isinstance(expr, sp.Transpose):
            return self.matrix(expr.arg).T
        if isinstance(expr, sp.MatAdd):
            return self._matadd(expr)
        if isinstance(expr, sp.MatMul):
            return self._matmul(expr)
        raise MirrorError(f"no NumPy form for {type(expr).__name__} ({expr})")

    def matrix_value(self, expr: sp.Basic) -> sp.Matrix:
        """The array a symbol names (an image operation's argument)."""
        if not isinstance(expr, (sp.Symbol, sp.MatrixSymbol)):
            raise MirrorError(f"an image operation reads {expr}, not a stored array")
        return self._array(expr.name)

    def _array(self, name: str) -> sp.Matrix:
        value = self.env.get(name)
        if not isinstance(value, sp.MatrixBase):
            raise MirrorError(f"the generated code has no array named {name!r} at this step")
        return value

    def _matmul(self, expr: sp.MatMul) -> sp.Matrix | _Broadcast:
        """Products as the printer writes them: X 1 is a sum over samples, b 1^T a broadcast."""
        args = list(expr.args)
        if len(args) == 2 and isinstance(args[1], sp.OneMatrix) and args[1].shape[1] == 1:
            return self._sum_over_samples(args[0])
        if any(isinstance(a, sp.OneMatrix) for a in args):
            rest = [a for a in args if not isinstance(a, sp.OneMatrix)]
            vector = rest[0].arg if isinstance(rest[0], sp.Transpose) else rest[0]
            return self._broadcast(vector)
        scalars = [a for a in args if not isinstance(a, sp.MatrixExpr)]
        mats = [self.matrix(a) for a in args if isinstance(a, sp.MatrixExpr)]
        product = mats[0]
        for m in mats[1:]:
            if product.shape[1] != m.shape[0]:
                raise MirrorError(f"{expr}: shapes {product.shape} @ {m.shape}")
            product = (product * m).applyfunc(self.settle)
        if scalars:
            k = self.scalar(sp.Mul(*scalars))
            product = product.applyfunc(lambda v: self.settle(k * v))
        return product

    def _sum_over_samples(self, mat: sp.MatrixExpr) -> sp.Matrix:
        """M.T 1 -> M.sum(axis=0); M 1 -> M.sum(axis=1, keepdims=True); as a column."""
        value = self.matrix(mat.arg) if isinstance(mat, sp.Transpose) else self.matrix(mat).T
        return sp.Matrix([self.settle(sp.Add(*value[:, j])) for j in range(value.cols)])

    def _broadcast(self, vector: sp.MatrixExpr) -> _Broadcast:
        """The printed vector; a bias is 1-D (k,) in row layout, (k, 1) in column layout."""
        if not isinstance(vector, sp.MatrixSymbol):
            raise MirrorError(f"broadcast of {vector}, which is not a stored array")
        # Only per-unit vectors (biases) are broadcast over the samples: 1-D in row layout.
        value = self._array(vector.name)
        return _Broadcast(value.T if self.row else value)

    def _matadd(self, expr: sp.MatAdd) -> sp.Matrix:
        """A sum whose broadcast terms follow NumPy's rules against the full shape."""
        rows, cols = _dims(expr, self.n)
        total = sp.zeros(rows, cols)
        for term in expr.args:
            value = self._node(term)
            if isinstance(value, _Broadcast):
                value = _numpy_broadcast(value.value, rows, cols)
            elif value.shape != (rows, cols):
                raise MirrorError(f"{expr}: term {term} has shape {value.shape}")
            total += value
        return total.applyfunc(self.settle)

    def scalar(self, expr: sp.Expr) -> sp.Expr:
        """A scalar expression in the run's scalars (c, lambda)."""
        values = {s: self._scalar(s.name) for s in expr.free_symbols}
        return self.settle(expr.xreplace(values))

    def _scalar(self, name: str) -> sp.Expr:
        value = self.env.get(name)
        if value is None or isinstance(value, sp.MatrixBase):
            raise MirrorError(f"the generated code has no scalar named {name!r}")
        return value

    def elementwise(self, expr: sp.Expr, shape: tuple[int, int]) -> sp.Matrix:
        """expr entry by entry over arrays of `shape`; UnitSum and LogSumExp per sample."""
        expr, reduced = self._reductions(expr, shape)
        arrays, scalars = {}, {}
        for s in expr.free_symbols:
            if s in reduced:
                arrays[s] = reduced[s]
            elif isinstance(self.env.get(s.name), sp.MatrixBase):
                arrays[s] = self._array(s.name)
            else:
                scalars[s] = self._scalar(s.name)
        for s, value in arrays.items():
            if value.shape != shape:
                # NumPy's broadcasting: a per-sample statistic or a per-unit vector.
                arrays[s] = _numpy_broadcast(value, *shape)
        expr = expr.xreplace(scalars)

        def entry(i: int, j: int) -> sp.Basic:
            return self.settle(expr.xreplace({s: v[i, j] for s, v in arrays.items()}))

        return sp.Matrix(*shape, entry)

    def _reductions(self, expr: sp.Expr, shape: tuple[int, int]) -> tuple[sp.Expr, dict]:
        """Outermost UnitSum/LogSumExp -> placeholders holding their per-sample values."""
        found: dict[sp.Basic, sp.Dummy] = {}
        values: dict[sp.Dummy, sp.Matrix] = {}
        walk = sp.preorder_traversal(expr)
        for node in walk:
            if isinstance(node, ChannelOp) and node not in found:
                walk.skip()
                found[node] = sp.Dummy("r")
                values[found[node]] = self._per_channel(node, shape)
            elif isinstance(node, _SOFTMAX_SUMS) and node not in found:
                walk.skip()
                found[node] = sp.Dummy("r")
                values[found[node]] = self._per_unit(node, shape)
            elif isinstance(node, ImageOp) and node.per_sample and node not in found:
                walk.skip()  # an operation inside an elementwise formula (attention's dS)
                found[node] = sp.Dummy("r")
                values[found[node]] = _image_value(self, node, shape)
            elif isinstance(node, (UnitSum, LogSumExp, BatchSum)) and node not in found:
                walk.skip()
                found[node] = sp.Dummy("r")
                inner = self.elementwise(node.args[0], shape)
                values[found[node]] = self._per_sample(node, inner)
        return expr.xreplace(found), values

    def channel_sums(self, node: ChannelOp, shape: tuple[int, int]) -> list[sp.Expr]:
        """The sum over the samples and positions of each channel of node's argument."""
        inner = self.elementwise(node.args[0], shape)
        C, HW = node.window["C"], node.window["HW"]
        return [
            self.settle(sp.Add(*[inner[s, c * HW + k] for s in range(inner.rows)
                                 for k in range(HW)]))
            for c in range(C)
        ]  # fmt: skip

    def _per_channel(self, node: ChannelOp, shape: tuple[int, int]) -> sp.Matrix:
        """A per-channel vector, or the channels' sums, at every entry of the image."""
        HW = node.window["HW"]
        if isinstance(node, PerChannel):
            vector = list(self.matrix_value(node.args[0]))
        else:
            vector = self.channel_sums(node, shape)
        return sp.Matrix(*shape, lambda s, k: vector[k // HW])

    def _per_sample(self, node: sp.Basic, inner: sp.Matrix) -> sp.Matrix:
        """sum (or log sum exp) over the units of each sample, or the sum over the samples
        of each unit (BatchSum), broadcast back."""
        if isinstance(node, BatchSum):
            samples = inner.rows if self.row else inner.cols

            def over_batch(i: int, j: int) -> sp.Basic:
                cells = [inner[s, j] if self.row else inner[i, s] for s in range(samples)]
                return self.settle(sp.Add(*cells))

            return sp.Matrix(*inner.shape, over_batch)
        if isinstance(node, LogSumExp):
            inner = inner.applyfunc(lambda v: self.settle(sp.exp(v)))
        units = inner.cols if self.row else inner.rows

        def reduce(i: int, j: int) -> sp.Basic:
            cells = [inner[i, u] if self.row else inner[u, j] for u in range(units)]
            total = sp.Add(*cells)
            return self.settle(sp.log(total) if isinstance(node, LogSumExp) else total)

        return sp.Matrix(*inner.shape, reduce)

    def _per_unit(self, node: sp.Basic, shape: tuple[int, int]) -> sp.Matrix:
        """A reduction over the units of each sample that leaves units out (symbp.symbolic.equal
        evaluates it from its definition), at every entry."""
        args = [self.elementwise(a, shape) for a in node.args]
        out = sp.zeros(*shape)
        for s in range(self.n):
            units = [list(a[s, :]) if self.row else list(a[:, s]) for a in args]
            for u, value in enumerate(per_unit(node, units)):
                out[(s, u) if self.row else (u, s)] = self.settle(value)
        return out

    def softmax(self, z: sp.Matrix) -> sp.Matrix:
        """exp(z_k) / sum_m exp(z_m) over the units of each sample."""
        e = z.applyfunc(lambda v: self.settle(sp.exp(v)))
        totals = [sp.Add(*(e[s, :] if self.row else e[:, s])) for s in range(self.n)]
        return sp.Matrix(*z.shape, lambda i, j: self.settle(e[i, j] / totals[i if self.row else j]))


def _numpy_broadcast(v: sp.Matrix, rows: int, cols: int) -> sp.Matrix:
    """v stretched to (rows, cols) by NumPy's rule (a length-1 axis repeats), else an error."""
    if v.rows not in (1, rows) or v.cols not in (1, cols):
        raise MirrorError(f"cannot broadcast shape {v.shape} to {(rows, cols)}")
    return sp.Matrix(rows, cols, lambda i, j: v[i if v.rows > 1 else 0, j if v.cols > 1 else 0])


def _start(d: Derivation, values: net.Leaves, settle: Callable) -> _Mirror:
    """A mirror holding what the generated loss_and_grads receives: params, X, Y, scale (a
    sequence's samples as the rows of their positions, as the code holds them)."""
    row = d.arch.layout == "row"
    T = d.arch.positions or 1
    mirror = _Mirror(row, values.n * T, settle)
    for name, value in values.params().items():
        mirror.env[name] = value
    if d.arch.positions:
        mirror.env["A0"] = _position_rows(values.x, T)
        mirror.env["Y"] = _position_rows(values.y, T if len(d.arch.layer_shapes[-1]) == 2 else 1)
    else:
        mirror.env["A0"] = values.x.T if row else values.x
        mirror.env["Y"] = values.y.T if row else values.y
    mirror.env["c"], mirror.env["lambda"] = values.scale, values.l2
    return mirror


def _position_rows(columns: sp.Matrix, T: int) -> sp.Matrix:
    """One column per sample, its T positions one after the other, as the rows of the
    positions: row s T + t holds position t of sample s."""
    width = columns.rows // T
    return sp.Matrix(columns.cols * T, width, lambda r, j: columns[(r % T) * width + j, r // T])


def _step(mirror: _Mirror, name: str, expr: sp.Basic, call: Callable[[], sp.Matrix]) -> None:
    """mirror.env[name] = call(), a failure naming the step of the IR it came from."""
    try:
        mirror.env[name] = call()
    except MirrorError as err:
        raise MirrorError(f"{name} = {expr}: {err}") from None


def network_gradients(
    d: Derivation, network: Network, values: net.Leaves, settle: Callable = net.settle
) -> dict[str, sp.Matrix | MirrorError]:
    """symbp's gradient of every parameter (W1, b1, gamma2, ...) from the network IR the
    module is generated from, at `values`: the forward statements, each error g as the sum
    of what its consumers send back, each node's gradients, evaluated as the code does.

    Raises MirrorError when the forward pass or an error term cannot be computed; a gradient
    that cannot be computed is returned as its MirrorError.
    """
    mirror = _start(d, values, settle)
    row, n = d.arch.layout == "row", mirror.n  # the stored rows: n T for a sequence
    params = values.params()
    for p in network.graph.parameters:  # per-unit vectors in NumPy's orientation
        if p.symbol in ("gamma", "beta"):
            mirror.env[p.key] = params[p.key].T if row else params[p.key]
    mirror.env["count"] = sp.Integer(values.n)

    def run(target: sp.Basic, value: sp.Basic, units: int) -> None:
        """target = value, over arrays of the target's own width (attention's scores are
        heads T wide) or else the layer's."""
        info = network.bindings.info(target)
        if info is not None and info.kind == Kind.SAMPLES:
            units = info.units
        shape = (n, units) if row else (units, n)
        _step(mirror, target.name, value, functools.partial(_value, mirror, value, shape))

    for nd in network.nodes:
        l, units = nd.node.index, nd.node.z.row_size
        shape = (n, units) if row else (units, n)
        for target, value in nd.forward:
            run(target, value, units)
        if nd.act is None:
            _step(
                mirror,
                array_name(Role.ACTIVATION, l),
                nd.a,
                functools.partial(mirror.softmax, mirror.env[array_name(Role.PRE_ACTIVATION, l)]),
            )
        else:
            a = through_sigmoid(nd.a)
            _step(
                mirror,
                array_name(Role.ACTIVATION, l),
                a,
                functools.partial(mirror.elementwise, a, shape),
            )
    pending: dict[str, list] = {}
    out: dict[str, sp.Matrix | MirrorError] = {}
    for nd in reversed(network.nodes):
        l, units = nd.node.index, nd.node.z.row_size
        shape = (n, units) if row else (units, n)
        if not nd.is_output:
            parts = [_value(mirror, b, shape) for b in pending.pop(nd.node.a.key)]
            mirror.env[array_name(Role.ERROR_IN, l)] = functools.reduce(lambda x, y: x + y, parts)
        delta = through_sigmoid(nd.delta)
        _step(
            mirror,
            array_name(Role.ERROR, l),
            delta,
            functools.partial(mirror.elementwise, delta, shape),
        )
        for target, value in nd.backward_steps:  # attention's dO, dV, dP, dS, dQ, dK
            run(target, value, units)
        for param, grad in nd.grads:
            try:
                value = _as_parameter(_value(mirror, grad, shape), param, row)
            except MirrorError as err:
                out[param.key] = err
                continue
            # a weight read by two layers (a tied embedding): the gradients add up
            earlier = out.get(param.key)
            out[param.key] = value if earlier is None else earlier + value
        for tensor, back in nd.backs:
            pending.setdefault(tensor.key, []).append(back)
    return {key: out[key] for key in params}


def _value(mirror: _Mirror, expr: sp.Basic, shape: tuple[int, int]) -> sp.Matrix:
    """A matrix expression's value, or an elementwise one's over arrays of `shape`."""
    if isinstance(expr, sp.MatrixExpr):
        return mirror.matrix(expr)
    if any(isinstance(t, ImageOp) and t.fills for t in sp.Add.make_args(expr)):
        return _image_value(mirror, expr, shape)
    return mirror.elementwise(expr, shape)


def _image_value(mirror: _Mirror, expr: sp.Basic, shape: tuple[int, int]) -> sp.Matrix:
    """An image operation (or a sum of them and terms shaped like them: lambda W) run
    entry by entry as the module's helper is documented to compute it (symbp.images);
    a per-channel total as a column of one sum per channel."""
    if isinstance(expr, ChannelOp):
        return sp.Matrix(mirror.channel_sums(expr, shape))
    if isinstance(expr, (*SEQUENCE_OPS, *ATTENTION_OPS, *RECURRENT_OPS)):
        arrays = [None if a == 0 else _operand(mirror, a, shape) for a in expr.arrays]
        try:
            value = sequences.evaluate(type(expr), arrays, expr.window)
        except sequences.SequenceEvalError as err:
            raise MirrorError(str(err)) from None
        return value.applyfunc(mirror.settle)
    if isinstance(expr, ImageOp):
        arrays = [None if a == 0 else mirror.matrix_value(a) for a in expr.arrays]
        return images.evaluate(type(expr), arrays, expr.window).applyfunc(mirror.settle)
    terms = sp.Add.make_args(expr)
    ops = [t for t in terms if isinstance(t, ImageOp)]
    if len(ops) + 1 < len(terms) or not ops:
        raise MirrorError(f"no NumPy form for {expr}")
    total = functools.reduce(lambda x, y: x + y, [_image_value(mirror, t, shape) for t in ops])
    rest = [t for t in terms if not isinstance(t, ImageOp)]
    if rest:
        total = total + mirror.elementwise(rest[0], total.shape)
    return total.applyfunc(mirror.settle)


def _operand(mirror: _Mirror, expr: sp.Basic, shape: tuple[int, int]) -> sp.Matrix:
    """An operation's argument: a stored array, another operation or an elementwise formula
    shaped like the result, or a number times one (attention's scores times 1/sqrt(d_h))."""
    numbers = [f for f in sp.Mul.make_args(expr) if f.is_number]
    rest = sp.Mul(*[f for f in sp.Mul.make_args(expr) if not f.is_number])
    if isinstance(rest, ImageOp):
        value = _image_value(mirror, rest, shape)
    elif isinstance(rest, (sp.Symbol, sp.MatrixSymbol)):
        value = mirror.matrix_value(rest)
    else:
        value = mirror.elementwise(rest, shape)
    if numbers:
        k = sp.Mul(*numbers)
        value = value.applyfunc(lambda v: mirror.settle(k * v))
    return value


def _as_parameter(value: sp.Matrix, param: Any, row: bool) -> sp.Matrix:
    """A gradient in the parameter's shape: a per-unit sum over the batch was broadcast back
    over the samples by the mirror; its first sample is the vector."""
    vector = len(param.shape) == 1 or param.stored_flat
    if not vector or value.shape == (param.size, 1):
        return value
    return value[0, :].T if row else value[:, 0]


# ---------------------------------------------------------------- comparison


@dataclass
class _Run:
    """Everything computed for one architecture, per parameter name."""

    arch: Arch
    leaves: net.Leaves
    points: list[dict]
    reference_at: list[dict[str, list]]  # per point
    symbp_at: list[dict[str, sp.Matrix | MirrorError]] | MirrorError
    reference_sym: dict[str, list] | None = None
    symbp_sym: dict[str, sp.Matrix | MirrorError] | None = None


def _choose(reference: str, arch: Arch) -> str:
    """'nested' when the whole loss is small enough to differentiate, else 'chain'."""
    if reference != "auto":
        return reference
    if unsupported(arch) is not None:
        return "chain"  # the whole loss of a graph is costly to differentiate
    softmax = arch.layers[-1].activation == "softmax"
    size = net.nested_size(arch.layer_sizes, softmax)
    return "nested" if size <= net.NESTED_LIMIT else "chain"


def _symbp_numeric(
    d: Derivation, network: Network, leaves: net.Leaves, points: list
) -> list | MirrorError:
    try:
        return [network_gradients(d, network, leaves.at(p)) for p in points]
    except MirrorError as err:
        return err


def _prepare(
    d: Derivation,
    network: Network,
    kind: str,
    points: int,
    seed: int,
    symbolic: bool,
    say: Callable,
) -> _Run:
    """Draw the points and compute both sides (symbolically too when simplify will be tried)."""
    arch = d.arch
    leaves = net.make_leaves(arch)
    rng = random.Random(seed)
    pts = [net.random_point(arch, leaves, rng) for _ in range(points)]
    run = _Run(arch, leaves, pts, [], _symbp_numeric(d, network, leaves, pts))
    if kind == "chain":
        say("reference: chain rule at each point")
        maps = net.layer_maps(arch, leaves)
        run.reference_at = [net.chain_gradients(arch, leaves, p, maps) for p in pts]
        return run
    say("reference: sympy.diff of the scalar loss")
    grads = net.nested_gradients(arch, leaves)
    for p in pts:
        memo: dict = {}
        run.reference_at.append(
            {k: [net.evaluate(g, p, memo) for g in v] for k, v in grads.items()}
        )
    if symbolic and not isinstance(run.symbp_at, MirrorError):
        run.reference_sym = grads
        run.symbp_sym = network_gradients(d, network, leaves, settle=lambda v: v)
    return run


def _all_simplify_to_zero(reference: list, symbp: list) -> bool:
    """sympy.simplify(reference - symbp) == 0 for every entry."""
    try:
        return all(
            sp.simplify(net.expand_opaque(r) - s) == 0
            for r, s in zip(reference, symbp, strict=True)
        )
    except Exception:  # noqa: BLE001 - any failure only means "not proven" (bounded() ends the budget)
        return False


def _labels(arch: Arch, name: str) -> list[str]:
    """Each entry's name, W1[i,j] or b1[i], from the parameter's shape in the graph."""
    shape = next(p.shape for p in build_graph(arch).parameters if p.key == name)
    if len(shape) != 2:
        return [f"{name}[{','.join(map(str, at))}]" for at in itertools.product(*map(range, shape))]
    return [f"{name}[{i},{j}]" for i in range(shape[0]) for j in range(shape[1])]


def _magnitude(value: sp.Basic) -> sp.Expr | None:
    """|value| as a real number, or None when it is not a finite number."""
    size = sp.Abs(value)
    return size if size.is_number and size.is_finite and size.is_extended_real else None


def _points_row(run: _Run, name: str) -> VerifyRow:
    """Compare reference and symbp entry by entry at every point."""
    assert not isinstance(run.symbp_at, MirrorError)
    labels = _labels(run.arch, name)
    worst, exact = sp.S.Zero, True
    for k, (ref, ours) in enumerate(zip(run.reference_at, run.symbp_at, strict=True)):
        entries = ours[name]
        assert not isinstance(entries, MirrorError)
        for label, r, s in zip(labels, ref[name], entries, strict=True):
            diff = net.settle(r - s)
            exact = exact and all(net.settle(v).is_Rational for v in (r, s))
            size = _magnitude(diff)
            if size is None or size >= TOLERANCE:
                method = _method(all(net.settle(v).is_Rational for v in (r, s)), len(run.points))
                detail = f"{label} at point {k + 1}: reference {_show(r)}, symbp {_show(s)}"
                return VerifyRow(name, method, False, detail)
            worst = max(worst, size)
    method = _method(exact, len(run.points))
    shown = "0" if worst == 0 else f"{float(worst):.1e}"
    return VerifyRow(name, method, True, f"max |difference| {shown} over {len(labels)} entries")


def _method(exact: bool, count: int) -> str:
    return f"{'exact' if exact else '60-digit'} at {count} points"


def _show(value: sp.Basic) -> str:
    number = sp.N(value, 8)
    return str(number) if not number.is_Float else f"{float(number):.8g}"


def _row(run: _Run, name: str, seconds: float) -> VerifyRow:
    """simplify within the budget, else evaluation at the points."""
    if isinstance(run.symbp_at, MirrorError):
        return VerifyRow(name, "-", False, f"cannot evaluate symbp's IR: {run.symbp_at}")
    first = run.symbp_at[0][name]
    if isinstance(first, MirrorError):
        return VerifyRow(name, "-", False, f"cannot evaluate symbp's IR: {first}")
    got, want = first.shape, run.leaves.params()[name].shape
    if got != want:
        return VerifyRow(name, "-", False, f"symbp's gradient has shape {got}, {name} {want}")
    symbolic = run.symbp_sym[name] if run.symbp_sym is not None else None
    if run.reference_sym is not None and isinstance(symbolic, sp.MatrixBase) and seconds > 0:
        ref, ours = run.reference_sym[name], list(symbolic)
        if bounded(lambda: _all_simplify_to_zero(ref, ours), False, seconds):
            return VerifyRow(name, "simplify", True, f"all {len(ref)} entries simplify to 0")
    return _points_row(run, name)


def _check_options(max_units: int, points: int, simplify_seconds: float, reference: str) -> None:
    if max_units < 1:
        raise VerifyError(f"--max-units must be at least 1, got {max_units}", fix="use e.g. 3")
    if points < 1:
        raise VerifyError(f"--points must be at least 1, got {points}", fix="use e.g. 3")
    if simplify_seconds < 0:
        raise VerifyError("the simplify budget must be >= 0 seconds", fix="use 0 to skip it")
    if reference not in REFERENCES:
        raise VerifyError(f"unknown reference {reference!r}", fix=f"use one of {REFERENCES}")


def _check_size(arch: Arch, max_units: int) -> None:
    params = parameter_count(arch)
    if params * len(arch.layers) > MAX_WORK:
        raise VerifyError(
            f"the shrunk network ({params:,} parameters, {len(arch.layers)} layers) "
            "is too large to verify",
            fix=f"use a smaller --max-units than {max_units}",
        )


def verify_arch(
    arch: Arch | str,
    max_units: int = 3,
    points: int = 3,
    seed: int = 0,
    *,
    tamper: Callable[[Network], Network] | None = None,
    simplify_seconds: float = SIMPLIFY_SECONDS,
    reference: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> VerifyResult:
    """Check every gradient symbp derives for a shrunk `arch` (or arch.yaml path).

    tamper(network) -> network edits the IR before it is evaluated (to see a failure);
    reference forces "nested" (sympy.diff of the whole loss) or "chain" instead of "auto".
    """
    _check_options(max_units, points, simplify_seconds, reference)
    if not isinstance(arch, Arch):
        arch = load_arch(arch)
    folds = [n.kind for n in build_graph(arch).nodes if n.regroups_rows]
    if folds:
        raise VerifyError(
            f"verify's references do not cover a {folds[0]} that turns a sequence into a "
            "vector yet (a sample's T rows become one, and verify's mirror of the code holds "
            "one row count)",
            file=arch.source,
            path="layers",
            fix="check it with  symbp gradcheck  (central differences), which covers it",
        )
    small = shrink(arch, max_units)
    _check_size(small, max_units)
    say = progress or (lambda _: None)
    say(f"deriving {small.name} at sizes {'-'.join(map(str, small.layer_sizes))}")
    d = derive(small)
    network = derive_network(d)
    if tamper is not None:
        network = tamper(network)
    kind = _choose(reference, small)
    run = _prepare(d, network, kind, points, seed, simplify_seconds > 0, say)
    rows = []
    for name in run.leaves.params():
        say(f"checking {name}")
        rows.append(_row(run, name, simplify_seconds))
    return VerifyResult(tuple(rows), small, kind)


def format_table(result: VerifyResult) -> str:
    """The rows as a plain-text table under a line describing the instance."""
    arch = result.small_arch
    sizes = "-".join("x".join(map(str, shape)) for shape in arch.layer_shapes)
    lines = [
        f"{arch.name}: sizes {sizes}, n = {result.n} samples, {arch.layout} layout",
        f"reference: {result.reference_text}{_WHY.get(result.reference, '')}",
        f"{'parameter':<10} {'shape':<6} {'method':<22} {'result':<6} detail",
    ]
    # Each parameter as the module shapes it: a kernel (F, C, kh, kw), else its matrix.
    params = {key: m.shape for key, m in net.make_leaves(arch).params().items()}
    params.update({p.key: p.shape for p in build_graph(arch).parameters if len(p.shape) == 4})
    for r in result.rows:
        shape = "x".join(map(str, params[r.parameter])) if r.parameter in params else "?"
        verdict = "ok" if r.ok else "FAIL"
        lines.append(f"{r.parameter:<10} {shape:<6} {r.method:<22} {verdict:<6} {r.detail}")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `verify ARCH.yaml [--max-units N] [--points K] [--seed S]` to the CLI."""
    p = subparsers.add_parser(
        "verify",
        help="prove the derived gradients equal sympy.diff of the loss on a small instance",
    )
    p.add_argument("arch", help="the architecture file (arch.yaml)")
    p.add_argument("--max-units", type=int, default=3, help="widest layer checked (default 3)")
    p.add_argument("--points", type=int, default=3, help="random rational points (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the points (default 0)")
    p.add_argument(
        "--simplify-seconds",
        type=float,
        default=SIMPLIFY_SECONDS,
        help=f"simplify budget per parameter matrix (default {SIMPLIFY_SECONDS:g}; 0 skips it)",
    )
    return p


def _to_stderr(message: str) -> None:
    print(f"verify: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Print the table; 0 when every gradient holds, 1 otherwise."""
    result = verify_arch(
        load_arch(args.arch),
        args.max_units,
        args.points,
        args.seed,
        simplify_seconds=getattr(args, "simplify_seconds", SIMPLIFY_SECONDS),
        progress=_to_stderr if sys.stderr.isatty() else None,
    )
    print(format_table(result))
    if result.ok:
        count = len(result.rows)
        print(f"verified: all {count} gradients proven equal to {result.reference_text}")
        return 0
    failed = ", ".join(r.parameter for r in result.rows if not r.ok)
    print(f"FAILED: {failed} differ from {result.reference_text}")
    return 1


__all__ = [
    "MirrorError",
    "VerifyError",
    "VerifyResult",
    "VerifyRow",
    "add_parser",
    "format_table",
    "run",
    "shrink",
    "network_gradients",
    "verify_arch",
]
