"""Forward mode and Pearlmutter's R-operator, derived by SymPy from the layer equations.

Every quantity q is moved along a direction, q(t) = q + t q', and SymPy
differentiates the index-notation equations with respect to t at t = 0:
    z'      from z = sum_p W a + b              (forward-mode tangent, also R{z})
    R{dW}   from dL/dW = sum_s delta a          (product rule, found by diff)
    R{back} from dL/da = sum_i delta W
The elementwise parts (a' = f'(z) z', R{delta}) are directional derivatives of each
layer's formulas, taken by sympy.diff in directional() below.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from symbp.derivation.derive import fprime_at
from symbp.errors import DerivationError
from symbp.ir.naming import Layer, Role, array, matrix
from symbp.ir.reductions import (
    ExclusiveSoftmaxMean,
    ExclusiveSoftmaxSum,
    ExclusiveSoftmaxSumTangent,
    LogOneMinusSoftmax,
    LogSumExp,
    UnitSum,
)
from symbp.symbolic import bounded, probe
from symbp.symbolic.activations import X
from symbp.symbolic.calculus import A as A_SCALAR
from symbp.symbolic.calculus import ActivationDerivation
from symbp.symbolic.equal import agree_over_units
from symbp.symbolic.indexed import (
    A_PREV,
    DELTA,
    N_BATCH,
    N_IN,
    N_UNITS,
    B,
    I,
    J,
    P,
    Q,
    R,
    S,
    W,
    contract,
    layer_calculus,
    sum_terms,
)
from symbp.symbolic.output import ARR_A, ARR_Z, softmax_jacobian, to_array

T = sp.Symbol("t", real=True)
W_DOT = sp.IndexedBase("Wd")
B_DOT = sp.IndexedBase("bd")
A_DOT = sp.IndexedBase("ad")
R_DELTA = sp.IndexedBase("Rdelta")
MAT_BD = matrix(
    Role.BIAS_DIRECTION, Layer.GENERAL, sp.Symbol("n_out", integer=True, positive=True), 1
)


def along(expr: sp.Expr, moves: dict[sp.IndexedBase, sp.IndexedBase]) -> sp.Expr:
    """d/dt at t = 0 of expr with every base X replaced by X + t X'."""
    moved = expr.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base in moves,
        lambda e: e + T * moves[e.base][e.indices],
    )
    return sp.diff(moved, T).subs(T, 0)


def _split_sum(expr: sp.Expr) -> list[sp.Expr]:
    """Sum(a + b) -> [Sum(a), Sum(b)]; other terms as they are."""
    terms: list[sp.Expr] = []
    for term in sp.Add.make_args(expr):
        if isinstance(term, sp.Sum):
            body = sp.expand(term.function)
            terms.extend(sp.Sum(t, *term.limits) for t in sp.Add.make_args(body))
        else:
            terms.append(term)
    return terms


def _matrix(expr: sp.Expr, free: tuple[sp.Symbol, ...]) -> sp.MatrixExpr:
    """Each contraction term of expr as a matrix product; a bare bias tangent as bd 1^T."""
    parts = []
    for term in _split_sum(expr):
        if isinstance(term, sp.Sum):
            parts.append(contract(term, free))
        elif term == B_DOT[I]:
            parts.append(MAT_BD * sp.OneMatrix(1, N_BATCH))
        else:
            raise ValueError(f"unexpected term {term}")
    return sp.MatAdd(*parts) if len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class TangentCalculus:
    """The general tangent equations of a dense layer (index and column-layout matrix form)."""

    z_dot: sp.Expr
    dW_r: sp.Expr
    db_r: sp.Expr
    back_r: sp.Expr
    z_dot_matrix: sp.MatrixExpr
    dW_r_matrix: sp.MatrixExpr
    db_r_matrix: sp.MatrixExpr
    back_r_matrix: sp.MatrixExpr


@functools.lru_cache(maxsize=1)
def tangent_calculus() -> TangentCalculus:
    """Differentiate the layer equation and the gradient formulas along a direction."""
    calc = layer_calculus()
    z = sp.Sum(W[I, P] * A_PREV[P, S], (P, 1, N_IN)) + B[I]
    z_dot = along(z, {W: W_DOT, A_PREV: A_DOT, B: B_DOT})
    dW_r = along(calc.dL_dW, {DELTA: R_DELTA, A_PREV: A_DOT})
    db_r = along(calc.dL_db, {DELTA: R_DELTA})
    back_r = along(calc.dL_da, {DELTA: R_DELTA, W: W_DOT})
    return TangentCalculus(
        z_dot=z_dot,
        dW_r=dW_r,
        db_r=db_r,
        back_r=back_r,
        z_dot_matrix=_matrix(z_dot, (I, S)),
        dW_r_matrix=_matrix(dW_r, (Q, R)),
        db_r_matrix=_matrix(db_r, (Q,)),
        back_r_matrix=_matrix(back_r, (R, S)),
    )


