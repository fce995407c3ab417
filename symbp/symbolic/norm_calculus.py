"""Layer norm and batch norm: one normalisation, over the features of a sample (layer norm)
or over the samples of a feature (batch norm, with the batch's own statistics).

Along the normalised index i = 1..N (the other index is a bystander):
    mu = (1/N) sum_m x_m,   sigma = sqrt((1/N) sum_m (x_m - mu)^2 + eps),
    xhat_i = (x_i - mu) / sigma,   z_i = gamma xhat_i + beta.
SymPy differentiates this in index notation; the error sent back to x is
    sum_i g_i dz_i/dx_j,
which, with the statistics named and sum_m xhat_m = 0 (the definition of mu), SymPy brings
to the compact form (1/sigma) (gg_j - mean(gg) - xhat_j mean(gg xhat)), gg = gamma g.
Forward mode (the tangent of z along x', gamma', beta') is derived the same way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from symbp.ir.reductions import BatchSum, UnitSum
from symbp.symbolic.indexed import in_range

I, J, M = sp.symbols("i j m", integer=True, positive=True)
N = sp.Symbol("N", integer=True, positive=True)
EPS = sp.Symbol("epsilon", positive=True)
X = sp.IndexedBase("x", real=True)
XD = sp.IndexedBase("xd", real=True)  # x'
G = sp.IndexedBase("g", real=True)  # dL/dz
XHAT = sp.IndexedBase("xhat", real=True)
MU = sp.Symbol("mu", real=True)
SIGMA = sp.Symbol("sigma", positive=True)
T = sp.Symbol("t", real=True)

# Whole-array names: what the generated code holds (per sample or per feature, broadcast).
ARR = {
    name: sp.Symbol(name, real=True)
    for name in ("X", "Xd", "G", "Xhat", "Gamma", "Beta", "Gammad", "Betad")
}
ARR_SIGMA = sp.Symbol("Sigma", positive=True)
ARR_COUNT = sp.Symbol("Ncount", positive=True)  # N: the features, or the batch size


@dataclass(frozen=True)
class NormDerivation:
    """Every step SymPy took, in index form, and the whole-array forms the code evaluates."""

    over: str  # "features" (layer norm) or "batch" (batch norm)
    z: sp.Expr  # z_i in index form, statistics written out
    dz_dx: sp.Expr  # dz_i/dx_j with the statistics named
    vjp_raw: sp.Expr  # sum_i g_i dz_i/dx_j after the Kronecker sums
    vjp: sp.Expr  # the compact form (index)
    tangent: sp.Expr  # z_i' along x', gamma', beta' (index, compact)
    # whole-array forms (the reduction runs over the normalised axis):
    mean: sp.Expr  # mu
    sigma: sp.Expr  # sigma, from X and mu
    xhat: sp.Expr
    out: sp.Expr  # z
    back: sp.Expr  # dL/dx
    d_gamma: sp.Expr
    d_beta: sp.Expr
    xhat_dot: sp.Expr  # xhat' along X'
    sigma_dot: sp.Expr
    out_dot: sp.Expr  # z'

    def __repr__(self) -> str:
        return f"NormDerivation({self.over}: dL/dx = {self.back})"


def _gamma(over: str) -> sp.Expr:
    """gamma_i for layer norm (one per feature, along i); gamma for batch norm (constant
    along the batch)."""
    return sp.IndexedBase("gamma", real=True)[I] if over == "features" else sp.Symbol("gamma")


def _split_sums(expr: sp.Expr) -> sp.Expr:
    """Sum(a + b) -> Sum(a) + Sum(b), index-free factors pulled out, Sum(1) -> N."""

    def split(e: sp.Sum) -> sp.Expr:
        index = e.limits[0][0]
        out = []
        for term in sp.Add.make_args(sp.expand(e.function)):
            # free_symbols, not has(): an inner sum over the same letter does not depend on it.
            inner = [f for f in sp.Mul.make_args(term) if index in f.free_symbols]
            outer = [f for f in sp.Mul.make_args(term) if index not in f.free_symbols]
            body = sp.Mul(*inner)
            out.append(sp.Mul(*outer) * (N if body == 1 else sp.Sum(body, *e.limits)))
        return sp.Add(*out)

    return sp.expand(expr.replace(lambda e: isinstance(e, sp.Sum), split))


def _named(expr: sp.Expr) -> sp.Expr:
    """Statistics named: sum_m x_m = N mu, sigma; then x_i = sigma xhat_i + mu, and
    sum_m xhat_m = 0 (the definition of mu)."""
    mean = sp.Sum(X[M], (M, 1, N)) / N
    stdev = sp.sqrt(sp.Sum((X[M] - mean) ** 2, (M, 1, N)) / N + EPS)
    expr = expr.subs(stdev, SIGMA).subs(sp.Sum(X[M], (M, 1, N)), N * MU)
    expr = expr.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == X,
        lambda e: SIGMA * XHAT[e.indices[0]] + MU,
    )
    expr = _split_sums(_split_sums(expr))
    expr = expr.replace(
        lambda e: isinstance(e, sp.Sum) and e.function == XHAT[e.limits[0][0]], lambda e: 0
    )
    return sp.expand(_in_range(expr))


def _in_range(expr: sp.Expr) -> sp.Expr:
    """Every Piecewise whose first condition only bounds integer indices (j <= N, which
    always holds here) -> its first branch."""

    def is_guard(e: sp.Basic) -> bool:
        if not isinstance(e, sp.Piecewise):
            return False
        cond = e.args[0].cond
        return cond != sp.true and all(s.is_integer for s in cond.free_symbols)

    return expr.replace(is_guard, lambda e: e.args[0].expr)


def _to_array(expr: sp.Expr, over: str) -> sp.Expr:
    """Index form -> whole arrays: x_j, g_j, ... -> X, G, ...; sum over the normalised
    index -> UnitSum (features) or BatchSum (batch); N -> the count."""
    reduce = UnitSum if over == "features" else BatchSum
    bases = {"x": "X", "xd": "Xd", "g": "G", "xhat": "Xhat", "gamma": "Gamma"}
    gamma = sp.Symbol("gamma")

    def array(e: sp.Expr) -> sp.Expr:
        e = e.replace(lambda a: isinstance(a, sp.Sum), lambda a: reduce(array(a.function)))
        e = e.replace(lambda a: isinstance(a, sp.Indexed), lambda a: ARR[bases[str(a.base)]])
        names = {gamma: ARR["Gamma"], SIGMA: ARR_SIGMA, N: ARR_COUNT}
        for base in ("gammad", "betad"):
            names[sp.Symbol(base)] = ARR[base.capitalize()]
        return e.xreplace(names)

    return array(expr)


@functools.lru_cache(maxsize=2)
def derive_norm(over: str) -> NormDerivation:
    """The normalisation's forward and backward equations, derived by SymPy."""
    gamma_i = _gamma(over)
    beta_i = sp.IndexedBase("beta", real=True)[I] if over == "features" else sp.Symbol("beta")
    mean = sp.Sum(X[M], (M, 1, N)) / N
    stdev = sp.sqrt(sp.Sum((X[M] - mean) ** 2, (M, 1, N)) / N + EPS)
    z = gamma_i * (X[I] - mean) / stdev + beta_i
    dz_dx = _named(in_range(sp.diff(z, X[J]).doit()))
    vjp_raw = in_range(sp.Sum(G[I] * dz_dx, (I, 1, N)).doit())
    vjp = sp.factor_terms(sp.collect(_named(vjp_raw), SIGMA))
    # Forward mode: z along x -> x + t x', gamma -> gamma + t gamma', beta -> beta + t beta'.
    moved = z.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == X, lambda e: e + T * XD[e.indices[0]]
    )
    gd, bd = sp.Symbol("gammad"), sp.Symbol("betad")
    moved = moved.subs({gamma_i: gamma_i + T * gd, beta_i: beta_i + T * bd}, simultaneous=True)
    tangent = sp.factor_terms(_named(in_range(sp.diff(moved, T).subs(T, 0).doit())))
    grads = tuple(_param_grad(over, z, p) for p in (gamma_i, beta_i))
    return _arrays(over, z, dz_dx, vjp_raw, vjp, tangent, grads)


