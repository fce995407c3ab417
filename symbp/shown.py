"""The forms of derived expressions a person reads in the documents (never what the code runs).

SymPy returns correct but unidiomatic forms: sinh(u)/cosh(u) for tanh(u), a(a - 1) - a + 1 for
(a - 1)^2, sqrt(2) x e^{-x^2/2}/(2 sqrt(pi)) + erf(sqrt(2) x/2)/2 + 1/2 for x phi(x) + Phi(x).
`shown(expr)` tries a few rewrites on each piece (factor, simplify, and writing erf and the
Gaussian through the standard normal Phi and phi), keeps the narrowest by the printed width
estimate of symbp.latex, and returns it only when it agrees with expr at sample points
(symbp.equal); each attempt is bounded in time, so a hard expression is shown as it is.
"""

from __future__ import annotations

from typing import Any

import sympy as sp
from sympy.functions.elementary.piecewise import piecewise_simplify

from symbp import bounded, memo
from symbp.equal import agree
from symbp.latex import width

SECONDS = 1.0  # per rewrite attempt


class NormalCdf(sp.Function):
    """Phi(u), the standard normal distribution function, (1 + erf(u/sqrt 2))/2."""

    nargs = 1

    def _symbp_latex(self, printer: Any) -> str:
        return rf"\Phi\left({printer._print(self.args[0])}\right)"

    def elementary(self) -> sp.Expr:
        return (1 + sp.erf(self.args[0] / sp.sqrt(2))) / 2


class NormalPdf(sp.Function):
    """phi(u), the standard normal density, exp(-u^2/2)/sqrt(2 pi)."""

    nargs = 1

    def _symbp_latex(self, printer: Any) -> str:
        return rf"\varphi\left({printer._print(self.args[0])}\right)"

    def elementary(self) -> sp.Expr:
        return sp.exp(-(self.args[0] ** 2) / 2) / sp.sqrt(2 * sp.pi)


def elementary(expr: sp.Expr) -> sp.Expr:
    """expr with Phi and phi written out."""
    return expr.replace(lambda e: isinstance(e, (NormalCdf, NormalPdf)), lambda e: e.elementary())


def uses_normal(expr: sp.Expr) -> bool:
    return expr.has(NormalCdf, NormalPdf)


def shown(expr: sp.Expr) -> sp.Expr:
    """expr in the narrowest of its checked forms (piece by piece for a Piecewise), worked out
    once per expression shape (the layers of a deep network share theirs)."""
    return memo.renamed(_shown, expr)


def _shown(expr: sp.Expr) -> sp.Expr:
    if isinstance(expr, sp.Piecewise):
        pieces = sp.Piecewise(*[(shown(e), c) for e, c in expr.args])
        tidy = bounded.bounded(lambda: piecewise_simplify(pieces), pieces, SECONDS)
        return tidy if tidy == pieces or agree(expr, elementary(tidy)) else pieces
    if not isinstance(expr, sp.Expr) or expr.is_Atom:
        return expr
    candidates = [_tanh_ratios(expr)]
    if expr.has(sp.erf):
        normal = _through_normal(expr)
        candidates += [normal, _bounded(sp.simplify, normal)]
    if not expr.atoms(sp.Function) and expr.is_polynomial():
        candidates.append(_bounded(sp.factor, expr))  # a (a - 1) - a + 1 -> (a - 1)^2
    best = expr
    for form in candidates:
        narrower = (width(form), sp.count_ops(form)) < (width(best), sp.count_ops(best))
        if narrower and not form.has(sp.I) and agree(expr, elementary(form)):
            best = form
    return best


def _bounded(rewrite: Any, expr: sp.Expr) -> sp.Expr:
    return bounded.bounded(lambda: rewrite(expr), expr, SECONDS)


def _tanh_ratios(expr: sp.Expr) -> sp.Expr:
    """sinh(u)/cosh(u) as tanh(u), and cosh(u)/sinh(u) as 1/tanh(u)."""

    def ratio(term: sp.Basic) -> bool:
        if not isinstance(term, sp.Mul):
            return False
        powers = term.as_powers_dict()
        return any(
            isinstance(b, sp.sinh) and powers.get(sp.cosh(*b.args)) == -e for b, e in powers.items()
        )

    def rewrite(term: sp.Mul) -> sp.Expr:
        powers = dict(term.as_powers_dict())
        for base, exponent in list(powers.items()):
            if isinstance(base, sp.sinh) and powers.get(sp.cosh(*base.args)) == -exponent:
                del powers[base], powers[sp.cosh(*base.args)]
                powers[sp.tanh(*base.args)] = exponent
        return sp.Mul(*[b**e for b, e in powers.items()])

    return expr.replace(ratio, rewrite)


def _through_normal(expr: sp.Expr) -> sp.Expr:
    """erf(u/sqrt 2) as 2 Phi(u) - 1 and exp(-u^2/2) as sqrt(2 pi) phi(u), for every such u."""
    if not expr.has(sp.erf):
        return expr
    moved = expr
    for call in expr.atoms(sp.erf):
        u = sp.sqrt(2) * call.args[0]
        moved = moved.subs(call, 2 * NormalCdf(u) - 1)
        moved = moved.subs(sp.exp(-(u**2) / 2), sp.sqrt(2 * sp.pi) * NormalPdf(u))
    return bounded.bounded(lambda: sp.expand(moved), moved, SECONDS)
