"""The reference for ``symbp verify``: a small network written out as scalar SymPy expressions.

Every parameter, input and target is its own Symbol, and every layer kind is written out from
its definition here (not taken from symbp.derivation.kinds). Two references are built from the same
symbols: the whole scalar loss differentiated with ``sympy.diff`` (small chains of dense
layers), and the chain rule over each layer's map in reverse, every partial derivative taken
with ``sympy.diff`` of that map and evaluated at a point.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sympy as sp

from symbp.derivation.derive import unit_loss
from symbp.frontend.expr import parse_expression
from symbp.frontend.kind_keys import DEFAULT_KIND
from symbp.frontend.spec import Arch
from symbp.ir.graph import build_graph
from symbp.symbolic.activations import X, elementwise_expr
from symbp.symbolic.output import Y_VAR, YHAT_VAR

DIGITS = 60  # working precision of the evaluation at points that are not rational
N_SAMPLES = 2
NESTED_LIMIT = 100_000  # above this estimated size the loss is not differentiated whole

Point = Mapping[sp.Basic, sp.Expr]


@dataclass(frozen=True)
class Leaves:
    """The network's inputs as SymPy matrices: symbols, or numbers at a point."""

    weights: tuple[sp.Matrix, ...]  # W<l>, (n_out, n_in)
    biases: tuple[sp.Matrix, ...]  # b<l>, (n_out, 1)
    x: sp.Matrix  # (n_in, n): unit by sample
    y: sp.Matrix  # (n_out, n); for cross-entropy the last unit is 1 - the others
    scale: sp.Rational  # c: 1/n (mean) or 1 (sum)
    l2: sp.Rational
    # Every parameter, in the module's order, for networks with other kinds than dense
    # (gamma, beta as (n, 1) columns; dense layers without a bias have no b).
    named: tuple[tuple[str, sp.Matrix], ...] = ()

    @property
    def n(self) -> int:
        return self.x.shape[1]

    def params(self) -> dict[str, sp.Matrix]:
        """W1, b1, W2, ... in the order of the generated module's parameters."""
        if self.named:
            return dict(self.named)
        out = {}
        for l, (w, b) in enumerate(zip(self.weights, self.biases, strict=True), start=1):
            out[f"W{l}"], out[f"b{l}"] = w, b
        return out

    def at(self, point: Point) -> Leaves:
        """Every matrix with the point's values put in."""
        values = dict(point)

        def put(m: sp.Matrix) -> sp.Matrix:
            return m.xreplace(values)

        return Leaves(
            tuple(map(put, self.weights)),
            tuple(map(put, self.biases)),
            put(self.x),
            put(self.y),
            self.scale,
            self.l2,
            tuple((name, put(m)) for name, m in self.named),
        )


def _matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}[{i},{j}]", real=True))


def _vector(name: str, rows: int) -> sp.Matrix:
    return sp.Matrix(rows, 1, lambda i, _: sp.Symbol(f"{name}[{i}]", real=True))


def _kernel(name: str, shape: tuple[int, ...]) -> sp.Matrix:
    """W[f,c,p,q] as an (F, C kh kw) matrix, its columns in C order."""
    F, C, kh, kw = shape
    entries = [
        sp.Symbol(f"{name}[{f},{c},{p},{q}]", real=True)
        for f in range(F)
        for c in range(C)
        for p in range(kh)
        for q in range(kw)
    ]
    return sp.Matrix(F, C * kh * kw, entries)


def _targets(arch: Arch, n: int) -> sp.Matrix:
    """Target symbols, a sample's as one column (a sequence's positions one after the other);
    each sample's (each position's) cross-entropy targets sum to 1 exactly."""
    k = arch.layer_shapes[-1][-1]
    y = _matrix("Y", arch.layer_sizes[-1], n)
    if arch.loss.kind == "cross_entropy":
        for s in range(n):
            for start in range(0, y.rows, k):
                y[start + k - 1, s] = 1 - sum(y[start : start + k - 1, s], sp.S.Zero)
    return y


