"""The reference for ``symbp verify``: a small network written out as scalar SymPy expressions.

Every weight, bias, input and target is its own Symbol. Two references are built from the
same symbols: the whole scalar loss differentiated with ``sympy.diff`` (small networks), and,
when that expression would be too large to differentiate, the chain rule over each layer's
map, every partial derivative taken with ``sympy.diff`` and evaluated at a point.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

import sympy as sp

from symbp.activations import X, elementwise_expr
from symbp.derive import unit_loss
from symbp.expr import parse_expression
from symbp.output import Y_VAR, YHAT_VAR
from symbp.spec import Arch

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

    @property
    def n(self) -> int:
        return self.x.shape[1]

    def params(self) -> dict[str, sp.Matrix]:
        """W1, b1, W2, ... in the order of the generated module's parameters."""
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
        )


def _matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}[{i},{j}]", real=True))


def _vector(name: str, rows: int) -> sp.Matrix:
    return sp.Matrix(rows, 1, lambda i, _: sp.Symbol(f"{name}[{i}]", real=True))


def _targets(arch: Arch, n: int) -> sp.Matrix:
    """Target symbols; each sample's cross-entropy targets sum to 1 exactly."""
    k = arch.layer_sizes[-1]
    y = _matrix("Y", k, n)
    if arch.loss.kind == "cross_entropy":
        for s in range(n):
            y[k - 1, s] = 1 - sum(y[: k - 1, s], sp.S.Zero)
    return y


def make_leaves(arch: Arch, n: int = N_SAMPLES) -> Leaves:
    """Symbols for every parameter, input and target of `arch` on a batch of n samples."""
    sizes = arch.layer_sizes
    weights = tuple(_matrix(f"W{l}", sizes[l], sizes[l - 1]) for l in range(1, len(sizes)))
    biases = tuple(_vector(f"b{l}", sizes[l]) for l in range(1, len(sizes)))
    x = _matrix("X", sizes[0], n)
    scale = sp.Rational(1, n) if arch.reduction == "mean" else sp.S.One
    return Leaves(weights, biases, x, _targets(arch, n), scale, sp.nsimplify(str(arch.l2)))


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
    for m in (*leaves.weights, *leaves.biases, leaves.x):
        point.update({s: _small(rng) for s in m})
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
        return opaque(sp.diff(self.impl, X))(self.args[0])


_OPAQUE: dict[sp.Expr, type[Opaque]] = {}


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


def scalar_loss(arch: Arch, leaves: Leaves) -> sp.Expr:
    """The loss L as one scalar expression (activations kept opaque, see Opaque)."""
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


def nested_size(sizes: tuple[int, ...], softmax: bool, n: int = N_SAMPLES) -> int:
    """A rough size of the whole loss times the number of parameters (for choosing)."""
    tree = 1
    for n_in in sizes[:-1]:
        tree = n_in * (tree + 2) + 2
    loss = n * sizes[-1] * tree * (sizes[-1] if softmax else 1)
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    return loss * params


@dataclass(frozen=True)
class _Local:
    """A generic row of a dense layer, z = sum_j w_j g(u_j) + beta, and its partials."""

    u: tuple[sp.Symbol, ...]
    w: tuple[sp.Symbol, ...]
    z: sp.Expr
    dz_du: tuple[sp.Expr, ...]  # by sympy.diff
    dz_dw: tuple[sp.Expr, ...]

    def at(self, expr: sp.Expr, u: list[sp.Expr], w: sp.Matrix, beta: sp.Expr) -> sp.Expr:
        """expr at inputs u, weight row w and bias beta."""
        values = {**dict(zip(self.u, u, strict=True)), **dict(zip(self.w, w, strict=True))}
        return settle(expr.xreplace({**values, _BETA: beta}))


_BETA = sp.Symbol("beta", real=True)


def _local(f: sp.Expr, n_in: int) -> _Local:
    """The row of a layer fed by g(u) = f(u) (f = x for the input layer), differentiated."""
    u = sp.symbols(f"u0:{n_in}", real=True)
    w = sp.symbols(f"w0:{n_in}", real=True)
    z = sp.Add(*[w[j] * f.xreplace({X: u[j]}) for j in range(n_in)], _BETA)
    return _Local(u, w, z, tuple(sp.diff(z, s) for s in u), tuple(sp.diff(z, s) for s in w))


