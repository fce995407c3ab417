"""Float64 evaluation of derived expressions at probe points, to compare the numerical
behaviour of two equal forms before one replaces the other.

SymPy's simplify() may turn x exp(-x^2/2) + Phi(x) into (x + e^{x^2/2} Phi(x)) e^{-x^2/2}:
equal, and shorter, but inf * 0 once x^2/2 passes 709. `no_worse(new, old)` accepts `new`
only if it is finite at every probe point where `old` is. The evaluation follows the
generated code's semantics where they differ from plain IEEE arithmetic: sigmoid and
softplus patterns are evaluated stably, as the printer prints them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import sympy as sp

# Magnitudes probed: ordinary values and values large enough to overflow exp().
_MAGNITUDES = (1e-3, 0.3, 1.0, 3.0, 30.0, 300.0, 3000.0)
_POINTS = 96

_UNARY: dict[type, Callable[[Any], Any]] = {
    sp.exp: np.exp, sp.log: np.log, sp.sin: np.sin, sp.cos: np.cos, sp.tan: np.tan,
    sp.sinh: np.sinh, sp.cosh: np.cosh, sp.tanh: np.tanh, sp.atan: np.arctan, sp.Abs: np.abs,
    sp.sign: np.sign, sp.erf: np.vectorize(math.erf, otypes=[float]),
}  # fmt: skip


class Unsupported(Exception):
    """The expression has a node this evaluator does not know: no verdict."""


def _sigmoid(u: Any) -> np.ndarray:
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(u: Any) -> np.ndarray:
    return np.maximum(u, 0) + np.log1p(np.exp(-np.abs(u)))


def sigmoid_arg(expr: sp.Pow) -> sp.Expr | None:
    """u when expr is (1 + exp(-u))**k with k a negative integer."""
    if not (expr.exp.is_Integer and expr.exp < 0 and isinstance(expr.base, sp.Add)):
        return None
    terms = sp.Add.make_args(expr.base)
    if len(terms) != 2 or sp.S.One not in terms:
        return None
    other = terms[0] if terms[1] == sp.S.One else terms[1]
    return -other.args[0] if isinstance(other, sp.exp) else None


def evaluate(expr: sp.Basic, values: dict[sp.Symbol, np.ndarray]) -> np.ndarray:
    """expr in float64 at the points `values` (one array per symbol, all the same length)."""
    with np.errstate(all="ignore"):
        return np.asarray(_eval(expr, values), dtype=float)


def _eval(expr: sp.Basic, v: dict) -> np.ndarray | float:
    if expr in v:
        return v[expr]
    if expr.is_Number or isinstance(expr, sp.NumberSymbol):
        return float(expr)
    if isinstance(expr, sp.Add):
        return sum((_eval(a, v) for a in expr.args), 0.0)
    if isinstance(expr, sp.Mul):
        out: np.ndarray | float = 1.0
        for a in expr.args:
            out = out * _eval(a, v)
        return out
    if isinstance(expr, sp.Pow):
        return _pow(expr, v)
    if isinstance(expr, sp.log) and _softplus_arg(expr) is not None:
        return _softplus(_eval(_softplus_arg(expr), v))
    if type(expr) in _UNARY:
        return _UNARY[type(expr)](_eval(expr.args[0], v))
    if isinstance(expr, (sp.Max, sp.Min)):
        pick = np.maximum if isinstance(expr, sp.Max) else np.minimum
        out = _eval(expr.args[0], v)
        for a in expr.args[1:]:
            out = pick(out, _eval(a, v))
        return out
    if isinstance(expr, sp.Piecewise):
        return _piecewise(expr, v)
    if isinstance(expr, (sp.Heaviside, sp.DiracDelta)):
        u = _eval(expr.args[0], v)
        return np.heaviside(u, 0.5) if isinstance(expr, sp.Heaviside) else np.zeros_like(u)
    raise Unsupported(type(expr).__name__)


def _softplus_arg(expr: sp.log) -> sp.Expr | None:
    terms = sp.Add.make_args(expr.args[0])
    if len(terms) != 2 or sp.S.One not in terms:
        return None
    other = terms[0] if terms[1] == sp.S.One else terms[1]
    return other.args[0] if isinstance(other, sp.exp) else None


def _pow(expr: sp.Pow, v: dict) -> np.ndarray | float:
    u = sigmoid_arg(expr)
    if u is not None:
        return _sigmoid(_eval(u, v)) ** int(-expr.exp)
    base = np.asarray(_eval(expr.base, v), dtype=float)
    if expr.exp.is_Integer:
        return base ** int(expr.exp)
    return np.power(base, float(expr.exp))  # NaN for a negative base, as in the code


def _piecewise(expr: sp.Piecewise, v: dict) -> np.ndarray | float:
    out: np.ndarray | float = np.nan
    for value, cond in reversed(expr.args):
        out = np.where(_condition(cond, v), _eval(value, v), out)
    return out


def _condition(cond: sp.Basic, v: dict) -> np.ndarray | bool:
    if cond == sp.true:
        return True
    if cond == sp.false:
        return False
    if isinstance(cond, sp.core.relational.Relational):
        ops = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
               "==": np.equal, "!=": np.not_equal}  # fmt: skip
        return ops[cond.rel_op](_eval(cond.lhs, v), _eval(cond.rhs, v))
    if isinstance(cond, (sp.And, sp.Or)):
        parts = [_condition(c, v) for c in cond.args]
        combine = np.logical_and if isinstance(cond, sp.And) else np.logical_or
        out = parts[0]
        for p in parts[1:]:
            out = combine(out, p)
        return out
    if isinstance(cond, sp.Not):
        return np.logical_not(_condition(cond.args[0], v))
    raise Unsupported(type(cond).__name__)


def probe_points(
    symbols: list[sp.Symbol], seed: int = 0, tiny: bool = False
) -> dict[sp.Symbol, np.ndarray]:
    """Values for each symbol, of every magnitude, with the signs its assumptions allow;
    with `tiny`, also values near underflow (an activation that rounds to 0)."""
    rng = random.Random(seed)
    magnitudes = _MAGNITUDES + ((0.0, 1e-300, 1e-30) if tiny else ())
    points: dict[sp.Symbol, np.ndarray] = {}
    for s in sorted(symbols, key=sp.default_sort_key):
        values = []
        for _ in range(_POINTS):
            x = rng.choice(magnitudes) * rng.uniform(0.5, 1.5)
            nonneg = s.is_nonnegative or s.is_positive
            values.append(x if nonneg or rng.random() < 0.5 else -x)
        points[s] = np.array(values)
    return points


def no_worse(
    new: sp.Expr,
    old: sp.Expr,
    tiny: bool = False,
    linked: dict[sp.Symbol, sp.Expr] | None = None,
) -> bool:
    """True unless `new` is NaN or infinite at a probe point where `old` is finite (with
    `tiny`, the points include values near underflow and 0). `linked` gives symbols whose
    values follow from the others (a' = f'(a) z', computed first as the code does).

    Expressions this evaluator cannot read get the benefit of the doubt (True).
    """
    linked = linked or {}
    free = (new.free_symbols | old.free_symbols | _free(linked)) - set(linked)
    values = probe_points(sorted(free, key=sp.default_sort_key), tiny=tiny)
    try:
        for symbol, expr in linked.items():
            values[symbol] = np.broadcast_to(evaluate(expr, values), (_POINTS,))
        before = np.broadcast_to(evaluate(old, values), (_POINTS,))
        after = np.broadcast_to(evaluate(new, values), (_POINTS,))
    except (Unsupported, TypeError, ValueError):
        return True
    return bool(np.all(np.isfinite(after) | ~np.isfinite(before)))


def decreases_somewhere(derivative: sp.Expr, var: sp.Symbol, lo: float, hi: float) -> bool:
    """True when the derivative is negative at a grid point of (lo, hi): the function is then
    not increasing there, and SymPy need not be asked (a cheap, sufficient refutation)."""
    grid = np.concatenate(
        [-np.logspace(-3, 3, 40), np.logspace(-3, 3, 40), np.arange(-5, 5.01, 0.25)]
    )
    points = np.unique(grid[(grid > lo) & (grid < hi)])
    if points.size == 0:
        return False
    try:
        values = np.broadcast_to(evaluate(derivative, {var: points}), points.shape)
    except (Unsupported, TypeError, ValueError):
        return False
    return bool(np.any(values < -1e-12 * np.maximum(1.0, np.abs(values))))


def _free(exprs: dict[sp.Symbol, sp.Expr]) -> set:
    return set().union(*(e.free_symbols for e in exprs.values())) if exprs else set()