def _scale(arch: Arch, n: int) -> sp.Rational:
    """c: 1/(the rows of the output: n samples, or their n T positions) for a mean, else 1."""
    rows = n * (arch.layer_shapes[-1][0] if len(arch.layer_shapes[-1]) == 2 else 1)
    return sp.Rational(1, rows) if arch.reduction == "mean" else sp.S.One


def _inputs(arch: Arch, n: int) -> sp.Matrix:
    """X as one column per sample: a vector's, an image's or a sequence's entries in C order
    (symbols), or a token input's T ids (fixed integers in [0, V), each id twice or more
    when T n > V, so that the scatter-add sums repeated tokens)."""
    if arch.vocab:
        T = arch.input_shape[0]
        return sp.Matrix(T, n, lambda t, s: sp.Integer((3 * t + 2 * s) % arch.vocab))
    return _matrix("X", arch.layer_sizes[0], n)


def unsupported(arch: Arch) -> int | None:
    """The index of the first layer the chain of dense layers does not cover (None: every
    layer is dense with a bias), for which the reference writes the network as a chain."""
    if arch.positions:
        return 0  # a sequence: each sample a column of its positions' entries
    for l, layer in enumerate(arch.layers):
        if layer.type != DEFAULT_KIND or not layer.bias:
            return l
    return None


def make_leaves(arch: Arch, n: int = N_SAMPLES) -> Leaves:
    """Symbols for every parameter, input and target of `arch` on a batch of n samples."""
    if unsupported(arch) is not None:
        return _graph_leaves(arch, n)
    sizes = arch.layer_sizes
    weights = tuple(_matrix(f"W{l}", sizes[l], sizes[l - 1]) for l in range(1, len(sizes)))
    biases = tuple(_vector(f"b{l}", sizes[l]) for l in range(1, len(sizes)))
    x = _matrix("X", sizes[0], n)
    return Leaves(
        weights, biases, x, _targets(arch, n), _scale(arch, n), sp.nsimplify(str(arch.l2))
    )


def _graph_leaves(arch: Arch, n: int) -> Leaves:
    """Leaves of a graph of any kinds: every parameter of build_graph(arch) as symbols."""
    named, weights = [], []
    for p in build_graph(arch).parameters:
        if len(p.shape) == 4:  # a kernel (F, C, kh, kw): F rows of its C kh kw entries
            matrix = _kernel(p.key, p.shape)
        elif len(p.shape) == 3:  # layer norm's gamma, beta on an image: its C*H*W entries
            matrix = _vector(p.key, p.size)
        else:
            matrix = _matrix(p.key, *p.shape) if len(p.shape) == 2 else _vector(p.key, p.shape[0])
        named.append((p.key, matrix))
        weights += [matrix] if p.decayed else []
    l2 = sp.nsimplify(str(arch.l2))
    x = _inputs(arch, n)
    return Leaves(tuple(weights), (), x, _targets(arch, n), _scale(arch, n), l2, tuple(named))


def _small(rng: random.Random) -> sp.Rational:
    """A random nonzero rational in [-2, 2]; odd denominators keep sums off a kink at 0."""
    return sp.Rational(rng.choice([-1, 1]) * rng.randint(1, 40), rng.randint(19, 41))


def _target_values(arch: Arch, leaves: Leaves, rng: random.Random) -> dict[sp.Basic, sp.Expr]:
    """Targets that suit the loss: probabilities, values in (0, 1), or any value."""
    k, point = leaves.y.shape[0], {}
    for s in range(leaves.n):
        if arch.loss.kind == "cross_entropy":
            w = [rng.randint(1, 9) for _ in range(k)]
            values = [sp.Rational(v, sum(w)) for v in w]
        elif arch.loss.kind in ("bce", "expr"):
            values = [sp.Rational(rng.randint(1, 19), 20) for _ in range(k)]
        else:
            values = [_small(rng) for _ in range(k)]
        for i in range(k):
            if leaves.y[i, s].is_Symbol:
                point[leaves.y[i, s]] = values[i]
    return point


