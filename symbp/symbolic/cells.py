"""One time step of a recurrent cell (rnn, lstm, gru) as SymPy statements, and its local
derivatives: reverse mode (the backward step of backpropagation through time), forward mode
(the tangent step) and the R-operator of the backward step, each derived by SymPy.

A step reads, for each gate g of the cell, u_g = (x_t W_ih^T + b_ih)_g and
v_g = (h_(t-1) W_hh^T + b_hh)_g, and the carries of the step before (h_(t-1), and c_(t-1) for
an lstm). Everything is per unit j (index notation: the equations hold entry by entry, the
matrix products being outside the step), so a statement is one of
- an activation applied to an expression: s = F(e), F' taken from SymPy's derivative of F
  written through F's own value (symbp.symbolic.calculus: sigma' = a (1 - a),
  tanh' = 1 - a^2, relu' = [a > 0]);
- a polynomial in earlier symbols: s = e, differentiated by sympy.diff.

The backward step is reverse mode over the statements: each symbol's adjoint
d_s = sum over the statements t that read s of d_t de_t/ds, the local partials from SymPy.
The tangent step is forward mode: s' = sum_x de_s/dx x'. The R-operator of the backward step
differentiates each adjoint along the tangents (R{d_s} = sum_x dd_s/dx x' + the adjoints'
R's). What a step keeps for the backward pass is what these read (the cost rule: nothing is
recomputed in reverse).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from symbp.errors import DerivationError
from symbp.ir.recurrent_ops import CELL_NAMES
from symbp.symbolic.activations import BUILTIN, X
from symbp.symbolic.calculus import A, derive_activation

CELLS = CELL_NAMES  # the cells, in the order the loops' geometry numbers them


def _s(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


@dataclass(frozen=True)
class Statement:
    """s = F(arg) for an activation F (`activation` its name), or s = arg (activation "")."""

    target: sp.Symbol
    arg: sp.Expr
    activation: str = ""

    @property
    def value(self) -> sp.Expr:
        """The right-hand side as an expression (F applied, for the numeric check)."""
        return BUILTIN[self.activation](self.arg) if self.activation else self.arg

    def tangent(self) -> sp.Expr:
        """target' = F'(arg) arg' (or arg' for a polynomial), arg' = sum_x d arg/dx x', by
        SymPy; F' through F's value, once for the whole argument."""
        inner = sp.Add(*(sp.diff(self.arg, x) * dot(x) for x in _ordered(self.arg)))
        if not self.activation:
            return inner
        return _in_value(self.activation).subs(A, self.target) * inner

    def partial(self, x: sp.Symbol) -> sp.Expr:
        """d target / d x, by SymPy: F'(arg) through F's value times d arg / dx."""
        inner = sp.diff(self.arg, x)
        if inner == 0 or not self.activation:
            return inner
        return _in_value(self.activation).subs(A, self.target) * inner


@functools.lru_cache(maxsize=8)
def _in_value(activation: str) -> sp.Expr:
    """F' written through a = F(x), derived by SymPy (symbp.symbolic.calculus)."""
    derived = derive_activation(activation, BUILTIN[activation](X))
    if derived.in_a is None or derived.in_a.has(X):
        raise DerivationError(f"{activation}' could not be written through its value")
    return derived.in_a