def directional(expr: sp.Expr, moves: dict[sp.Symbol, sp.Expr]) -> sp.Expr:
    """sum_s (d expr / d s) s' by sympy.diff; each per-sample reduction (a sum over units, a
    log-sum-exp, the softmax sums that leave a unit out) by its own rule, reduction_tangent."""
    sums = sorted(expr.atoms(*_REDUCTIONS), key=sp.default_sort_key)
    stand_in = {u: sp.Dummy(f"u{k}") for k, u in enumerate(sums)}
    flat = expr.xreplace(stand_in)
    total = sp.S.Zero
    for symbol, velocity in moves.items():
        total += sp.diff(flat, symbol) * velocity
    for u, dummy in stand_in.items():
        total += sp.diff(flat, dummy) * reduction_tangent(u, moves)
    back = {dummy: u for u, dummy in stand_in.items()}
    return total.xreplace(back)


_REDUCTIONS = (UnitSum, LogSumExp, LogOneMinusSoftmax, ExclusiveSoftmaxSum, ExclusiveSoftmaxMean)


def reduction_tangent(node: sp.Expr, moves: dict[sp.Symbol, sp.Expr]) -> sp.Expr:
    """The directional derivative of one per-sample reduction, with a = softmax(z) and
    q_ik = a_i / (1 - a_k) (the softmax of the units other than k, at i), so that
    q_ik' = q_ik (z'_i - u_k) with u_k = sum_(i != k) q_ik z'_i:
        (log sum_m e^z_m)'        = sum_k a_k z'_k
        (log(1 - a_k))'           = -a_k' / (1 - a_k) = -a_k (z'_k - u_k)
        (sum_(k != j) g_k q_jk)'  = sum_(k != j) g'_k q_jk + ExclusiveSoftmaxSumTangent
        (sum_(i != k) v_i q_ik)'  = sum_(i != k) (v'_i + v_i z'_i) q_ik - (...) u_k
    The second is written without the difference of nearly equal numbers that
    u_k - sum_i a_i z'_i is where a_k is tiny."""
    if isinstance(node, UnitSum):
        return UnitSum(directional(node.args[0], moves))
    z = node.args[-1]
    z_dot = directional(z, moves)
    softmax = sp.exp(z - LogSumExp(z))
    if isinstance(node, LogSumExp):
        return UnitSum(softmax * z_dot)
    u = ExclusiveSoftmaxMean(z_dot, z)
    if isinstance(node, LogOneMinusSoftmax):
        return -softmax * (z_dot - u)
    g = node.args[0]
    g_dot = directional(g, moves)
    if isinstance(node, ExclusiveSoftmaxSum):
        return ExclusiveSoftmaxSum(g_dot, z) + ExclusiveSoftmaxSumTangent(g, z_dot, z)
    if isinstance(node, ExclusiveSoftmaxMean):
        return ExclusiveSoftmaxMean(g_dot + g * z_dot, z) - node * u
    raise DerivationError(
        f"no third-order rule for {type(node).__name__}",
        fix="report this network: symbp derives first and second order only",
    )


@functools.lru_cache(maxsize=1)
def softmax_tangent() -> sp.Expr:
    """a'_k = sum_j (da_k/dz_j) z'_j for softmax, in whole-array form (indexed by k).

    SymPy's sum is a_k (z'_k - sum_j a_j z'_j): for the largest unit, a difference of
    nearly equal numbers once the unit dominates. Splitting off j = k gives
    a_k (1 - a_k) (z'_k - sum_(j != k) q_jk z'_j) with q_jk = a_j / (1 - a_k), and
    1 - a_k = exp(log(1 - a_k)) from the logits; used once it agrees with SymPy's form over
    samples of several units."""
    z_dot = sp.IndexedBase("zd")
    zd = array(Role.TANGENT_Z)
    summed = to_array(sum_terms(softmax_jacobian() * z_dot[J], J, N_UNITS), extra={"zd": zd})
    split = ARR_A * sp.exp(LogOneMinusSoftmax(ARR_Z)) * (zd - ExclusiveSoftmaxMean(zd, ARR_Z))
    arrays = {ARR_A: sp.exp(ARR_Z - LogSumExp(ARR_Z)), ARR_Z: ARR_Z, zd: zd}
    if not agree_over_units(summed, split, arrays):
        raise DerivationError(
            f"the softmax tangent {split} differs from SymPy's {summed}",
            fix="report this SymPy version: a derived rewrite failed its check",
        )
    return split


_ROLES = {
    "A": Role.ACTIVATION,
    "Z": Role.PRE_ACTIVATION,
    "G": Role.ERROR_IN,
    "Ad": Role.TANGENT_A,
    "Zd": Role.TANGENT_Z,
    "RG": Role.R_ERROR_IN,
}


def _sym(letter: str, layer: int | None = None) -> sp.Symbol:
    """The array of a role (by its letter in this module's formulas) at a layer, or the
    layer-free one the per-layer forms are derived on."""
    return array(_ROLES[letter], layer)