def random_point(arch: Arch, leaves: Leaves, rng: random.Random) -> dict[sp.Basic, sp.Expr]:
    """Random small rationals for every symbol (targets as the loss requires)."""
    point: dict[sp.Basic, sp.Expr] = {}
    for m in (*leaves.params().values(), leaves.x):
        point.update({s: _small(rng) for s in m if s.is_Symbol})  # token ids are fixed
    point.update(_target_values(arch, leaves, rng))
    return point


def settle(value: sp.Basic) -> sp.Basic:
    """A number kept exact while rational, else evaluated to DIGITS digits."""
    if not isinstance(value, sp.Expr) or value.is_Rational or value.is_Float:
        return value
    return value.evalf(DIGITS)


class Opaque(sp.Function):
    """An activation SymPy differentiates by the chain rule without expanding it."""

    nargs = 1
    impl: sp.Expr = X  # f(x), set on each subclass

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        derivative = _DERIVATIVE.get(type(self))
        if derivative is None:  # f' once per activation, not once per unit
            derivative = _DERIVATIVE[type(self)] = opaque(sp.diff(self.impl, X))
        return derivative(self.args[0])


_OPAQUE: dict[sp.Expr, type[Opaque]] = {}
_DERIVATIVE: dict[type, type[Opaque]] = {}


class FirstMax(sp.Function):
    """The largest argument, the first one where several are (max pooling's convention);
    its derivative with respect to argument k is FirstMaxIs(k, ...): 1 if k is that one."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return FirstMaxIs(sp.Integer(argindex - 1), *self.args)

    @classmethod
    def eval(cls, *args: sp.Expr) -> sp.Expr | None:
        if all(a.is_number for a in args):
            return args[_first_max(args)]
        return None


class FirstMaxIs(sp.Function):
    """1 if argument k (the first argument) is the first largest of the others, else 0."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.S.Zero  # piecewise constant

    @classmethod
    def eval(cls, k: sp.Expr, *args: sp.Expr) -> sp.Expr | None:
        if all(a.is_number for a in args):
            return sp.S.One if _first_max(args) == int(k) else sp.S.Zero
        return None


def _first_max(values: tuple) -> int:
    best = 0
    for k, value in enumerate(values):
        if bool(value > values[best]):
            best = k
    return best


def opaque(f: sp.Expr) -> type[Opaque]:
    """The Opaque function class of f(x) (one class per distinct f)."""
    found = _OPAQUE.get(f)
    if found is None:
        found = _OPAQUE[f] = type(f"f_{len(_OPAQUE)}", (Opaque,), {"impl": f})
    return found


def expand_opaque(expr: sp.Expr) -> sp.Expr:
    """expr with every opaque activation written out."""
    return expr.replace(lambda e: isinstance(e, Opaque), lambda e: e.impl.xreplace({X: e.args[0]}))


def evaluate(expr: sp.Basic, point: Point, memo: dict) -> sp.Basic:
    """expr at the point, each distinct subexpression once (exact, or DIGITS digits)."""
    found = memo.get(expr)
    if found is not None:
        return found
    if expr in point:
        value = point[expr]
    elif not expr.args:
        value = expr
    elif isinstance(expr, Opaque):
        value = settle(expr.impl.xreplace({X: evaluate(expr.args[0], point, memo)}))
    else:
        value = settle(expr.func(*[evaluate(a, point, memo) for a in expr.args]))
    memo[expr] = value
    return value


def activation(arch: Arch, name: str) -> sp.Expr:
    """The activation's SymPy expression in X (custom ones parsed from the file)."""
    custom = {key: parse_expression(text, {"x": X}) for key, text in arch.activations}
    return elementwise_expr(name, custom)