@dataclass
class _Layer:
    """One layer at the point: pre-activations, Jacobians and weight partials per sample."""

    zeta: list[list[sp.Expr]]  # [sample][unit]
    jac: list[list[list[sp.Expr]]]  # [sample][unit][input unit]: dz_i / du_j
    dz_dw: list[list[list[sp.Expr]]]  # [sample][unit][input unit]: dz_i / dW_ij


def _layer_at(local: _Local, w: sp.Matrix, b: sp.Matrix, inputs: list[list[sp.Expr]]) -> _Layer:
    """Evaluate a layer's map and its sympy.diff partials at every sample."""
    zeta, jac, dw = [], [], []
    for u in inputs:
        rows = [(w[i, :], b[i]) for i in range(w.rows)]
        zeta.append([local.at(local.z, u, r, beta) for r, beta in rows])
        jac.append([[local.at(d, u, r, beta) for d in local.dz_du] for r, beta in rows])
        dw.append([[local.at(d, u, r, beta) for d in local.dz_dw] for r, beta in rows])
    return _Layer(zeta, jac, dw)


def _forward_layers(arch: Arch, values: Leaves) -> list[_Layer]:
    """Every layer at the point, each fed by the previous layer's pre-activations."""
    inputs = [list(values.x[:, s]) for s in range(values.n)]
    feed, layers = X, []
    for w, b, layer in zip(values.weights, values.biases, arch.layers, strict=True):
        layers.append(_layer_at(_local(feed, w.cols), w, b, inputs))
        inputs = layers[-1].zeta
        feed = X if layer.activation == "softmax" else activation(arch, layer.activation)
    return layers


def _output_partials(arch: Arch, values: Leaves, zeta: list[list[sp.Expr]]) -> list[list]:
    """d(c * sum_k e(a_k, y_k)) / dz_k of every sample's output pre-activations, by sympy.diff."""
    k = values.y.rows
    u, t = sp.symbols(f"u0:{k}", real=True), sp.symbols(f"t0:{k}", real=True)
    a = _apply(arch, arch.layers[-1].activation, list(u), kept=False)
    loss = values.scale * _sample_loss(arch, a, sp.Matrix(t))
    grads = [sp.diff(loss, s) for s in u]
    out = []
    for s, z in enumerate(zeta):
        point = {**dict(zip(u, z, strict=True)), **dict(zip(t, values.y[:, s], strict=True))}
        out.append([settle(g.xreplace(point)) for g in grads])
    return out


def _tangent(layers: list[_Layer], m: int, s: int, start: list[sp.Expr]) -> list[sp.Expr]:
    """Forward mode: dz^(L)/dtheta from dz^(m)/dtheta through each layer's Jacobian."""
    t = start
    for layer in layers[m + 1 :]:
        jac = layer.jac[s]
        t = [settle(sp.Add(*[row[q] * t[q] for q in range(len(t))])) for row in jac]
    return t


def chain_gradients(arch: Arch, leaves: Leaves, point: Point) -> dict[str, list[sp.Expr]]:
    """dL/dtheta at the point by the chain rule, every partial taken with sympy.diff."""
    values = leaves.at(point)
    layers = _forward_layers(arch, values)
    top = _output_partials(arch, values, layers[-1].zeta)
    decay = _weight_decay(leaves)
    out: dict[str, list[sp.Expr]] = {}
    for m, (w, b) in enumerate(zip(leaves.weights, leaves.biases, strict=True)):
        n, grads = values.n, []
        for i, j in [(i, j) for i in range(w.rows) for j in range(w.cols)]:
            seed = [layers[m].dz_dw[s][i][j] for s in range(n)]
            l2_part = settle(sp.diff(decay, w[i, j]).xreplace(point))
            grads.append(settle(_total(layers, top, m, i, seed) + l2_part))
        out[f"W{m + 1}"] = grads
        out[f"b{m + 1}"] = [_total(layers, top, m, i, [sp.S.One] * n) for i in range(b.rows)]
    return out


def _total(layers: list[_Layer], top: list[list], m: int, i: int, seed: list) -> sp.Expr:
    """sum over samples and outputs of dL/dz^(L) dz^(L)/dtheta for theta in row i of layer m."""
    total = sp.S.Zero
    for s, dz_dtheta in enumerate(seed):
        start = [sp.S.Zero] * len(layers[m].zeta[s])
        start[i] = dz_dtheta
        t = _tangent(layers, m, s, start)
        total += sp.Add(*[g * v for g, v in zip(top[s], t, strict=True)])
    return settle(total)
