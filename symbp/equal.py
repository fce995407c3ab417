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

from symbp.reductions import LogSumExp, UnitSum

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
