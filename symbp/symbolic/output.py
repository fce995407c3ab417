"""The output error delta^(L) = dL/dz^(L), derived from the declared loss and activation.

Per sample, with the loss summed over output units k:
    dl/da_j           = diff(sum_k e(a_k, y_k), a_j)
    J_kj = da_k/dz_j  = diff(f(z_k), z_j)   (softmax: over all units of the sample)
    delta_j           = c * sum_k dl/da_k J_kj,   c = 1/n (mean) or 1 (sum)
and SymPy simplifies the result (sigmoid + bce gives c (a_j - y_j) on its own).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp
from sympy.concrete.delta import deltasummation

from symbp.ir.naming import Role, array
from symbp.ir.reductions import LogOneMinusSoftmax, LogSumExp, UnitSum
from symbp.symbolic import bounded
from symbp.symbolic.calculus import A as A_SCALAR
from symbp.symbolic.calculus import ActivationDerivation
from symbp.symbolic.equal import agree
from symbp.symbolic.indexed import A_OUT, N_UNITS, J, K, M, Y, Z, in_range, sum_out, sum_terms
from symbp.symbolic.logits import LogitsError, logits_error

YHAT_VAR = sp.Symbol("yhat", real=True)
Y_VAR = sp.Symbol("y", real=True)
SCALE = sp.Symbol("c", positive=True)  # 1/n for the mean reduction, 1 for the sum
_SOFTMAX_DENOM = sp.Symbol("S", positive=True)

# Array-form names: what the generated code holds for the output layer.
ARR_A, ARR_Y = array(Role.ACTIVATION), array(Role.TARGET)
ARR_Z = array(Role.PRE_ACTIVATION)


@dataclass(frozen=True)
class OutputDerivation:
    """Every step of the output error, as SymPy produced it."""

    unit_loss: sp.Expr  # e(yhat, y) per output unit
    dl_da: sp.Expr  # dl/da_j (indexed)
    jacobian: sp.Expr  # da_k/dz_j in terms of a (indexed)
    delta_raw: sp.Expr  # c * sum_k dl/da_k J_kj after doit
    delta: sp.Expr  # simplified (indexed)
    delta_array: sp.Expr  # delta in ARR_A, ARR_Y, ARR_Z (and UnitSum)
    assumption: str | None  # e.g. "sum_k y_k = 1" when used
    loss_array: sp.Expr  # per-element loss in ARR_A or ARR_Z, as the code computes it
    loss_from_logits: bool  # loss_array is in z (stable log form)
    logits: LogitsError | None = None  # softmax with log(1 - a): delta_array from the logits

    def __repr__(self) -> str:
        return f"OutputDerivation(delta = {self.delta_array}, loss = {self.loss_array})"


def _unit(expr: sp.Expr, index: sp.Symbol) -> sp.Expr:
    """e(yhat, y) at unit `index` of the sample."""
    return expr.subs({YHAT_VAR: A_OUT[index], Y_VAR: Y[index]}, simultaneous=True)


def softmax_jacobian() -> sp.Expr:
    """da_k/dz_j for a_k = exp(z_k) / sum_m exp(z_m), rewritten in a."""
    total = sp.Sum(sp.exp(Z[M]), (M, 1, N_UNITS))
    raw = sp.diff(sp.exp(Z[K]) / total, Z[J])
    raw = in_range(raw.replace(lambda e: isinstance(e, sp.Sum), lambda e: e.doit()))
    named = raw.subs(total, _SOFTMAX_DENOM)
    # exp(z_i) = a_i * S is the softmax definition read backwards.
    in_a = named.replace(
        lambda e: isinstance(e, sp.exp) and isinstance(e.args[0], sp.Indexed),
        lambda e: A_OUT[e.args[0].indices[0]] * _SOFTMAX_DENOM,
    )
    return sp.expand(sp.simplify(in_a))


@functools.lru_cache(maxsize=1)
def softmax_vjp_indexed() -> sp.Expr:
    """A hidden softmax layer's error term for unit j: delta_j = sum_k g_k da_k/dz_j, SymPy's
    sum of the softmax Jacobian against g = dL/da."""
    return sum_terms(softmax_jacobian() * sp.IndexedBase("g")[K], K, N_UNITS)


def softmax_vjp() -> sp.Expr:
    """softmax_vjp_indexed in whole-array form (G the incoming dL/da): over the units of each
    row, A G - A UnitSum(A G)."""
    return to_array(softmax_vjp_indexed(), extra={"g": array(Role.ERROR_IN)})


def elementwise_jacobian(act: ActivationDerivation) -> sp.Expr:
    """da_k/dz_j for a_k = f(z_k): SymPy's derivative f'(z_k) times a Kronecker delta."""
    x = sp.Symbol("x", real=True)
    # d f(z_k) / d z_j = f'(z_k) KroneckerDelta(j, k), with SymPy's f' from calculus.py.
    # Built as one product: SymPy's own diff(f(z_k), z_j) may fold the Kronecker delta
    # into each branch of a Piecewise f' (|x|, clipping), and the sum over k would not
    # collapse.
    delta_kj = sp.KroneckerDelta(J, K)
    if act.in_a is None:
        return delta_kj * act.simplified.subs(x, Z[K])
    # The form proven in calculus.py, in terms of a_k.
    return delta_kj * act.in_a.subs(A_SCALAR, A_OUT[K])


def _probability_target(expr: sp.Expr) -> sp.Expr:
    """Use sum_k y_k = 1 (a one-hot or probability target)."""
    return expr.replace(
        lambda e: (
            isinstance(e, sp.Sum) and isinstance(e.function, sp.Indexed) and e.function.base == Y
        ),
        lambda e: sp.S.One,
    )


def simplify_with_sums(expr: sp.Expr) -> sp.Expr:
    """Simplify, with sums over k merged by coefficient and kept opaque to simplify().

    Opaque sums stop simplify() from moving a_j inside a sum over k, which would
    make the whole-array form ambiguous.
    """
    if not expr.has(sp.Sum):
        return bounded.tidy(expr)
    groups: dict[sp.Expr, list[sp.Expr]] = {}
    rest = []
    for term in sp.Add.make_args(sp.expand(expr)):
        sums = [f for f in sp.Mul.make_args(term) if isinstance(f, sp.Sum)]
        if len(sums) != 1:
            rest.append(term)
            continue
        coeff = sp.Mul(*[f for f in sp.Mul.make_args(term) if f is not sums[0]])
        groups.setdefault(coeff, []).append(sums[0].function.subs(sums[0].limits[0][0], K))
    opaque = {}
    for n, (coeff, summands) in enumerate(groups.items()):
        name = sp.Symbol(f"_sum{n}")
        opaque[name] = sp.Sum(bounded.tidy(sp.Add(*summands)), (K, 1, N_UNITS))
        rest.append(coeff * name)
    return bounded.tidy(sp.Add(*rest)).xreplace(opaque)


def to_array(expr: sp.Expr, extra: dict[str, sp.Symbol] | None = None) -> sp.Expr:
    """Indexed per-unit form -> whole-array form (a_j -> A, sum_k h_k -> UnitSum(h))."""
    names = {"a": ARR_A, "y": ARR_Y, "z": ARR_Z, **(extra or {})}

    def unit_sum(e: sp.Sum) -> sp.Expr:
        return UnitSum(bounded.tidy(to_array(e.function, extra)))

    def log_sum_exp(e: sp.log) -> sp.Expr:
        return LogSumExp(ARR_Z)

    expr = expr.replace(
        lambda e: (
            isinstance(e, sp.log)
            and isinstance(e.args[0], sp.Sum)
            and e.args[0].function == sp.exp(Z[e.args[0].limits[0][0]])
        ),
        log_sum_exp,
    )
    expr = expr.replace(lambda e: isinstance(e, sp.Sum), unit_sum)
    return expr.replace(lambda e: isinstance(e, sp.Indexed), lambda e: names[str(e.base)])


def _safe_logs(expr: sp.Expr) -> bool:
    """True when every log is log(1 + exp(u)), the log of one (a softplus output), or a
    LogSumExp: each has a stable form."""
    return all(
        is_softplus_log(lg) or (isinstance(lg.args[0], sp.log) and is_softplus_log(lg.args[0]))
        for lg in expr.atoms(sp.log)
    )


def is_softplus_log(lg: sp.log) -> bool:
    """True when lg is log(1 + exp(u))."""
    terms = sp.Add.make_args(lg.args[0])
    return len(terms) == 2 and sp.S.One in terms and any(isinstance(t, sp.exp) for t in terms)


def _logits_loss(unit_loss: sp.Expr, f_of_z: sp.Expr) -> sp.Expr:
    """e(f(z), y) with its logs expanded, so log(f(z)) is written through z directly."""
    expr = unit_loss.subs(YHAT_VAR, f_of_z)
    expr = expr.replace(sp.log, lambda u: sp.log(sp.together(u)))
    return sp.expand_log(expr, force=True)


def _softmax_logits_loss(unit_loss: sp.Expr) -> sp.Expr | None:
    """e(a_k, y_k) for a = softmax(z) with log(a_k) = z_k - log sum_m exp(z_m) and
    log(1 - a_k) = LogOneMinusSoftmax(z)_k, or None if another log of a_k remains.

    a_k is positive and so is 1 - a_k (for two or more units): with those assumptions SymPy
    expands logs of products and powers of them exactly (no force).
    """
    p, q = sp.Symbol("p", positive=True), sp.Symbol("q", positive=True)
    expr = unit_loss.subs(YHAT_VAR, p).replace(sp.log, lambda u: sp.log(u.subs(1 - p, q)))
    expr = sp.expand_log(expr)
    log_a = ARR_Z - LogSumExp(ARR_Z)
    expr = expr.xreplace({sp.log(p): log_a, sp.log(q): LogOneMinusSoftmax(ARR_Z)})
    if any(lg.has(p, q) for lg in expr.atoms(sp.log)):
        return None
    a = sp.exp(log_a)
    return expr.xreplace({p: a, q: 1 - a, Y_VAR: ARR_Y})


def loss_value(unit_loss: sp.Expr, act: ActivationDerivation | None) -> tuple[sp.Expr, bool]:
    """The per-element loss the code evaluates, and whether it is taken from logits z."""
    in_a = unit_loss.subs({YHAT_VAR: ARR_A, Y_VAR: ARR_Y}, simultaneous=True)
    if not in_a.has(sp.log):
        return in_a, False
    if act is None:  # softmax: every log(a) and log(1 - a) has a form in the logits
        in_z = bounded.bounded(lambda: _softmax_logits_loss(unit_loss), None)
        if in_z is not None:
            return in_z, True
    if act is None:  # softmax: a_k = exp(z_k) / sum_m exp(z_m)
        fz = sp.exp(Z[K]) / sp.Sum(sp.exp(Z[M]), (M, 1, N_UNITS))
    else:
        fz = act.f.subs(sp.Symbol("x", real=True), Z[K])
    candidate = bounded.bounded(lambda: _logits_loss(unit_loss, fz), None)
    if candidate is None:
        return in_a, False
    in_z = to_array(candidate.subs(Y_VAR, Y[K]))
    if _safe_logs(in_z) and not in_z.has(ARR_A):
        return in_z, True
    return in_a, False


def derive_output(
    unit_loss: sp.Expr, act: ActivationDerivation | None, probability_target: bool
) -> OutputDerivation:
    """delta^(L) for output activation act (None means softmax) and loss e(yhat, y)."""
    total = sp.Sum(_unit(unit_loss, K), (K, 1, N_UNITS))
    dl_da = in_range(sp.diff(total, A_OUT[J]).doit())
    if act is None:
        jacobian = softmax_jacobian()
        delta_raw = SCALE * sum_terms(dl_da.subs(J, K) * jacobian, K, N_UNITS)
    else:
        jacobian = elementwise_jacobian(act)
        delta_raw = SCALE * sum_terms_unexpanded(dl_da.subs(J, K) * jacobian)
    assumption = None
    delta = delta_raw
    if probability_target and delta.has(sp.Sum):
        delta = _probability_target(delta)
        assumption = r"\sum_k y_k = 1"
    delta = simplify_with_sums(_branches(delta))
    loss_array, from_logits = loss_value(unit_loss, act)
    delta_array = to_array(delta)
    logits = None
    if act is None:
        arrays = (ARR_A, ARR_Y, ARR_Z, SCALE)
        logits = logits_error(unit_loss, (YHAT_VAR, Y_VAR), arrays, delta_array)
    return OutputDerivation(
        unit_loss=unit_loss,
        dl_da=dl_da,
        jacobian=jacobian,
        delta_raw=delta_raw,
        delta=delta,
        delta_array=delta_array if logits is None else logits.delta,
        assumption=assumption,
        loss_array=loss_array,
        loss_from_logits=from_logits,
        logits=logits,
    )


def _branches(delta: sp.Expr) -> sp.Expr:
    """A per-unit error term with the kinks of the loss (min, max, steps) as Piecewise
    branches and the product moved into them, so that each branch simplifies on its own:
    0.5 a**-0.5 * a (1 - a) becomes 0.5 sqrt(a) (1 - a), finite where a rounds to 0.
    Sums over units (softmax) are left alone: folding would pull branches out of them."""
    if delta.has(sp.Sum) or not delta.has(sp.Min, sp.Max, sp.Heaviside):
        return delta
    kinks = (sp.Min, sp.Max, sp.Heaviside)
    pieces = delta.replace(lambda e: isinstance(e, kinks), lambda e: e.rewrite(sp.Piecewise))
    folded = sp.piecewise_fold(pieces)
    return folded if agree(delta, folded) else delta


def sum_terms_unexpanded(term: sp.Expr) -> sp.Expr:
    """sum_k of one product containing KroneckerDelta(j, k): SymPy collapses it to k = j.

    The Kronecker factor is summed out with SymPy's delta summation; the rest of the
    product (which may be a Piecewise, as for a ReLU) is then evaluated at k = j.
    """
    deltas = [f for f in sp.Mul.make_args(term) if isinstance(f, sp.KroneckerDelta)]
    if len(deltas) != 1:
        return sum_out(term, K, N_UNITS)
    rest = sp.Mul(*[f for f in sp.Mul.make_args(term) if f is not deltas[0]])
    marker = sp.Dummy("h")
    collapsed = in_range(deltasummation(deltas[0] * marker, (K, 1, N_UNITS)))
    # collapsed is marker (the sum picked k = j); put the rest back at k = j.
    return collapsed.xreplace({marker: rest.xreplace({K: J})})
