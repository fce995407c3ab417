"""Rewrite derived expressions into forms that do not overflow in floating point.

SymPy's derivative of x*sigmoid(x) contains exp(-x)/(1 + exp(-x))**2, which is
inf/inf at x = -1000. With s = 1/(1 + exp(-u)) one has exp(-u) = (1 - s)/s, so
the same expression is a polynomial in s: x*s*(1 - s) + s. This module makes
that substitution when it removes every exp(+-u) and leaves no division by s or
1 - s; the printer then evaluates s with its overflow-free sigmoid. A rewrite is kept only
when it agrees with the expression it replaces at sample points (symbp.symbolic.equal).
"""

from __future__ import annotations

import sympy as sp

from symbp.symbolic import bounded, memo
from symbp.symbolic.equal import agree
from symbp.symbolic.probe import sigmoid_arg

FACTOR_SECONDS = 0.5  # per piece: a piece that SymPy cannot factor quickly is left as it is


def _sigmoid_args(expr: sp.Expr) -> list[sp.Expr]:
    """Every u such that 1/(1 + exp(-u)) occurs in expr (as a power of 1 + exp(-u))."""
    found = (sigmoid_arg(p) for p in expr.atoms(sp.Pow))
    # A constant sigmoid is a number: the printer evaluates it as one.
    return sorted({u for u in found if u is not None and u.free_symbols}, key=sp.default_sort_key)


def _factor_within_budget(expr: sp.Expr) -> sp.Expr | None:
    """factor(cancel(expr)), or None when SymPy runs out of time."""
    return bounded.bounded(lambda: sp.factor(sp.cancel(expr)), None, FACTOR_SECONDS)


def through_sigmoid(expr: sp.Expr) -> sp.Expr:
    """expr with exp(+-u) written through s = sigmoid(u), when that is exact and division-free.

    The work is done piece by piece (Piecewise branches, terms of a sum, the factors of a
    product that hold an exp), so SymPy factors small expressions; the result is kept only
    if it agrees with expr at sample points. Results are memoised up to a renaming of the
    symbols, so the layers of a deep network pay for one.
    """
    if not _sigmoid_args(expr) or not _loose_exps(expr):
        return expr
    return memo.renamed(_through_sigmoid_checked, expr)


def _loose_exps(expr: sp.Expr) -> bool:
    """True when some exp(+-u) of a sigmoid argument u stands outside the sigmoid itself:
    only then is there anything to rewrite (the printer evaluates the sigmoid stably)."""
    args = _sigmoid_args(expr)
    hidden = expr.replace(
        lambda e: isinstance(e, sp.Pow) and e.exp.is_Integer and e.exp < 0 and _sigmoid_args(e),
        lambda e: sp.Dummy(),
    )
    return any(hidden.has(sp.exp(u), sp.exp(-u)) for u in args)


def _through_sigmoid_checked(expr: sp.Expr) -> sp.Expr:
    rewritten = _pieces(expr)
    return rewritten if agree(expr, rewritten) else expr


def _pieces(expr: sp.Expr) -> sp.Expr:
    """through_sigmoid applied to the smallest pieces that hold every exp(+-u) of a term."""
    if not _sigmoid_args(expr) and not expr.has(sp.exp):
        return expr
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*[(_pieces(e), c) for e, c in expr.args])
    if isinstance(expr, sp.Add):
        return sp.Add(*[_pieces(t) for t in expr.args])
    if isinstance(expr, sp.Mul):
        inner = [f for f in expr.args if _outside_functions(f).has(sp.exp)]
        outer = [f for f in expr.args if not _outside_functions(f).has(sp.exp)]
        if outer and len(inner) == 1 and isinstance(inner[0], sp.Add):
            return sp.Mul(*outer) * _pieces(inner[0])  # G (f'(z)): each term of f' alone
        if outer and inner:
            return sp.Mul(*outer) * memo.renamed(_whole, sp.Mul(*inner))
    return memo.renamed(_whole, expr)


def _whole(expr: sp.Expr) -> sp.Expr:
    """The substitution on one piece, for each sigmoid argument u it holds. The arguments
    of other functions are left as they are (tanh(log(1 + exp(z))) stays a tanh of a
    softplus, which the printer evaluates stably): only the algebra around them moves."""
    kept: dict[sp.Basic, sp.Dummy] = {}
    expr = _outside_functions(expr, kept)
    restore = {dummy: e for e, dummy in kept.items()}
    return _substituted(expr).xreplace(restore)


def _outside_functions(expr: sp.Expr, kept: dict | None = None) -> sp.Expr:
    """expr with each function other than exp that holds an exp replaced by a symbol
    (recorded in kept): what is left is the algebra around those functions."""
    kept = {} if kept is None else kept

    def keep(e: sp.Basic) -> sp.Dummy:
        return kept.setdefault(e, sp.Dummy("f", real=True))

    return expr.replace(
        lambda e: isinstance(e, sp.Function) and not isinstance(e, sp.exp) and e.has(sp.exp),
        keep,
    )


def _substituted(expr: sp.Expr) -> sp.Expr:
    for u in _sigmoid_args(expr):
        s = sp.Dummy("s", positive=True)
        moved = expr.subs({sp.exp(-u): (1 - s) / s, sp.exp(u): s / (1 - s)})
        candidate = _factor_within_budget(moved)
        if candidate is None or candidate.has(sp.exp(u), sp.exp(-u)):
            continue
        _, denom = sp.fraction(sp.together(candidate))
        if denom.has(s):
            continue
        expr = candidate.xreplace({s: 1 / (1 + sp.exp(-u))})
    return expr