def _apply(arch: Arch, name: str, z: list[sp.Expr], kept: bool) -> list[sp.Expr]:
    """a = f(z) for one sample; softmax written out as exp(z_k) / sum_m exp(z_m)."""
    if name == "softmax":
        total = sp.Add(*[sp.exp(u) for u in z])
        return [sp.exp(u) / total for u in z]
    f = activation(arch, name)
    if kept:
        return [opaque(f)(u) for u in z]
    return [f.xreplace({X: u}) for u in z]


def _sample_loss(arch: Arch, a: list[sp.Expr], y: sp.Matrix) -> sp.Expr:
    """sum_k e(a_k, y_k) for one sample."""
    e = unit_loss(arch)
    named = {s.name: s for s in e.free_symbols}
    yhat, target = named.get(YHAT_VAR.name, YHAT_VAR), named.get(Y_VAR.name, Y_VAR)
    return sp.Add(*[e.xreplace({yhat: a_k, target: y_k}) for a_k, y_k in zip(a, y, strict=True)])


def _weight_decay(leaves: Leaves) -> sp.Expr:
    """(l2 / 2) * sum of every squared weight."""
    return leaves.l2 / 2 * sp.Add(*[w**2 for m in leaves.weights for w in m])


def _graph_loss(arch: Arch, leaves: Leaves) -> sp.Expr:
    """The loss of a graph of any kinds, the whole batch at once (batch norm couples the
    samples): each kind written out from its definition, independently of symbp.derivation.kinds."""
    params, outputs = leaves.params(), {0: leaves.x}
    for l in range(1, len(arch.layers) + 1):
        outputs[l] = _layer_map(arch, l, [outputs[k] for k in _reads(arch, l)], params)
    a = outputs[len(arch.layers)]
    total = [_sample_loss(arch, list(a[:, s]), leaves.y[:, s]) for s in range(leaves.n)]
    return leaves.scale * sp.Add(*total) + _weight_decay(leaves)


def _reads(arch: Arch, l: int) -> list[int]:
    """The layers (0: the input) whose outputs layer l reads: the one before it, and an
    add's `from`."""
    layer = arch.layers[l - 1]
    if layer.type == "add":
        return [l - 1, arch.layer_index[str(layer.source)]]
    return [l - 1]