@dataclass(frozen=True)
class Cell:
    """A cell's step: its gates (PyTorch's order), carries, statements and derivatives."""

    name: str
    gates: tuple[str, ...]
    carries: tuple[sp.Symbol, ...]  # the new carries (h first)
    previous: tuple[sp.Symbol, ...]  # the carries of the step before
    statements: tuple[Statement, ...]
    u: tuple[sp.Symbol, ...]
    v: tuple[sp.Symbol, ...]

    @property
    def G(self) -> int:
        return len(self.gates)

    @property
    def summed(self) -> bool:
        """Whether every gate reads u_g + v_g only (rnn, lstm): then dL/du = dL/dv, and the
        hidden-to-hidden bias could as well be added to u."""
        w = [_s(f"w_{g}") for g in self.gates]
        moved = dict(zip(self.u, (wi - vi for wi, vi in zip(w, self.v, strict=True)), strict=True))
        return all(
            not (sp.expand(st.arg.xreplace(moved)).free_symbols & set(self.v))
            for st in self.statements
        )

    @functools.cached_property
    def adjoints(self) -> tuple[tuple[sp.Symbol, sp.Expr], ...]:
        """The backward step: (d_s, expression) for every symbol s in reverse order, the
        new carries' adjoints (d_h, d_c) given; ends with d_u, d_v and the previous carries'
        d (what goes to the step before, besides d_v W_hh to h_(t-1))."""
        bar: dict[sp.Symbol, list[sp.Expr]] = {c: [incoming(c)] for c in self.carries}
        out: list[tuple[sp.Symbol, sp.Expr]] = []
        for st in reversed(self.statements):
            total = sp.Add(*bar.get(st.target, []))
            if total == 0:
                continue
            out.append((adjoint(st.target), total))
            for x in sorted(st.arg.free_symbols, key=sp.default_sort_key):
                local = st.partial(x)
                if local != 0:
                    bar.setdefault(x, []).append(adjoint(st.target) * local)
        for x in (*self.u, *self.v, *self.previous):
            out.append((adjoint(x), sp.Add(*bar.get(x, []))))
        return tuple(out)

    @functools.cached_property
    def tangents(self) -> tuple[tuple[sp.Symbol, sp.Expr], ...]:
        """The tangent step: (s', expression) in statement order from u', v' and the previous
        carries' tangents."""
        return tuple((dot(st.target), st.tangent()) for st in self.statements)

    @functools.cached_property
    def r_adjoints(self) -> tuple[tuple[sp.Symbol, sp.Expr], ...]:
        """R{d_s} for each adjoint of the backward step: its expression moved along the
        tangents of what it reads (R{d_x} for an adjoint read)."""
        out = []
        adjoints = {s for s, _ in self.adjoints} | {incoming(c) for c in self.carries}
        for target, expr in self.adjoints:
            moved = [sp.diff(expr, x) * (r_of(x) if x in adjoints else dot(x))
                     for x in _ordered(expr)]  # fmt: skip
            out.append((r_of(target), sp.expand(sp.Add(*moved))))
        return tuple(out)

    @functools.cached_property
    def kept(self) -> tuple[sp.Symbol, ...]:
        """What one step stores for the backward pass, its tangent and its R-operator: the
        new carries, then every other symbol those steps read, in statement order (u and v
        after), never the carries of the step before (the row before holds them)."""
        read: set[sp.Symbol] = set()
        for _, e in (*self.adjoints, *self.tangents, *self.r_adjoints):
            read |= e.free_symbols
        order = [st.target for st in self.statements] + [*self.u, *self.v]
        rest = [s for s in order if s in read and s not in self.carries]
        return (*self.carries, *rest)

    def width(self) -> int:
        """Blocks of h entries a kept row holds."""
        return len(self.kept)


ADJOINT, INCOMING, DOT, R = "d_", "g_", "t_", "r_"


def adjoint(x: sp.Symbol) -> sp.Symbol:
    return _s(ADJOINT + x.name)


def incoming(carry: sp.Symbol) -> sp.Symbol:
    """dL/d(new carry) as the step is given it: from the step after and the layers above."""
    return _s(INCOMING + carry.name)


def dot(x: sp.Symbol) -> sp.Symbol:
    return _s(DOT + x.name)


def r_of(x: sp.Symbol) -> sp.Symbol:
    """R{d_s} for the adjoint symbol d_s."""
    return _s(R + x.name)


def _ordered(expr: sp.Expr) -> list[sp.Symbol]:
    return sorted(expr.free_symbols, key=sp.default_sort_key)


