"""The output error of a softmax layer derived from the logits, for losses with log(1 - a).

With a = softmax(z), write l = log sum_m exp(z_m) and l_k = log sum_(m != k) exp(z_m); then
log a_k = z_k - l and log(1 - a_k) = l_k - l, so the per-unit loss is a function
e_k = F(z_k, l, l_k, y_k) of the logits. SymPy differentiates F in its three arguments, and
the sums l and l_k in index notation:
    dl/dz_j   = a_j,    dl_k/dz_j = [j != k] a_j / (1 - a_k)
and the chain rule gives, per sample,
    delta_j = c (dF_j/dz_j + a_j sum_k dF_k/dl + sum_(k != j) dF_k/dl_k a_j / (1 - a_k)).
Every a_j / (1 - a_k) with k != j is the softmax of the units other than k, at j: at most 1,
and evaluated from the logits (reductions.ExclusiveSoftmaxSum) it is finite at any logit gap.
SymPy's own error term in a, a_j (dE/da_j - sum_k a_k dE/da_k), holds a_k / (1 - a_k) and is
a difference of huge terms once a unit dominates (issue 18: 7% off at a gap of 36 in
float64). The form here is used only once it agrees with that one over samples of several
units (symbp.symbolic.equal.agree_over_units).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from symbp.errors import DerivationError
from symbp.ir.reductions import ExclusiveSoftmaxSum, LogOneMinusSoftmax, LogSumExp, UnitSum
from symbp.symbolic import bounded
from symbp.symbolic.equal import agree_over_units
from symbp.symbolic.indexed import A_OUT, N_UNITS, J, K, M, Y, Z

# The arguments of F: the unit's logit, log sum_m exp(z_m), log sum_(m != k) exp(z_m), target.
Z_K = sp.Symbol("z", real=True)
LSE = sp.Symbol("ell", real=True)
LSE_OTHERS = sp.Symbol("ell_k", real=True)
Y_K = sp.Symbol("y", real=True)


@dataclass(frozen=True)
class LogitsError:
    """Each step of the output error from the logits, as SymPy produced it."""

    loss: sp.Expr  # F(z, ell, ell_k, y)
    d_z: sp.Expr  # dF/dz
    d_lse: sp.Expr  # dF/d ell
    d_others: sp.Expr  # dF/d ell_k
    lse_rule: sp.Expr  # d ell / d z_j (indexed), a_j
    others_rule: sp.Expr  # d ell_k / d z_j (indexed), [j != k] a_j / (1 - a_k)
    delta: sp.Expr  # whole-array form in Z, A, Y, c (the code's)
    delta_indexed: sp.Expr  # the same per unit j, for the document

    def __repr__(self) -> str:
        return f"LogitsError(F = {self.loss}, delta = {self.delta})"


def _drop_guards(expr: sp.Expr) -> sp.Expr:
    """SymPy's sum over m != k splits on whether k lies in 1..K: it always does here."""
    return expr.replace(
        lambda e: (
            isinstance(e, sp.Piecewise) and all(s.is_integer for s in e.args[0].cond.free_symbols)
        ),
        lambda e: e.args[0].expr,
    )


def _in_a(expr: sp.Expr) -> sp.Expr:
    """exp(z_i) / sum_m exp(z_m) -> a_i: the softmax definition read backwards."""
    total = sp.Symbol("S", positive=True)
    named = expr.subs(sp.Sum(sp.exp(Z[M]), (M, 1, N_UNITS)), total)
    named = named.replace(
        lambda e: isinstance(e, sp.exp) and isinstance(e.args[0], sp.Indexed),
        lambda e: A_OUT[e.args[0].indices[0]] * total,
    )
    return sp.factor(sp.cancel(named))


@functools.lru_cache(maxsize=1)
def sum_rules() -> tuple[sp.Expr, sp.Expr]:
    """d l / d z_j and d l_k / d z_j, differentiated by SymPy in index notation."""
    every = sp.Sum(sp.exp(Z[M]), (M, 1, N_UNITS))
    others = sp.Sum((1 - sp.KroneckerDelta(M, K)) * sp.exp(Z[M]), (M, 1, N_UNITS))

    def rule(total: sp.Expr) -> sp.Expr:
        raw = sp.diff(sp.log(total), Z[J])
        return _in_a(_drop_guards(raw.replace(lambda e: isinstance(e, sp.Sum), sp.Sum.doit)))

    return rule(every), rule(others)


