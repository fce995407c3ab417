"""The convolution layer's calculus, derived by SymPy in index notation.

For one sample n, filter f and output position (i, j), with x the zero-padded input:

    z_{n,f,i,j} = b_f + sum_{c,p,q} W_{f,c,p,q} x_{n,c, s_h i + p, s_w j + q}.

SymPy differentiates this with respect to W_{f',c',p',q'}, b_{f'} and x_{n',c',u,v}; the
derivatives are products of Kronecker deltas, which SymPy sums out against the error
term delta = dL/dz:

    dL/dW_{f',c',p',q'} = sum_{n,i,j} delta_{n,f',i,j} x_{n,c', s_h i + p', s_w j + q'}
    dL/db_{f'}         = sum_{n,i,j} delta_{n,f',i,j}
    dL/dx_{n,c',u,v}   = sum_{f,i,j} delta_{n,f,i,j} W_{f,c', u - s_h i, v - s_w j}

(W taken as zero outside its kh x kw support): the kernel's gradient is the correlation
of the input with the error term, and what goes back to the input is the full
correlation of the error term with the flipped kernel. Each result is checked to be the
index form of the whole-array operation the code evaluates (symbp.ir.image_ops); a
SymPy whose derivation came out otherwise would stop generation rather than emit a
product the derivation does not support. Forward mode moves W, b and x along W', b', x'.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from symbp.errors import DerivationError

_int = {"integer": True, "nonnegative": True}
# the filter (output channel) is o: f is a layer's activation function in the documents
n, f, c, i, j, p, q = sp.symbols("s o c i j p q", **_int)
f2, c2, p2, q2, u, v = sp.symbols("o' c' p' q' u v", **_int)
N, F, C, KH, KW, HO, WO = sp.symbols("n F C k_h k_w h_o w_o", integer=True, positive=True)
SH, SW = sp.symbols("S_h S_w", integer=True, positive=True)
T = sp.Symbol("t", real=True)
X = sp.IndexedBase("x", real=True)
XD = sp.IndexedBase(r"\dot{x}", real=True)
W = sp.IndexedBase("W", real=True)
WD = sp.IndexedBase(r"\dot{W}", real=True)
B = sp.IndexedBase("b", real=True)
BD = sp.IndexedBase(r"\dot{b}", real=True)
D = sp.IndexedBase(r"\delta", real=True)

_WINDOW = ((c, 0, C - 1), (p, 0, KH - 1), (q, 0, KW - 1))
_OUTPUTS = ((n, 0, N - 1), (f, 0, F - 1), (i, 0, HO - 1), (j, 0, WO - 1))


def correlate(weights: sp.IndexedBase, x: sp.IndexedBase) -> sp.Expr:
    """sum_{c,p,q} W_{f,c,p,q} x_{n,c,s_h i+p,s_w j+q}: the correlation at (n, f, i, j)."""
    return sp.Sum(weights[f, c, p, q] * x[n, c, SH * i + p, SW * j + q], *_WINDOW)


@dataclass(frozen=True)
class ConvDerivation:
    """Each step SymPy took, in index form."""

    z: sp.Expr
    dz_dW: sp.Expr  # with the Kronecker deltas, before summing out
    dz_dx: sp.Expr
    dW: sp.Expr  # dL/dW_{f',c',p',q'}
    db: sp.Expr
    dx: sp.Expr  # dL/dx_{n,c',u,v}, W zero outside its support
    dx_unit_stride: sp.Expr  # the same with s = 1 and p = u - i: the flipped kernel
    tangent: sp.Expr  # z' along W', b', x'

    def __repr__(self) -> str:
        return f"ConvDerivation(dL/dx = {self.dx})"


def _drop_bounds(expr: sp.Expr) -> sp.Expr:
    """Drop SymPy's guards that an index is within its range: c' <= C - 1 always holds,
    and a guard on the kernel's support (0 <= u - s i <= kh - 1) is the convention that W
    is zero outside its kh x kw entries (as delta is outside the output positions)."""

    def guard(e: sp.Basic) -> bool:
        return (
            isinstance(e, sp.Piecewise)
            and len(e.args) == 2
            and e.args[1] == (sp.S.Zero, sp.true)
            and not e.args[0].cond.has(sp.Indexed)
        )

    return expr.replace(guard, lambda e: e.args[0].expr)


def _summed(expr: sp.Expr) -> sp.Expr:
    """sum over every sample, filter and output position of delta times expr, done."""
    return _sum_deltas(_drop_bounds(sp.Sum(D[n, f, i, j] * expr, *_OUTPUTS).doit()))


def _sum_deltas(expr: sp.Expr) -> sp.Expr:
    """Every sum over an index k whose summand has a factor [k = e] (e free of k): the
    factor dropped, k replaced by e and its limit removed (e is within k's range)."""

    def one(e: sp.Sum) -> sp.Expr:
        body, limits = e.function, list(e.limits)
        for limit in list(limits):
            k = limit[0]
            delta = next(
                (
                    d
                    for d in sp.Mul.make_args(body)
                    if isinstance(d, sp.KroneckerDelta) and k in d.args and d.args.count(k) == 1
                ),
                None,
            )
            if delta is None:
                continue
            other = delta.args[1] if delta.args[0] == k else delta.args[0]
            if k in other.free_symbols:
                continue
            body = (body / delta).subs(k, other)
            limits.remove(limit)
        return sp.Sum(body, *limits) if limits else body

    return expr.replace(lambda e: isinstance(e, sp.Sum), one)


@functools.lru_cache(maxsize=1)
def derive_conv() -> ConvDerivation:
    """The conv layer's derivatives, by SymPy, checked against the operations' forms."""
    z = B[f] + correlate(W, X)
    dz_dW = sp.diff(z, W[f2, c2, p2, q2])
    dz_dx = sp.diff(z, X[n, c2, u, v])  # sample n only: the others do not read it
    dW = _summed(dz_dW)
    db = _summed(sp.diff(z, B[f2]))
    dx = _sum_deltas(_drop_bounds(sp.Sum(D[n, f, i, j] * dz_dx, *_OUTPUTS[1:]).doit()))
    _expect("dL/dW", dW, sp.Sum(D[n, f2, i, j] * X[n, c2, SH * i + p2, SW * j + q2], *_rest(f)))
    _expect("dL/db", db, sp.Sum(D[n, f2, i, j], *_rest(f)))
    _expect("dL/dx", dx, _flipped_expected())
    velocity = {X: XD, W: WD, B: BD}
    moved = z.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base in velocity,
        lambda e: e + T * velocity[e.base][e.indices],
    )
    tangent = sp.expand(sp.diff(moved, T).subs(T, 0).doit())
    _expect("z'", tangent, BD[f] + correlate(W, XD) + correlate(WD, X))
    unit = dx.subs({SH: 1, SW: 1})
    return ConvDerivation(z, dz_dW, dz_dx, dW, db, dx, _flip_indices(unit), tangent)


