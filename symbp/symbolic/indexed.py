"""The backpropagation equations derived by SymPy in index notation.

Nothing here is a finished formula: each result comes from sympy.diff applied
to a layer equation written with Indexed symbols, followed by doit() on the
Kronecker-delta sums. Every index lies in its range by construction, so the
range conditions SymPy attaches (Piecewise(..., (0, True))) are dropped.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from symbp.ir.naming import Layer, Role, matrix

I, P, Q, R, S = sp.symbols("i p q r s", integer=True)  # unit, summed unit, weight row/col, sample
J, K, M = sp.symbols("j k m", integer=True)  # output units
N_IN, N_OUT, N_BATCH, N_UNITS = sp.symbols("n_in n_out n K", integer=True, positive=True)

W = sp.IndexedBase("W", real=True)
B = sp.IndexedBase("b", real=True)
A_PREV = sp.IndexedBase("a", real=True)
Z = sp.IndexedBase("z", real=True)
DELTA = sp.IndexedBase("delta", real=True)
A_OUT = sp.IndexedBase("a", real=True)
Y = sp.IndexedBase("y", real=True)


def in_range(expr: sp.Expr) -> sp.Expr:
    """Drop SymPy's 'index within bounds' Piecewise: symbp's indices always are.

    Only a guard whose condition is about integer indices and sizes is dropped; a
    Piecewise of the network itself (a ReLU's derivative, a[k] > 0) is kept.
    """

    def is_range_guard(e: sp.Basic) -> bool:
        if not (
            isinstance(e, sp.Piecewise)
            and len(e.args) == 2
            and e.args[1].expr == 0
            and e.args[1].cond == sp.true
        ):
            return False
        cond = e.args[0].cond
        return not cond.has(sp.Indexed) and all(s.is_integer for s in cond.free_symbols)

    return expr.replace(is_range_guard, lambda e: e.args[0].expr)


def sum_out(term: sp.Expr, index: sp.Symbol, upper: sp.Expr) -> sp.Expr:
    """Sum(term, (index, 1, upper)) with index-free factors pulled out, then doit()."""
    inner: list[sp.Expr] = []
    outer: list[sp.Expr] = []
    for factor in sp.Mul.make_args(term):
        (inner if factor.has(index) else outer).append(factor)
    if not inner:
        return sp.Mul(*outer) * upper
    summed = in_range(sp.Sum(sp.Mul(*inner), (index, 1, upper)).doit())
    return sp.Mul(*outer) * summed


def sum_terms(expr: sp.Expr, index: sp.Symbol, upper: sp.Expr) -> sp.Expr:
    """Sum an expression term by term over index (linearity of the sum)."""
    return sp.Add(*[sum_out(t, index, upper) for t in sp.Add.make_args(sp.expand(expr))])


@dataclass(frozen=True)
class LayerCalculus:
    """The general dense-layer derivation, done once for every layer (column layout)."""

    z_def: sp.Expr  # z[i, s] = sum_p W[i, p] a[p, s] + b[i]
    dz_dW: sp.Expr  # d z[i, s] / d W[q, r]
    dz_db: sp.Expr  # d z[i, s] / d b[q]
    dz_da: sp.Expr  # d z[i, s] / d a[r, s]
    dL_dW: sp.Expr  # sum_{i, s} delta[i, s] dz[i, s]/dW[q, r]
    dL_db: sp.Expr
    dL_da: sp.Expr  # sum_i delta[i, s] dz[i, s]/da[r, s]
    dW_matrix: sp.MatrixExpr
    db_matrix: sp.MatrixExpr
    da_matrix: sp.MatrixExpr


# Matrix names for the column layout: Delta (n_out x n), A (n_in x n), W (n_out x n_in).
MAT_W = matrix(Role.WEIGHT, Layer.GENERAL, N_OUT, N_IN)
MAT_A = matrix(Role.ACTIVATION, Layer.PREVIOUS, N_IN, N_BATCH)
MAT_DELTA = matrix(Role.ERROR, Layer.GENERAL, N_OUT, N_BATCH)
ONES = sp.OneMatrix(N_BATCH, 1)
# Tangents (forward mode) and Pearlmutter's R{.}: same shapes as what they perturb.
MAT_WD = matrix(Role.WEIGHT_DIRECTION, Layer.GENERAL, N_OUT, N_IN)
MAT_AD = matrix(Role.TANGENT_A, Layer.PREVIOUS, N_IN, N_BATCH)
MAT_RDELTA = matrix(Role.R_ERROR, Layer.GENERAL, N_OUT, N_BATCH)
_MATRICES = {
    "W": MAT_W,
    "a": MAT_A,
    "delta": MAT_DELTA,
    "Wd": MAT_WD,
    "ad": MAT_AD,
    "Rdelta": MAT_RDELTA,
}


@functools.lru_cache(maxsize=1)
def layer_calculus() -> LayerCalculus:
    """Differentiate the dense layer equation with respect to W, b and a."""
    z = sp.Sum(W[I, P] * A_PREV[P, S], (P, 1, N_IN)) + B[I]
    dz_dW = in_range(sp.diff(z, W[Q, R]).doit())
    dz_db = in_range(sp.diff(z, B[Q]).doit())
    dz_da = in_range(sp.diff(z, A_PREV[R, S]).doit())
    # Chain rule: dL/dtheta = sum over every z[i, s] of delta[i, s] dz[i, s]/dtheta.
    dL_dW = sp.Sum(sum_terms(DELTA[I, S] * dz_dW, I, N_OUT), (S, 1, N_BATCH))
    dL_db = sp.Sum(sum_terms(DELTA[I, S] * dz_db, I, N_OUT), (S, 1, N_BATCH))
    dL_da = sp.Sum(DELTA[I, S] * dz_da, (I, 1, N_OUT))
    return LayerCalculus(
        z_def=z,
        dz_dW=dz_dW,
        dz_db=dz_db,
        dz_da=dz_da,
        dL_dW=dL_dW,
        dL_db=dL_db,
        dL_da=dL_da,
        dW_matrix=contract(dL_dW, (Q, R)),
        db_matrix=contract(dL_db, (Q,)),
        da_matrix=contract(dL_da, (R, S)),
    )


def _oriented(factor: sp.Indexed, index: sp.Symbol, first: bool) -> sp.MatrixExpr:
    """The factor's matrix, transposed so that `index` is its row (first) or column."""
    mat = _MATRICES[str(factor.base)]
    at_row = factor.indices[0] == index
    return mat if at_row == first else mat.T


def contract(expr: sp.Sum, free: tuple[sp.Symbol, ...]) -> sp.MatrixExpr:
    """Read a one-index contraction sum_t X[., t] Y[., t] as a matrix product."""
    body, (index, _, _) = expr.function, expr.limits[0]
    factors = [f for f in sp.Mul.make_args(body) if isinstance(f, sp.Indexed)]
    if len(factors) == 1:
        # A sum of one factor over the summed index: multiply by a vector of ones.
        return sp.MatMul(_oriented(factors[0], index, first=False), ONES)
    if len(factors) != 2:
        raise ValueError(f"not a single contraction: {expr}")
    left = next(f for f in factors if free[0] in f.indices)
    right = next(f for f in factors if f is not left)
    return sp.MatMul(_oriented(left, index, first=False), _oriented(right, index, first=True))