def _gate_symbols(gates: tuple[str, ...]) -> tuple[tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    return tuple(_s(f"u_{g}") for g in gates), tuple(_s(f"v_{g}") for g in gates)


@functools.lru_cache(maxsize=8)
def cell(name: str) -> Cell:
    """The cell's statements (PyTorch's equations) and, checked, its derivatives (derived
    once per process: in worker processes they cost more than they save, measured on the
    3-layer LSTM of bench/recurrent.py, as the Cell's SymPy expressions are pickled back)."""
    built = _build(name)
    assert built.kept  # the backward, tangent and R steps, derived now
    return built


def _build(name: str) -> Cell:
    gates: tuple[str, ...]
    body: tuple[Statement, ...]
    if name in ("rnn_tanh", "rnn_relu"):
        gates = ("a",)
        (u,), (v,) = _gate_symbols(gates)
        h, h0 = _s("h"), _s("h_prev")
        body = (Statement(h, u + v, name[4:]),)
        built = Cell(name, gates, (h,), (h0,), body, (u,), (v,))
    elif name == "lstm":
        gates = ("i", "f", "g", "o")
        us, vs = _gate_symbols(gates)
        i, f, g, o, c, k, h = (_s(n) for n in ("i", "f", "g", "o", "c", "k", "h"))
        h0, c0 = _s("h_prev"), _s("c_prev")
        body = (
            Statement(i, us[0] + vs[0], "sigmoid"),
            Statement(f, us[1] + vs[1], "sigmoid"),
            Statement(g, us[2] + vs[2], "tanh"),
            Statement(o, us[3] + vs[3], "sigmoid"),
            Statement(c, f * c0 + i * g),
            Statement(k, c, "tanh"),
            Statement(h, o * k),
        )
        built = Cell(name, gates, (h, c), (h0, c0), body, us, vs)
    elif name == "gru":
        gates = ("r", "z", "n")
        us, vs = _gate_symbols(gates)
        r, z, n, h, h0 = (_s(x) for x in ("r", "z", "n", "h", "h_prev"))
        body = (
            Statement(r, us[0] + vs[0], "sigmoid"),
            Statement(z, us[1] + vs[1], "sigmoid"),
            Statement(n, us[2] + r * vs[2], "tanh"),
            Statement(h, (1 - z) * n + z * h0),
        )
        built = Cell(name, gates, (h,), (h0,), body, us, vs)
    else:
        raise DerivationError(f"no recurrent cell {name!r}")
    check(built)
    return built


def composed(c: Cell) -> dict[sp.Symbol, sp.Expr]:
    """Each symbol as the expression of the step's inputs (u, v, previous carries)."""
    values: dict[sp.Symbol, sp.Expr] = {}
    for st in c.statements:
        values[st.target] = st.value.xreplace(values)
    return values


def check(c: Cell) -> None:
    """check_at two points, the second the first negated (so that a rectifier's step is
    checked on both sides of its kink)."""
    for sign in (1, -1):
        check_at(c, sign)


def check_at(c: Cell, sign: int) -> None:
    """The derived steps against the composed step, evaluated at a point with 40 digits
    (mpmath): d_u, d_v and the previous carries' adjoints against central differences of
    sum_k g_k carry_k, the tangents against the directional difference. A step derived
    wrong raises DerivationError (the differences are good to about 1e-25 here; 1e-12 is
    allowed)."""
    import mpmath

    values = composed(c)
    inputs = (*c.u, *c.v, *c.previous)
    point = {
        x: sp.Float(sign * (3 * k + 1) / (7 * (k + 2)) * (-1) ** k, 40)
        for k, x in enumerate(inputs)
    }
    weights = {incoming(x): sp.Float((k + 2) / 5, 40) for k, x in enumerate(c.carries)}
    objective = sum(weights[incoming(x)] * values[x] for x in c.carries)
    env = {**point, **{s: e.xreplace(point) for s, e in values.items()}, **weights}
    for s, e in c.adjoints:  # in order: each reads adjoints computed before it
        env[s] = e.xreplace(env)
    tangent = {dot(x): sp.Float((k + 1) / 9, 40) for k, x in enumerate(inputs)}
    for s, e in c.tangents:
        env[s] = e.xreplace(env)
    with mpmath.workdps(40):
        f = sp.lambdify(inputs, objective, "mpmath")
        carries = [sp.lambdify(inputs, values[x], "mpmath") for x in c.carries]
        at = [mpmath.mpf(str(point[x])) for x in inputs]
        step = mpmath.mpf("1e-15")
        for k, x in enumerate(inputs):
            up = [v + step if j == k else v for j, v in enumerate(at)]
            down = [v - step if j == k else v for j, v in enumerate(at)]
            want = (f(*up) - f(*down)) / (2 * step)
            if abs(want - mpmath.mpf(str(env[adjoint(x)]))) > 1e-12:
                raise DerivationError(f"the {c.name} step's d{x} is not the derivative")
        move = [mpmath.mpf(str(tangent[dot(x)])) for x in inputs]
        for carry, g in zip(c.carries, carries, strict=True):
            up = [v + step * m for v, m in zip(at, move, strict=True)]
            down = [v - step * m for v, m in zip(at, move, strict=True)]
            want = (g(*up) - g(*down)) / (2 * step)
            got = env[dot(carry)].xreplace(tangent)
            if abs(want - mpmath.mpf(str(got))) > 1e-12:
                raise DerivationError(f"the {c.name} step's tangent of {carry} is wrong")