def _param_grad(over: str, z: sp.Expr, param: sp.Expr) -> sp.Expr:
    """dL/dparam in whole-array form. Layer norm: param_i of feature i, shared by the
    samples, so the sum over the batch of g_i dz_i/dparam_i. Batch norm: one param per
    feature, constant along the normalised (batch) index i, so sum_i g_i dz_i/dparam."""
    local = _named(sp.diff(z, param))
    if over == "features":
        return BatchSum(_to_array(G[I] * local, over))
    return _to_array(sp.Sum(G[I] * local, (I, 1, N)), over)


def _arrays(
    over: str,
    z: sp.Expr,
    dz_dx: sp.Expr,
    vjp_raw: sp.Expr,
    vjp: sp.Expr,
    tangent: sp.Expr,
    grads: tuple[sp.Expr, sp.Expr],
) -> NormDerivation:
    """The whole-array forms of every equation."""
    reduce = UnitSum if over == "features" else BatchSum
    X_, Xhat = ARR["X"], ARR["Xhat"]
    mean = reduce(X_) / ARR_COUNT
    sigma = sp.sqrt(reduce((X_ - sp.Symbol("Mu", real=True)) ** 2) / ARR_COUNT + EPS)
    back = _to_array(vjp.subs(J, I), over)
    xhat_dot = _to_array(
        _named(in_range(sp.diff(_xhat_moved(), T).subs(T, 0).doit())).subs(J, I), over
    )
    out_dot = _to_array(tangent, over)
    return NormDerivation(
        over=over,
        z=z,
        dz_dx=dz_dx,
        vjp_raw=vjp_raw,
        vjp=vjp,
        tangent=tangent,
        mean=mean,
        sigma=sigma,
        xhat=(X_ - sp.Symbol("Mu", real=True)) / ARR_SIGMA,
        out=ARR["Gamma"] * Xhat + ARR["Beta"],
        back=back,
        d_gamma=grads[0],
        d_beta=grads[1],
        xhat_dot=xhat_dot,
        sigma_dot=_to_array(_named(in_range(sp.diff(_moved(_stdev()), T).subs(T, 0).doit())), over),
        out_dot=out_dot,
    )


def _stdev() -> sp.Expr:
    mean = sp.Sum(X[M], (M, 1, N)) / N
    return sp.sqrt(sp.Sum((X[M] - mean) ** 2, (M, 1, N)) / N + EPS)


def _moved(expr: sp.Expr) -> sp.Expr:
    """expr with x moved along x': x -> x + t x'."""
    return expr.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == X, lambda e: e + T * XD[e.indices[0]]
    )


def _xhat_moved() -> sp.Expr:
    """xhat_i with x moved along x' (for xhat', which the R-operator reads)."""
    mean = sp.Sum(X[M], (M, 1, N)) / N
    return _moved((X[I] - mean) / _stdev())