def _rest(without: sp.Symbol) -> tuple:
    """The output limits without the one an index was summed out of."""
    return tuple(limit for limit in _OUTPUTS if limit[0] != without)


def _flipped_expected() -> sp.Expr:
    return sp.Sum(D[n, f, i, j] * W[f, c2, u - SH * i, v - SW * j], *_OUTPUTS[1:])


def _expect(what: str, derived: sp.Expr, expected: sp.Expr) -> None:
    """Stop unless SymPy's result is the operation the code evaluates."""
    if sp.expand(derived - expected) != 0 and derived.doit() != expected.doit():
        raise DerivationError(
            f"the convolution's {what} came out of SymPy as {derived}, not {expected}, "
            "the form the generated code evaluates",
            fix="report this with your SymPy version (symbp is tested with the one it pins)",
        )


def _flip_indices(unit: sp.Expr) -> sp.Expr:
    """With stride 1, the sum over output positions i written over kernel offsets
    p = u - i: sum_{f,p,q} delta_{n,f,u-p,v-q} W_{f,c',p,q}, the flipped kernel."""
    body = unit.function if isinstance(unit, sp.Sum) else unit
    body = body.subs({i: u - p, j: v - q}, simultaneous=True)
    return sp.Sum(body, (f, 0, F - 1), (p, 0, KH - 1), (q, 0, KW - 1))
