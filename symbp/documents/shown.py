"""The forms of derived expressions a person reads in the documents (never what the code runs).

SymPy returns correct but unidiomatic forms: sinh(u)/cosh(u) for tanh(u), a(a - 1) - a + 1 for (a -
1)^2, sqrt(2) x e^{-x^2/2}/(2 sqrt(pi)) + erf(sqrt(2) x/2)/2 + 1/2 for x phi(x) + Phi(x).
`shown(expr)` tries a few rewrites on each piece (factor, simplify, and writing erf and the Gaussian
through the standard normal Phi and phi, 1 - tanh^2 as sech^2, exp through the logistic sigma, a
minus sign taken into a difference), keeps the one with the fewest operations (then the narrowest),
and returns it only when it agrees with expr at sample points (symbp.symbolic.equal); each attempt
is bounded in time, so a hard expression is shown as it is.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from symbp.documents.latex import negatable, width
from symbp.symbolic import bounded, memo
from symbp.symbolic.conditions import condition_shown as condition_shown
from symbp.symbolic.equal import agree
from symbp.symbolic.probe import sigmoid_arg

SECONDS = 1.0  # per rewrite attempt


def _called(name: str, call: sp.Function, printer: Any, exp: Any) -> str:
    """name(u), or name^{exp}(u) when the printer prints a power of the call."""
    power = f"^{{{exp}}}" if exp is not None else ""
    return rf"{name}{power}\left({printer._print(call.args[0])}\right)"


class NormalCdf(sp.Function):
    """Phi(u), the standard normal distribution function, (1 + erf(u/sqrt 2))/2."""

    nargs = 1

    def _symbp_latex(self, printer: Any, exp: Any = None) -> str:
        return _called(r"\Phi", self, printer, exp)

    def elementary(self) -> sp.Expr:
        return (1 + sp.erf(self.args[0] / sp.sqrt(2))) / 2


class NormalPdf(sp.Function):
    """phi(u), the standard normal density, exp(-u^2/2)/sqrt(2 pi)."""

    nargs = 1

    def _symbp_latex(self, printer: Any, exp: Any = None) -> str:
        return _called(r"\varphi", self, printer, exp)

    def elementary(self) -> sp.Expr:
        return sp.exp(-(self.args[0] ** 2) / 2) / sp.sqrt(2 * sp.pi)


class Sigmoid(sp.Function):
    """sigma(u) = 1/(1 + exp(-u)), the logistic function."""

    nargs = 1

    def _symbp_latex(self, printer: Any, exp: Any = None) -> str:
        return _called(r"\sigma", self, printer, exp)

    def elementary(self) -> sp.Expr:
        return 1 / (1 + sp.exp(-self.args[0]))


_NAMED = (NormalCdf, NormalPdf, Sigmoid)


def elementary(expr: sp.Expr) -> sp.Expr:
    """expr with Phi, phi and sigma written out."""
    return expr.replace(lambda e: isinstance(e, _NAMED), lambda e: e.elementary())


def uses_normal(expr: sp.Expr) -> bool:
    return expr.has(NormalCdf, NormalPdf)


def uses_sigmoid(expr: sp.Expr) -> bool:
    return expr.has(Sigmoid)


def shown(expr: sp.Expr) -> sp.Expr:
    """expr in the narrowest of its checked forms (piece by piece for a Piecewise), worked out
    once per expression shape (the layers of a deep network share theirs)."""
    return memo.renamed(_shown, expr)


def _shown(expr: sp.Expr) -> sp.Expr:
    if isinstance(expr, sp.Piecewise):
        pieces = sp.Piecewise(*[(shown(e), c) for e, c in expr.args])
        tidy = bounded.bounded(lambda: _conditions_simplified(pieces), pieces, SECONDS)
        return tidy if tidy == pieces or agree(expr, elementary(tidy)) else pieces
    if not isinstance(expr, sp.Expr) or expr.is_Atom:
        return expr
    candidates = [_tanh_ratios(expr), _sech_squares(expr)]
    if expr.has(sp.Piecewise):  # the pieces inside a product or sum, each tidied
        candidates.append(expr.replace(lambda e: isinstance(e, sp.Piecewise), shown))
    if expr.has(sp.exp):
        candidates.append(_through_logistic(expr))
    if expr.has(sp.erf):
        normal = _through_normal(expr)
        candidates += [normal, _bounded(sp.simplify, normal)]
    if not expr.atoms(sp.Function) and expr.is_polynomial():
        candidates.append(_bounded(sp.factor, expr))  # a (a - 1) - a + 1 -> (a - 1)^2
    candidates = [_signs_inside(c) for c in candidates]
    best = expr
    for form in candidates:
        narrower = (sp.count_ops(form), width(form)) < (sp.count_ops(best), width(best))
        if narrower and not form.has(sp.I) and agree(expr, elementary(form)):
            best = form
    return best


def _conditions_simplified(pieces: sp.Piecewise) -> sp.Piecewise:
    """The pieces with each condition simplified given that the earlier ones failed: a piece
    whose condition can no longer hold is dropped (x >= 1 and x <= 0), a redundant part of a
    conjunction too (x >= 1 and x > -1). The expressions, already in their shown forms, are
    left alone (SymPy's piecewise_simplify simplifies them again, at length)."""
    out: list[tuple[sp.Expr, sp.Basic]] = []
    before: sp.Basic = sp.true
    for expr, cond in pieces.args:
        here = sp.And(cond, before).simplify() if before is not sp.true else cond.simplify()
        before = sp.And(before, sp.Not(cond)).simplify()
        if here is not sp.false:
            out.append((expr, here))
        if here is sp.true:
            break
    return sp.Piecewise(*out)


def _signs_inside(expr: sp.Expr) -> sp.Expr:
    """- (s - 1) s as s (1 - s): a product's minus sign taken into a difference of two terms."""

    def signed(e: sp.Basic) -> bool:
        return isinstance(e, sp.Mul) and e.could_extract_minus_sign() and _difference(e) is not None

    def flip(e: sp.Mul) -> sp.Expr:
        d = _difference(e)
        assert d is not None
        rest = [f for f in e.args if f is not d]
        return sp.Mul(*[-f if f.is_Number else f for f in rest], sp.expand(-d), evaluate=False)

    return expr.replace(signed, flip)


def _difference(e: sp.Mul) -> sp.Expr | None:
    """The factor of e that is a two-term difference, when e's only sign is a -1 coefficient."""
    if e.args[0] != -1:
        return None
    return next((f for f in e.args if negatable(f)), None)


def _bounded(rewrite: Any, expr: sp.Expr) -> sp.Expr:
    return bounded.bounded(lambda: rewrite(expr), expr, SECONDS)


def _sech_squares(expr: sp.Expr) -> sp.Expr:
    """1 - tanh(u)^2 as sech(u)^2 (tanh's derivative as it is usually written)."""

    def square(term: sp.Basic) -> bool:
        parts = sp.Add.make_args(term)
        return (
            isinstance(term, sp.Add)
            and len(parts) == 2
            and sp.S.One in parts
            and any(_tanh_arg(p) is not None for p in parts)
        )

    def rewrite(term: sp.Add) -> sp.Expr:
        other = next(p for p in term.args if p != sp.S.One)
        return sp.sech(_tanh_arg(other)) ** 2

    return expr.replace(square, rewrite)


def _tanh_arg(term: sp.Basic) -> sp.Expr | None:
    """u when term is -tanh(u)^2."""
    coeff, rest = term.as_coeff_Mul()
    if (
        coeff == -1
        and isinstance(rest, sp.Pow)
        and rest.exp == 2
        and isinstance(rest.base, sp.tanh)
    ):
        return rest.base.args[0]
    return None


def _through_logistic(expr: sp.Expr) -> sp.Expr:
    """exp(+-u) written through sigma(u) where that removes every exp (symbp.symbolic.stable), and
    each 1/(1 + exp(-u)) then named sigma(u): e^{-x}/(1 + e^{-x})^2 reads sigma(x)(1 - sigma(x))."""
    from symbp.symbolic.stable import through_sigmoid

    moved = through_sigmoid(expr)

    def logistic(e: sp.Basic) -> bool:
        return isinstance(e, sp.Pow) and sigmoid_arg(e) is not None

    def rewrite(e: sp.Pow) -> sp.Expr:
        return Sigmoid(sigmoid_arg(e)) ** (-e.exp)

    return moved.replace(logistic, rewrite)


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


# --- second derivatives -------------------------------------------------------------------


def second_derivative_shown(f: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """f''(x) in its simplest readable checked form: through the standard normal phi and Phi
    (GELU: phi(x) (2 - x^2)), the logistic sigma (sigmoid: sigma (1 - sigma) (1 - 2 sigma);
    softplus: sigma (1 - sigma)), sech^2 (tanh: -2 tanh sech^2), factored, with the minus
    signs taken into differences (1 - sigma, not sigma - 1), piece by piece for a Piecewise
    (conditions as condition_shown writes them). The form with the fewest operations (then
    the narrowest) among those that agree with sympy.diff(f, x, 2) at sample points with 30
    digits (symbp.symbolic.equal.agree); that derivative itself when none is simpler."""
    exact = sp.diff(f, x, 2)
    if isinstance(exact, sp.Piecewise):
        pieces = [(_second_shown(e, x), condition_shown(c)) for e, c in exact.args]
        tidy = sp.Piecewise(*pieces)
        return tidy if agree(exact, elementary(tidy)) else exact
    return _second_shown(exact, x)


def _second_shown(exact: sp.Expr, x: sp.Symbol) -> sp.Expr:
    if not isinstance(exact, sp.Expr) or exact.is_Atom:
        return exact
    candidates = [shown(exact)]
    named = _conjugates_merged(_bounded(lambda e: _named_factored(e, x), exact))
    for form in (candidates[0], named):
        candidates += [form, _sech_squares(form), _negated_squares(form)]
    best = exact
    for form in candidates:
        form = _pairs_flipped(form)
        simpler = (sp.count_ops(form), width(form)) < (sp.count_ops(best), width(best))
        if simpler and not form.has(sp.I) and agree(exact, elementary(form)):
            best = form
    return best


def _named_factored(expr: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """expr through phi(x) and Phi(x) (its Gaussians and erfs), sigma(x) (its exp(k x): e^x
    is sigma/(1 - sigma)), other calls kept whole, then factored as a rational function."""
    sigma, pdf, cdf = Sigmoid(x), NormalPdf(x), NormalCdf(x)
    moved = expr.replace(
        lambda e: isinstance(e, sp.erf) and sp.simplify(e.args[0] * sp.sqrt(2) - x) == 0,
        lambda e: 2 * cdf - 1,
    )
    moved = moved.replace(
        lambda e: isinstance(e, sp.exp) and sp.expand(e.args[0] + x**2 / 2) == 0,
        lambda e: sp.sqrt(2 * sp.pi) * pdf,
    )
    # the other calls (tanh(log(e^x + 1)), sin(x), ...) stand for themselves while factoring
    kept: dict[sp.Symbol, sp.Expr] = {}

    def keep(e: sp.Basic) -> sp.Symbol:
        name = sp.Dummy(f"k{len(kept)}", real=True)
        kept[name] = e
        return name

    outer = [
        e
        for e in moved.atoms(sp.Function)
        if not isinstance(e, (sp.exp, Sigmoid, NormalPdf, NormalCdf))
    ]
    moved = moved.xreplace({e: keep(e) for e in outer})
    s = sp.Dummy("s", positive=True)
    ratio = s / (1 - s)  # e^x in terms of sigma(x) = s

    def through_sigma(e: sp.exp) -> sp.Expr:
        k = sp.simplify(e.args[0] / x)
        return ratio**k if k.is_integer else e

    moved = moved.replace(lambda e: isinstance(e, sp.exp), through_sigma)
    factored = sp.factor(sp.together(moved))
    return factored.xreplace({s: sigma, **kept})


def _negated_squares(expr: sp.Expr) -> sp.Expr:
    """tanh(u)^2 - 1 as -sech(u)^2 (the form _sech_squares misses)."""

    def square(term: sp.Basic) -> bool:
        parts = sp.Add.make_args(term)
        return (
            isinstance(term, sp.Add)
            and len(parts) == 2
            and -sp.S.One in parts
            and any(_tanh_arg(-p) is not None for p in parts)
        )

    def rewrite(term: sp.Add) -> sp.Expr:
        other = next(p for p in term.args if p != -sp.S.One)
        return -(sp.sech(_tanh_arg(-other)) ** 2)

    return expr.replace(square, rewrite)


def _pairs_flipped(expr: sp.Expr) -> sp.Expr:
    """A product's differences u - c (c a positive number) written c - u two at a time, and
    one more with the product's minus sign: (s - 1)(2 s - 1) s as s (1 - s)(1 - 2 s)."""
    if isinstance(expr, sp.Piecewise) or not isinstance(expr, sp.Mul):
        return expr
    coeff, factors = expr.as_coeff_mul()
    flippable = [k for k, f in enumerate(factors) if _constant_last(f)]
    count = len(flippable) - len(flippable) % 2
    if coeff < 0 and len(flippable) % 2:
        count, coeff = count + 1, -coeff
    if count == 0:
        return expr
    out = list(factors)
    for k in flippable[:count]:
        out[k] = sp.expand(-out[k])
    return sp.Mul(coeff, *out, evaluate=False) if coeff != 1 else sp.Mul(*out, evaluate=False)


def _constant_last(f: sp.Expr) -> bool:
    """f is a sum whose constant term is negative (s - 1, 2 s - 1, x^2 - 2)."""
    if not isinstance(f, sp.Add):
        return False
    constant = f.as_coeff_Add()[0]
    return bool(constant.is_negative)


def _conjugates_merged(expr: sp.Expr) -> sp.Expr:
    """(1 - u)(u + 1) as 1 - u^2 in a product (factor splits the 1 - tanh^2 of a derivative)."""
    if not isinstance(expr, sp.Mul):
        return expr
    factors = list(expr.args)
    for i, a in enumerate(factors):
        for j in range(i + 1, len(factors)):
            b = factors[j]
            if isinstance(a, sp.Add) and isinstance(b, sp.Add) and len(a.args) == len(b.args) == 2:
                product = sp.expand(a * b)
                if len(sp.Add.make_args(product)) == 2:
                    factors[i], factors[j] = product, sp.S.One
                    return _conjugates_merged(sp.Mul(*factors))
    return expr