def _loss_in_logits(unit_loss: sp.Expr, yhat: sp.Symbol, y: sp.Symbol) -> sp.Expr | None:
    """F(z, ell, ell_k, y), or None when a log of a other than log a and log(1 - a) remains.

    a and 1 - a are positive (two or more units), so SymPy expands logs of their products
    and powers exactly."""
    p, q = sp.Symbol("p", positive=True), sp.Symbol("q", positive=True)
    expr = unit_loss.subs(yhat, p).replace(sp.log, lambda u: sp.log(u.subs(1 - p, q)))
    expr = sp.expand_log(expr)
    expr = expr.xreplace({sp.log(p): Z_K - LSE, sp.log(q): LSE_OTHERS - LSE})
    if any(lg.has(p, q) for lg in expr.atoms(sp.log)):
        return None
    return expr.xreplace({p: sp.exp(Z_K - LSE), q: sp.exp(LSE_OTHERS - LSE), y: Y_K})


def _as_arrays(expr: sp.Expr, z: sp.Symbol, y: sp.Symbol) -> sp.Expr:
    """A derivative of F in whole-array form (ell_k - ell = log(1 - a), from the logits)."""
    lse = LogSumExp(z)
    return (
        bounded.tidy(expr.xreplace({LSE_OTHERS: LSE + sp.Symbol("_o", real=True)}))
        .xreplace({sp.Symbol("_o", real=True): LogOneMinusSoftmax(z), Z_K: z, Y_K: y})
        .xreplace({LSE: lse})
    )


def _unit_sum(expr: sp.Expr) -> sp.Expr:
    """sum over the units of each sample: K times a constant, else a UnitSum."""
    return N_UNITS * expr if not expr.free_symbols else UnitSum(expr)


def logits_error(
    unit_loss: sp.Expr,
    names: tuple[sp.Symbol, sp.Symbol],
    arrays: tuple[sp.Symbol, sp.Symbol, sp.Symbol, sp.Symbol],
    raw_delta: sp.Expr,
) -> LogitsError | None:
    """The softmax output error from the logits, or None when the loss has no log(1 - a)
    (SymPy's form in a is then free of a / (1 - a)) or no form in the logits.

    names: (yhat, y) of unit_loss; arrays: the code's (A, Y, Z, c); raw_delta: SymPy's
    error term in those arrays, which the result must equal. Raises DerivationError when the
    index-notation rules are not what the chain rule below assumes."""
    yhat, y = names
    A, Y, Zs, c = arrays
    loss = bounded.bounded(lambda: _loss_in_logits(unit_loss, yhat, y), None)
    if loss is None or not loss.has(LSE_OTHERS):
        return None
    lse_rule, others_rule = sum_rules()
    _check_rules(lse_rule, others_rule)
    d_z, d_lse, d_others = (bounded.tidy(sp.diff(loss, v)) for v in (Z_K, LSE, LSE_OTHERS))
    delta = c * (
        _as_arrays(d_z, Zs, Y)
        + A * _unit_sum(_as_arrays(d_lse, Zs, Y))
        + ExclusiveSoftmaxSum(_as_arrays(d_others, Zs, Y), Zs)
    )
    softmax = {A: sp.exp(Zs - LogSumExp(Zs)), Y: Y, Zs: Zs}
    with_units = {N_UNITS: sp.Integer(4)}
    if not agree_over_units(raw_delta.xreplace(with_units), delta.xreplace(with_units), softmax):
        raise DerivationError(
            f"the output error from the logits, {delta}, differs from SymPy's {raw_delta}",
            fix="report this network: a derived rewrite failed its check",
        )
    indexed = _indexed(d_z, d_lse, d_others, c)
    return LogitsError(loss, d_z, d_lse, d_others, lse_rule, others_rule, delta, indexed)


def _indexed(d_z: sp.Expr, d_lse: sp.Expr, d_others: sp.Expr, c: sp.Symbol) -> sp.Expr:
    """c (dF_j/dz_j + a_j sum_k dF_k/d ell + sum_(k != j) dF_k/d ell_k a_j / (1 - a_k))."""

    def at(expr: sp.Expr, i: sp.Symbol) -> sp.Expr:
        return expr.xreplace({Z_K: Z[i], Y_K: Y[i], LSE_OTHERS: sp.Symbol(f"ell_{i}", real=True)})

    lse_sum = sp.Sum(at(d_lse, K), (K, 1, N_UNITS)).doit()
    others = sp.Sum(
        (1 - sp.KroneckerDelta(J, K)) * at(d_others, K) * A_OUT[J] / (1 - A_OUT[K]),
        (K, 1, N_UNITS),
    )
    return c * (at(d_z, J) + A_OUT[J] * lse_sum + others)


def _check_rules(lse_rule: sp.Expr, others_rule: sp.Expr) -> None:
    """SymPy's derivatives of the two log-sums are the ones the chain rule is written with."""
    a_j, a_k = A_OUT[J], A_OUT[K]
    wanted = (a_j, (1 - sp.KroneckerDelta(J, K)) * a_j / (1 - a_k))
    for got, want in zip((lse_rule, others_rule), wanted, strict=True):
        if sp.simplify(got - want) != 0:
            raise DerivationError(
                f"SymPy's derivative of a log-sum-exp is {got}, not {want}",
                fix="report this SymPy version: symbp's softmax derivation relies on it",
            )
