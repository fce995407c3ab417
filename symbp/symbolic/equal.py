"""Numerical equality of two SymPy expressions at sample points: the check every rewrite passes.

A rewrite (a stable form, a simplification, a form through the sigmoid) is used only once it
agrees with the expression it replaces. SymPy's own proofs (simplify(a - b) == 0) can time
out or be fooled by branch cuts and assumptions; a few random points, evaluated with 30
significant digits, cannot be fooled by the kind of mistake a wrong substitution makes.

Sums over output units (UnitSum) and log-sum-exps are evaluated as for one unit (h and z):
an identity that holds for every number of units holds for one.
"""

from __future__ import annotations

import random

import sympy as sp

from symbp.ir.reductions import (
    ExclusiveSoftmaxMean,
    ExclusiveSoftmaxSum,
    ExclusiveSoftmaxSumTangent,
    LogOneMinusSoftmax,
    LogSumExp,
    UnitSum,
)

DIGITS = 30
TOLERANCE = sp.Float("1e-15", DIGITS)
WANTED = 6  # points where `before` is a finite real number
TRIES = 24  # points tried at most


def _single_unit(expr: sp.Expr) -> sp.Expr:
    """UnitSum(h) -> h and LogSumExp(z) -> z, the value of either for a single unit."""
    return expr.replace(lambda e: isinstance(e, (UnitSum, LogSumExp)), lambda e: e.args[0])


def _sample(symbol: sp.Symbol, rng: random.Random) -> sp.Float:
    """A value within the symbol's assumptions (positive, nonnegative or any real)."""
    if symbol.is_positive or symbol.is_nonnegative:
        return sp.Float(rng.uniform(0.05, 2.5), DIGITS)
    return sp.Float(rng.uniform(-2.5, 2.5), DIGITS)


def _value(expr: sp.Expr, values: dict) -> complex | None:
    """expr at the point, as a complex number; None if undefined or not a number."""
    try:
        number = expr.xreplace(values).evalf(DIGITS)
        if not number.is_number or number.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
            return None
        return complex(number)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, AttributeError):
        return None


def agree(before: sp.Expr, after: sp.Expr, seed: int = 0) -> bool:
    """True when `after` equals `before` at every sample point where `before` is finite and real.

    False also when too few such points are found to tell (a form used only where it was
    checked is the rule, not the exception).
    """
    if before == after:
        return True
    before, after = _single_unit(sp.sympify(before)), _single_unit(sp.sympify(after))
    symbols = sorted(before.free_symbols | after.free_symbols, key=sp.default_sort_key)
    rng = random.Random(seed)
    found = 0
    for _ in range(TRIES):
        values = {s: _sample(s, rng) for s in symbols}
        old = _value(before, values)
        if old is None or abs(old.imag) > 1e-20 * (1 + abs(old.real)):
            continue
        new = _value(after, values)
        if new is None or abs(new - old) > float(TOLERANCE) * (1 + abs(old)):
            return False
        found += 1
        if found == WANTED or not symbols:
            return True
    return False


def checked(before: sp.Expr, after: sp.Expr) -> sp.Expr:
    """`after` when it agrees with `before` at the sample points, else `before`."""
    return after if agree(before, after) else before


# --- several units ----------------------------------------------------------------------
# An identity between per-sample reductions (a sum over the units other than j, say) does
# not hold for one unit: such rewrites are checked over a sample of several units instead,
# each reduction evaluated from its definition with 30 significant digits.

UNITS = 4  # units per sample in the check: more than any special case of 1, 2 or 3


def _exclusive(z: list[sp.Expr], k: int) -> sp.Expr:
    """sum over m != k of exp(z_m)."""
    return sp.Add(*[sp.exp(v) for m, v in enumerate(z) if m != k])


def per_unit(node: sp.Basic, args: list[list[sp.Expr]]) -> list[sp.Expr]:
    """The value of a reduction at every unit, from its definition."""
    units = range(len(args[0]))
    if isinstance(node, UnitSum):
        return [sp.Add(*args[0])] * len(args[0])
    z = args[-1]
    total = sp.Add(*[sp.exp(v) for v in z])
    if isinstance(node, LogSumExp):
        return [sp.log(total)] * len(z)
    if isinstance(node, LogOneMinusSoftmax):
        return [sp.log(_exclusive(z, k)) - sp.log(total) for k in units]
    g = args[0]
    if isinstance(node, ExclusiveSoftmaxSum):
        return [
            sp.Add(*[g[k] * sp.exp(z[j]) / _exclusive(z, k) for k in units if k != j])
            for j in units
        ]
    if isinstance(node, ExclusiveSoftmaxSumTangent):
        v = args[1]
        u = [
            sp.Add(*[v[i] * sp.exp(z[i]) / _exclusive(z, k) for i in units if i != k])
            for k in units
        ]
        return [
            sp.Add(
                *[g[k] * sp.exp(z[j]) / _exclusive(z, k) * (v[j] - u[k]) for k in units if k != j]
            )
            for j in units
        ]
    if isinstance(node, ExclusiveSoftmaxMean):
        return [
            sp.Add(*[g[i] * sp.exp(z[i]) / _exclusive(z, k) for i in units if i != k])
            for k in units
        ]
    raise TypeError(f"no per-unit rule for {type(node).__name__}")


def _at_units(expr: sp.Expr, values: dict[sp.Symbol, list[sp.Expr]], count: int) -> list:
    """expr at every unit of one sample; `values` holds each array symbol's entries."""
    kinds = (
        UnitSum,
        LogSumExp,
        LogOneMinusSoftmax,
        ExclusiveSoftmaxSum,
        ExclusiveSoftmaxMean,
        ExclusiveSoftmaxSumTangent,
    )
    stand_in: dict[sp.Basic, sp.Dummy] = {}
    walk = sp.preorder_traversal(expr)
    local = dict(values)
    for node in walk:
        if isinstance(node, kinds) and node not in stand_in:
            walk.skip()
            stand_in[node] = dummy = sp.Dummy("r")
            local[dummy] = per_unit(node, [_at_units(a, values, count) for a in node.args])
    flat = expr.xreplace(stand_in)
    return [flat.xreplace({s: v[u] for s, v in local.items()}).evalf(DIGITS) for u in range(count)]


def agree_over_units(
    before: sp.Expr,
    after: sp.Expr,
    arrays: dict[sp.Symbol, sp.Expr],
    seed: int = 0,
    units: int = UNITS,
) -> bool:
    """True when `after` equals `before` at every unit of random samples of `units` units.

    `arrays` maps each per-unit symbol to its definition in the other symbols (A: softmax of
    Z, say), or to itself when it is free; other symbols are scalars."""
    if before == after:
        return True
    rng = random.Random(seed)
    free = [s for s, d in arrays.items() if d == s]
    tied = {s: d for s, d in arrays.items() if d != s}
    scalars = sorted(
        (before.free_symbols | after.free_symbols) - set(arrays), key=sp.default_sort_key
    )
    for _ in range(WANTED):
        values = {s: [_sample(s, rng) for _ in range(units)] for s in free}
        values.update({s: [_sample(s, rng)] * units for s in scalars})
        for s, definition in tied.items():
            values[s] = _at_units(definition, values, units)
        old = _at_units(before, values, units)
        new = _at_units(after, values, units)
        for o, n in zip(old, new, strict=True):
            if not (o.is_number and n.is_number) or o.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
                return False
            if abs(complex(n) - complex(o)) > float(TOLERANCE) * (1 + abs(complex(o))):
                return False
    return True