def _layer_map(arch: Arch, l: int, inputs: list[sp.Matrix], params: Mapping) -> sp.Matrix:
    """a^(l) = f(z^(l)) over the whole batch, z written out from the kind's definition."""
    if arch.positions:
        return _sequence_map(arch, l, inputs, params)
    layer, a = arch.layers[l - 1], inputs[0]
    n = a.cols
    if layer.type == "dense":
        z = params[f"W{l}"] * a
        if layer.bias:
            z = z + params[f"b{l}"] * sp.ones(1, n)
    elif layer.type == "add":
        z = a + inputs[1]
    elif layer.type in ("conv2d", "maxpool2d", "avgpool2d"):
        z = sp.Matrix.hstack(*[_image_map(arch, l, a[:, s], params) for s in range(n)])
    elif layer.type == "flatten":
        z = a
    elif layer.type == "batchnorm" and layer.shape:  # each channel over samples, positions
        z = _normalise_channels(a, arch.layer_shapes[l], sp.Rational(repr(layer.eps)))
        HW = layer.shape[1] * layer.shape[2]
        gamma, beta = params[f"gamma{l}"], params[f"beta{l}"]
        z = sp.Matrix(*z.shape, lambda u, s: gamma[u // HW] * z[u, s] + beta[u // HW])
    else:
        per_sample = layer.type == "layernorm"  # normalise each sample (column) or unit (row)
        eps = sp.Rational(repr(layer.eps))
        z = _normalise(a, eps) if per_sample else _normalise(a.T, eps).T
        z = z.multiply_elementwise(params[f"gamma{l}"] * sp.ones(1, n))
        z = z + params[f"beta{l}"] * sp.ones(1, n)
    return sp.Matrix.hstack(
        *[sp.Matrix(_apply(arch, layer.activation, list(z[:, s]), True)) for s in range(n)]
    )


Rows = list[list[sp.Expr]]  # one sample of a sequence: its T positions' entries


def _sequence_map(arch: Arch, l: int, inputs: list[sp.Matrix], params: Mapping) -> sp.Matrix:
    """a^(l) of a sequence layer, each sample a column of its T positions' entries one after
    the other (a token input: its T ids), z written out from the kind's definition per
    sample, the activation applied at each position (softmax over its features)."""
    layer = arch.layers[l - 1]
    shape = arch.layer_shapes[l - 1]
    T, width = shape[0], shape[-1] if len(shape) == 2 else 1  # token ids: one a position
    out = []
    for s in range(inputs[0].cols):
        x = [list(inputs[0][t * width : (t + 1) * width, s]) for t in range(T)]
        if layer.type == "embedding":
            z = _embedding(arch, l, [int(row[0]) for row in x], params)
        elif layer.type == "attention":
            z = _attention(layer, l, x, params)
        elif layer.type in ("rnn", "lstm", "gru"):
            z = _recurrent(layer, l, x, params)
        elif layer.type == "dense":
            owner = arch.layer_index[layer.tie] if layer.tie else None
            w = params[f"E{owner}"] if owner else params[f"W{l}"]
            b = params[f"b{l}"] if layer.bias else sp.zeros(w.rows, 1)
            z = [_affine(w, b, row) for row in x]
        elif layer.type == "add":
            other = inputs[1][:, s]
            z = [[v + other[t * width + j] for j, v in enumerate(row)] for t, row in enumerate(x)]
        else:  # layernorm: each position over its features
            normal = _normalise(sp.Matrix(x).T, sp.Rational(repr(layer.eps)))
            gamma, beta = params[f"gamma{l}"], params[f"beta{l}"]
            z = [[gamma[j] * normal[j, t] + beta[j] for j in range(width)] for t in range(T)]
        a = [_apply(arch, layer.activation, row, True) for row in z]
        out.append(sp.Matrix([v for row in a for v in row]))
    return sp.Matrix.hstack(*out)


def _sigmoid(x: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-x))


def _recurrent(layer: Any, l: int, x: Rows, params: Mapping) -> Rows:
    """An rnn, lstm or gru over one sample's positions from PyTorch's equations (zero
    initial states): the gates' inputs W_ih x_t + b_ih and W_hh h_(t-1) + b_hh, cut into
    blocks of h in PyTorch's order (i, f, g, o; r, z, n); every step's h."""
    h = layer.out_shape[-1]
    W, U = params[f"Wih{l}"], params[f"Whh{l}"]
    zero = sp.zeros(W.rows, 1)
    b = params[f"bih{l}"] if layer.bias else zero
    c = params[f"bhh{l}"] if layer.bias else zero
    state, cell_state, out = [sp.S.Zero] * h, [sp.S.Zero] * h, []
    for row in x:
        gx, gh = _affine(W, b, row), _affine(U, c, state)

        def block(k: int, gates: list) -> list:
            return gates[k * h : (k + 1) * h]

        if layer.type == "rnn":
            pre = [p + q for p, q in zip(gx, gh, strict=True)]
            state = [sp.tanh(v) if layer.nonlinearity == "tanh" else sp.Max(v, 0) for v in pre]
        elif layer.type == "lstm":
            pre = [p + q for p, q in zip(gx, gh, strict=True)]
            i, f = [_sigmoid(v) for v in block(0, pre)], [_sigmoid(v) for v in block(1, pre)]
            g, o = [sp.tanh(v) for v in block(2, pre)], [_sigmoid(v) for v in block(3, pre)]
            cell_state = [f[j] * cell_state[j] + i[j] * g[j] for j in range(h)]
            state = [o[j] * sp.tanh(cell_state[j]) for j in range(h)]
        else:  # gru, PyTorch's form: r multiplies W_hn h + b_hn
            r = [_sigmoid(p + q) for p, q in zip(block(0, gx), block(0, gh), strict=True)]
            z = [_sigmoid(p + q) for p, q in zip(block(1, gx), block(1, gh), strict=True)]
            n = [sp.tanh(gx[2 * h + j] + r[j] * gh[2 * h + j]) for j in range(h)]
            state = [(1 - z[j]) * n[j] + z[j] * state[j] for j in range(h)]
        out.append(state)
    return out


def _affine(w: sp.Matrix, b: sp.Matrix, x: list[sp.Expr]) -> list[sp.Expr]:
    """W x + b for one position."""
    return [b[i] + sp.Add(*[w[i, j] * x[j] for j in range(w.cols)]) for i in range(w.rows)]


def _embedding(arch: Arch, l: int, ids: list[int], params: Mapping) -> Rows:
    """Row x_t of E plus position t: learned P, Vaswani's sinusoids (t from 0) or none."""
    layer, E = arch.layers[l - 1], params[f"E{l}"]
    dim = E.cols

    def position(t: int, j: int) -> sp.Expr:
        if layer.positions == "learned":
            return params[f"P{l}"][t, j]
        if layer.positions == "sinusoidal":
            angle = sp.Integer(t) / sp.Integer(10000) ** sp.Rational(2 * (j // 2), dim)
            return sp.sin(angle) if j % 2 == 0 else sp.cos(angle)
        return sp.S.Zero

    return [[E[x, j] + position(t, j) for j in range(dim)] for t, x in enumerate(ids)]


def _attention(layer: Any, l: int, x: Rows, params: Mapping) -> Rows:
    """Multi-head self-attention of one sample from its definition: Q, K, V = x W^T + b;
    head h's scores q_t . k_u / sqrt(d_h) over the key positions u (u <= t when causal),
    their softmax, the mix of the values; the heads side by side times Wo^T, plus bo."""
    d, T = len(x[0]), len(x)
    heads, width = layer.heads, len(x[0]) // layer.heads

    def project(letter: str, rows: Rows) -> Rows:
        w = params[f"W{letter}{l}"]
        b = params[f"b{letter}{l}"] if layer.bias else sp.zeros(d, 1)
        return [_affine(w, b, row) for row in rows]

    Q, K, V = project("q", x), project("k", x), project("v", x)
    O = [[sp.S.Zero] * d for _ in range(T)]
    for h in range(heads):
        columns = range(h * width, (h + 1) * width)
        for t in range(T):
            keys = range(t + 1) if layer.causal else range(T)
            e = [sp.exp(sp.Add(*[Q[t][i] * K[u][i] for i in columns]) / sp.sqrt(width))
                 for u in keys]  # fmt: skip
            total = sp.Add(*e)
            for i in columns:
                O[t][i] = sp.Add(*[e_u / total * V[u][i] for e_u, u in zip(e, keys, strict=True)])
    return project("o", O)


def _image_map(arch: Arch, l: int, column: sp.Matrix, params: Mapping) -> sp.Matrix:
    """One sample's output of an image layer, written out from its definition: the input is
    its C*H*W entries in C order, zero outside the image (the padding)."""
    layer = arch.layers[l - 1]
    (C, H, W), (F, Ho, Wo) = arch.layer_shapes[l - 1], layer.out_shape
    assert layer.window is not None
    (kh, kw), (sh, sw), (ph, pw) = layer.window.kernel, layer.window.stride, layer.window.padding

    def x(c: int, u: int, v: int) -> sp.Expr:
        inside = 0 <= u < H and 0 <= v < W
        return column[(c * H + u) * W + v] if inside else sp.S.Zero

    out = []
    for f in range(F):
        for i in range(Ho):
            for j in range(Wo):
                window = [
                    (c, i * sh + p - ph, j * sw + q - pw, c * kh * kw + p * kw + q)
                    for c in (range(C) if layer.type == "conv2d" else (f,))
                    for p in range(kh)
                    for q in range(kw)
                ]
                out.append(_window_value(layer, params, l, f, window, x))
    return sp.Matrix(out)


def _window_value(layer: Any, params: Mapping, l: int, f: int, window: list, x: Any) -> sp.Expr:
    """conv: b_f + sum W[f, .] x; avg: the mean; max: the first maximum (at a tie the
    earliest entry, whose derivative is 1 and the others' 0)."""
    values = [x(c, u, v) for c, u, v, _ in window]
    if layer.type == "conv2d":
        w = params[f"W{l}"]
        total = sp.Add(*[w[f, k] * value for (*_, k), value in zip(window, values, strict=True)])
        return total + (params[f"b{l}"][f] if layer.bias else 0)
    if layer.type == "avgpool2d":
        return sp.Add(*values) / len(values)
    return FirstMax(*values)


def _normalise_channels(a: sp.Matrix, shape: tuple[int, ...], eps: sp.Expr) -> sp.Matrix:
    """Each channel's entries, over every sample and position at once, minus their mean,
    over their standard deviation (biased, + eps): a is (C*H*W, n)."""
    C, HW = shape[0], shape[1] * shape[2]
    groups = [
        sp.Matrix([a[c * HW + k, s] for s in range(a.cols) for k in range(HW)]) for c in range(C)
    ]
    out = sp.zeros(*a.shape)
    for c, column in enumerate(groups):
        normal = _normalise(column, eps)
        for s in range(a.cols):
            for k in range(HW):
                out[c * HW + k, s] = normal[s * HW + k, 0]
    return out


def _normalise(x: sp.Matrix, eps: sp.Expr) -> sp.Matrix:
    """Each column of x minus its mean, over its standard deviation (biased, + eps)."""
    out = sp.zeros(*x.shape)
    for j in range(x.cols):
        column = list(x[:, j])
        mu = sp.Add(*column) / len(column)
        sigma = sp.sqrt(sp.Add(*[(v - mu) ** 2 for v in column]) / len(column) + eps)
        for i, v in enumerate(column):
            out[i, j] = (v - mu) / sigma
    return out


def scalar_loss(arch: Arch, leaves: Leaves) -> sp.Expr:
    """The loss L as one scalar expression (activations kept opaque, see Opaque)."""
    if leaves.named:
        return _graph_loss(arch, leaves)
    total = []
    for s in range(leaves.n):
        a = list(leaves.x[:, s])
        for w, b, layer in zip(leaves.weights, leaves.biases, arch.layers, strict=True):
            z = [sp.Add(*[w[i, j] * a[j] for j in range(w.shape[1])], b[i]) for i in range(b.rows)]
            a = _apply(arch, layer.activation, z, kept=True)
        total.append(_sample_loss(arch, a, leaves.y[:, s]))
    return leaves.scale * sp.Add(*total) + _weight_decay(leaves)


def nested_gradients(arch: Arch, leaves: Leaves) -> dict[str, list[sp.Expr]]:
    """sympy.diff of the scalar loss with respect to every parameter entry (row-major)."""
    loss = scalar_loss(arch, leaves)
    return {name: [sp.diff(loss, p) for p in m] for name, m in leaves.params().items()}


@dataclass(frozen=True)
class _Map:
    """One layer's map over symbols for the arrays it reads, and its partials by sympy.diff."""

    reads: tuple[int, ...]  # the layers it reads (0: the input)
    inputs: tuple[sp.Matrix, ...]  # a symbol per entry of each array read
    out: sp.Matrix  # a^(l) as expressions of those symbols and the parameters
    partials: tuple[tuple[tuple[sp.Symbol, sp.Expr], ...], ...]  # per entry of out


def layer_maps(arch: Arch, leaves: Leaves) -> tuple[_Map, ...]:
    """Every layer's map, each over its own input symbols, differentiated once."""
    sizes, n, params = arch.layer_sizes, leaves.n, leaves.params()
    maps = []
    for l in range(1, len(arch.layers) + 1):
        reads = tuple(_reads(arch, l))
        inputs = tuple(
            leaves.x if r == 0 and arch.vocab else _matrix(f"in{l}.{k}", sizes[r], n)
            for k, r in enumerate(reads)
        )  # token ids are fixed integers: the embedding looks its rows up by them
        out = _layer_map(arch, l, list(inputs), params)
        partials = tuple(
            tuple((s, sp.diff(e, s)) for s in sorted(e.free_symbols, key=sp.default_sort_key))
            for e in out
        )
        maps.append(_Map(reads, inputs, out, partials))
    return tuple(maps)


def chain_gradients(
    arch: Arch, leaves: Leaves, point: Point, maps: tuple[_Map, ...] | None = None
) -> dict[str, list[sp.Expr]]:
    """dL/dtheta at the point by the chain rule over the layers, in reverse: each layer's
    partials (sympy.diff of its map, see layer_maps) evaluated at the point, the adjoint of
    an array summed over every layer that reads it. Any graph of kinds; linear in depth."""
    maps = maps or layer_maps(arch, leaves)
    values = leaves.at(point)
    outputs, at = {0: values.x}, dict(point)
    for l, m in enumerate(maps, start=1):
        for symbols, r in zip(m.inputs, m.reads, strict=True):
            at.update(zip(symbols, outputs[r], strict=True))
        memo: dict = {}
        outputs[l] = m.out.applyfunc(lambda e, memo=memo: evaluate(e, at, memo))
    adjoint = {len(maps): _top_adjoint(arch, values, outputs[len(maps)])}
    total: dict[sp.Basic, sp.Expr] = {}
    for l in range(len(maps), 0, -1):
        m, above, memo = maps[l - 1], adjoint.pop(l), {}
        for g, partials in zip(above, m.partials, strict=True):
            for s, d in partials:
                total[s] = total.get(s, sp.S.Zero) + g * evaluate(d, at, memo)
        for symbols, r in zip(m.inputs, m.reads, strict=True):
            sent = symbols.applyfunc(lambda s: total.pop(s, sp.S.Zero))
            adjoint[r] = adjoint[r] + sent if r in adjoint else sent
    decay = _weight_decay(leaves)
    return {
        name: [settle(total.get(s, sp.S.Zero) + sp.diff(decay, s).xreplace(point)) for s in m]
        for name, m in leaves.params().items()
    }


def _top_adjoint(arch: Arch, values: Leaves, a: sp.Matrix) -> sp.Matrix:
    """dL/da^(L) of every sample: c * d(sum_k e(a_k, y_k))/da_k, by sympy.diff."""
    k = a.rows
    u, t = sp.symbols(f"u0:{k}", real=True), sp.symbols(f"t0:{k}", real=True)
    loss = values.scale * _sample_loss(arch, list(u), sp.Matrix(t))
    grads = [sp.diff(loss, s) for s in u]
    out = sp.zeros(k, values.n)
    for s in range(values.n):
        here = {**dict(zip(u, a[:, s], strict=True)), **dict(zip(t, values.y[:, s], strict=True))}
        for i, g in enumerate(grads):
            out[i, s] = settle(g.xreplace(here))
    return out


def nested_size(sizes: tuple[int, ...], softmax: bool, n: int = N_SAMPLES) -> int:
    """A rough size of the whole loss times the number of parameters (for choosing)."""
    tree = 1
    for n_in in sizes[:-1]:
        tree = n_in * (tree + 2) + 2
    loss = n * sizes[-1] * tree * (sizes[-1] if softmax else 1)
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    return loss * params
