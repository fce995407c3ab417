"""SymPy's simplify within a time budget (symbp.budget), and only where it helps.

simplify() can take unbounded time on hostile expressions; symbp then keeps the
unsimplified (still correct) form instead of hanging.
"""

from __future__ import annotations

import sympy as sp

from symbp.budget import SIMPLIFY_SECONDS, BudgetExceeded, bounded, time_budget
from symbp.symbolic import probe

MAX_SIMPLIFY_OPS = 150

__all__ = ["BudgetExceeded", "bounded", "is_zero", "simplify", "tidy", "time_budget"]


def simplify(
    expr: sp.Expr, seconds: float = SIMPLIFY_SECONDS, max_ops: int = MAX_SIMPLIFY_OPS
) -> sp.Expr:
    """sympy.simplify within a time budget; the input itself when the budget runs out.

    Expressions of more than MAX_SIMPLIFY_OPS operations are left as they are without trying:
    simplify's time grows steeply with size and the result would depend on the machine's
    speed (every built-in activation's expressions have under 50).
    """
    if sp.count_ops(expr) > max_ops:
        return expr
    return bounded(lambda: sp.simplify(expr), expr, seconds)


def _function_kinds(expr: sp.Expr) -> set[type]:
    return {type(f) for f in expr.atoms(sp.Function)}


def tidy(
    expr: sp.Expr, seconds: float = SIMPLIFY_SECONDS, max_ops: int = MAX_SIMPLIFY_OPS
) -> sp.Expr:
    """simplify(), unless it brings in functions the input lacked (cosh for exp, ...).

    New functions usually mean a form with worse floating-point behaviour, such as
    1/cosh(z/2)**2, which overflows where exp(-z)/(1 + exp(-z))**2 does not; a form that
    is not finite wherever the input is (symbp.symbolic.probe) is refused too.
    """
    simpler = simplify(expr, seconds, max_ops)
    if simpler.has(sp.I) and not expr.has(sp.I):
        # (1 + t**2)**2 factored over the Gaussian integers: real, but not printable as such.
        return expr
    if not _function_kinds(simpler) <= _function_kinds(expr):
        return expr
    # Equal is not enough: the shorter form may overflow where the input does not.
    return simpler if probe.no_worse(simpler, expr) else expr


def is_zero(expr: sp.Expr, seconds: float = SIMPLIFY_SECONDS) -> bool:
    """True only when SymPy proves expr == 0 within the budget."""
    return bool(bounded(lambda: sp.simplify(expr) == 0, False, seconds))