def elementwise_tangents(
    delta: sp.Expr, act: ActivationDerivation | None, is_output: bool, l: int
) -> tuple[sp.Expr, sp.Expr]:
    """a' and R{delta} of layer l (any kind), by directional derivatives of a and delta."""
    layer = _Elementwise(delta, act, is_output)
    a_sym, z_sym, zd = _sym("A", l), _sym("Z", l), _sym("Zd", l)
    g = _sym("G", l)
    hidden = not is_output and act is not None and isinstance(delta, sp.Mul)
    if layer.act is None:
        a_dot = softmax_tangent().xreplace({ARR_A: a_sym, _sym("Zd"): zd, ARR_Z: z_sym})
    elif hidden and delta.args.count(g) == 1:
        # delta = G f'(z): a' = f'(z) z' from the same factors (rebuilding f' costs ~1 ms)
        a_dot = sp.Mul(zd, *[factor for factor in delta.args if factor != g])
    else:
        a_dot = fprime_at(layer.act, l) * zd
    # Derive R{delta} on layer-free names, once per distinct delta formula, then rename.
    if hidden and act is not None:  # built as G<l> f'(z<l>) by symbp.derivation.network
        key = _generic_hidden_delta(act)
    else:
        key = layer.delta.xreplace({a_sym: _sym("A"), z_sym: _sym("Z"), g: _sym("G")})
    if key not in _R_DELTA_CACHE:
        moves = {_sym("A"): _sym("Ad"), _sym("Z"): _sym("Zd"), _sym("G"): _sym("RG")}
        if layer.is_output or layer.act is None:
            r_delta = bounded.tidy(directional(key, moves))
        else:
            r_delta = _hidden_r_delta(key, moves, layer.act)
        if layer.is_output and layer.act is not None and layer.act.in_a is not None:
            r_delta = _through_a_dot(r_delta, layer.act)
        _R_DELTA_CACHE[key] = r_delta
    names = {_sym(k): _sym(k, l) for k in _ROLES}
    return a_dot, _R_DELTA_CACHE[key].xreplace(names)


_R_DELTA_CACHE: dict[sp.Expr, sp.Expr] = {}


def _generic_hidden_delta(act: ActivationDerivation) -> sp.Expr:
    """G f'(z) on layer-free names, once per activation."""
    form = act.backward_form
    if form not in _GENERIC_DELTA:
        _GENERIC_DELTA[form] = _sym("G") * form.xreplace({A_SCALAR: _sym("A"), X: _sym("Z")})
    return _GENERIC_DELTA[form]


_GENERIC_DELTA: dict[sp.Expr, sp.Expr] = {}


def _hidden_r_delta(
    key: sp.Expr, moves: dict[sp.Symbol, sp.Expr], act: ActivationDerivation
) -> sp.Expr:
    """R{G f'} = R{G} f' + G (df'/da a' + df'/dz z'): the product rule written out, with the
    partial derivatives of f' that symbp.symbolic.calculus simplified, each on its own
    (simplifying the whole sum mostly runs out of its time budget for nothing)."""
    g = _sym("G")
    fprime = key.xreplace({g: sp.S.One})
    generic = {A_SCALAR: _sym("A"), X: _sym("Z")}
    if key != g * fprime or fprime != act.backward_form.xreplace(generic):
        return bounded.tidy(directional(key, moves))
    out = moves[g] * fprime
    for v, partial in act.second:
        out += g * partial.xreplace(generic) * moves[generic[v]]
    return out


@dataclass(frozen=True)
class _Elementwise:
    delta: sp.Expr
    act: ActivationDerivation | None
    is_output: bool


def _through_a_dot(r_delta: sp.Expr, act: ActivationDerivation) -> sp.Expr:
    """The output layer's R{delta} with a' = f'(a) z' put in and simplified, when that form
    is finite where the first is not. The output error may divide by a power of a that a'
    cancels (sqrt(a) (1 - a) from a loss sqrt(yhat) after a sigmoid: a' holds a factor a):
    as separate arrays, 0 * inf where a rounds to 0. Rule: keep the shorter form, with a'
    read from the tangent pass, unless it is not finite at a probe point where the
    substituted one is (a at 1e-300, ...)."""
    if act.in_a is None or not r_delta.has(_sym("Ad")):
        return r_delta
    a_dot = act.in_a.xreplace({A_SCALAR: _sym("A")}) * _sym("Zd")
    if not r_delta.has(_sym("Ad")):
        return r_delta
    merged = bounded.tidy(r_delta.xreplace({_sym("Ad"): a_dot}))
    linked = {_sym("Ad"): a_dot}
    if probe.no_worse(merged, r_delta, tiny=True, linked=linked) and not probe.no_worse(
        r_delta, merged, tiny=True, linked=linked
    ):
        return merged
    return r_delta
