"""Derivatives of elementwise activations, rewritten in terms of the stored output a.

For f, SymPy gives f'(x) = diff(f, x). symbp then looks for g with g(f(x)) = f'(x)
so that the backward pass needs only a = f(z): it inverts a = f(x) with
sympy.solve (piece by piece for piecewise f) and accepts a candidate g only when
SymPy simplifies g(f(x)) - f'(x) to 0 on every piece. Otherwise f' stays in z.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import sympy as sp

from symbp.symbolic import bounded, probe
from symbp.symbolic.activations import X
from symbp.symbolic.equal import agree
from symbp.symbolic.stable import through_sigmoid

A = sp.Symbol("a", real=True)
_T = sp.Symbol("t", positive=True)


@dataclass(frozen=True)
class ActivationDerivation:
    """f, its SymPy derivative, and the form the generated code uses."""

    name: str
    f: sp.Expr  # f(x)
    raw: sp.Expr  # sympy.diff(f, x) as SymPy returns it
    simplified: sp.Expr  # the simplified derivative, in x
    in_a: sp.Expr | None  # the derivative as a function of a = f(x), when established
    method: str  # how: "constant", "inverse", "piecewise inverse", or "in z"
    kept: sp.Expr | None = None  # an intermediate of f(x) that f' reads again (kept_intermediate)
    # d f'/d a and d f'/d x of backward_form, each simplified alone (the R-operator's f'')
    second: tuple[tuple[sp.Symbol, sp.Expr], ...] = ()

    @property
    def passes_through(self) -> bool:
        """f' = 1 identically (no activation): nothing to derive or document."""
        return self.raw == 1

    @property
    def needs(self) -> str:
        """What the backward pass must store: 'none', 'a' or 'z'."""
        if self.in_a is None:
            return "z"
        return "a" if self.in_a.has(A) else "none"

    @property
    def backward_form(self) -> sp.Expr:
        """f' as the code computes it: in a when possible, else in x (= z)."""
        return self.simplified if self.in_a is None else self.in_a

    def __repr__(self) -> str:
        return f"ActivationDerivation({self.name}: f'={self.backward_form}, stores {self.needs})"


def derive_activation(name: str, f: sp.Expr) -> ActivationDerivation:
    """Differentiate f with SymPy, try to express f' through a = f(x), and take f''."""
    act = _first(name, f)
    return dataclasses.replace(act, second=second_partials(act.backward_form))


# Second derivatives larger than this are left as SymPy's product rule gives them: measured on
# issue 19's sixteen activations, simplify shortened none of those above 32 operations and
# spent 0.7-2 s on each; below it, it halves some (x/(1 + |x|) + sinh x: 21 -> 11).
SECOND_ORDER_OPS = 32


def second_partials(fprime: sp.Expr) -> tuple[tuple[sp.Symbol, sp.Expr], ...]:
    """(v, d f'/d v) for v in (a, x) that f' reads, each simplified on its own."""
    return tuple(
        (v, bounded.tidy(sp.diff(fprime, v), max_ops=SECOND_ORDER_OPS))
        for v in (A, X)
        if fprime.has(v)
    )


def _first(name: str, f: sp.Expr) -> ActivationDerivation:
    if f.has(sp.Max, sp.Min, sp.Abs, sp.Heaviside):
        # Kinks become explicit pieces, so each piece is differentiated on its own.
        f = sp.piecewise_fold(f.rewrite(sp.Piecewise))
    raw = sp.diff(f, X)
    simplified = bounded.simplify(raw)
    if not simplified.has(X):
        return ActivationDerivation(name, f, raw, simplified, simplified, "constant")
    if isinstance(f, sp.Piecewise):
        try:
            in_a = _piecewise_in_a(f, raw)
        except TypeError:  # a comparison SymPy cannot decide (a non-real breakpoint value)
            in_a = None
        method = "piecewise inverse"
    else:
        in_a = _smooth_in_a(f, raw, simplified)
        method = "inverse"
    if in_a is None:
        # Not expressible in a: the code evaluates the derivative as SymPy gave it, in z.
        return ActivationDerivation(name, f, raw, raw, None, "in z", kept_intermediate(f, raw))
    return ActivationDerivation(name, f, raw, simplified, in_a, method)


def _inverse_candidates(f: sp.Expr, var: sp.Symbol) -> Iterator[sp.Expr]:
    """Solutions var = h(a) of a = f(var), within the time budget: solveset's, then solve's
    (asked only if none of solveset's is used: solve costs as much again)."""
    found = bounded.bounded(lambda: sp.solveset(sp.Eq(A, f), var, sp.S.Reals), sp.S.EmptySet)
    if isinstance(found, sp.Intersection):
        found = next((s for s in found.args if isinstance(s, sp.FiniteSet)), sp.S.EmptySet)
    seen: set[sp.Expr] = set()
    for batch in (
        lambda: list(found) if isinstance(found, sp.FiniteSet) else [],
        lambda: bounded.bounded(lambda: sp.solve(sp.Eq(A, f), var), []),
    ):
        for s in batch():
            if s not in seen and not s.has(sp.LambertW, sp.I, sp.Piecewise):
                seen.add(s)
                yield s


def _simplest_in_a(expr: sp.Expr) -> sp.Expr:
    """The shorter of simplify(expr) and simplify(expr rewritten in exp)."""
    forms = [bounded.simplify(expr), bounded.simplify(expr.rewrite(sp.exp))]
    return min(forms, key=lambda e: (sp.count_ops(e), sp.srepr(e)))


def _rewrite_through(f: sp.Expr, d: sp.Expr, var: sp.Symbol) -> sp.Expr | None:
    """g(a) with g(f(var)) == d proven by simplification, or None."""
    for inverse in _inverse_candidates(f, var):
        g = _simplest_in_a(d.subs(var, inverse))
        if g.has(var) or g.has(sp.I) or not _kinds(g) <= _kinds(f) | _kinds(d):
            # A function new to f and f' (erfinv for erf, say): slower, maybe not printable.
            continue
        # The numeric check first: it refuses a wrong candidate in milliseconds, where the
        # proof would spend its whole time budget failing.
        if _agrees(g, f, d, var) and bounded.is_zero(g.subs(A, f) - d):
            return g
    return None


def _kinds(expr: sp.Expr) -> set[type]:
    return {type(e) for e in expr.atoms(sp.Function)}


def _agrees(g: sp.Expr, f: sp.Expr, d: sp.Expr, var: sp.Symbol) -> bool:
    """Numeric confirmation of g(f) == d at a few points of var's domain."""
    points = [sp.Rational(p, 7) for p in (1, 5, 17, 40)]
    if not var.is_positive:
        points += [-p for p in points]
    for p in points:
        lhs = g.subs(A, f.subs(var, p)).evalf(30)
        rhs = d.subs(var, p).evalf(30)
        if not (lhs.is_number and rhs.is_number) or abs(lhs - rhs) > 1e-20 * (1 + abs(rhs)):
            return False
    return True


def _smooth_in_a(f: sp.Expr, raw: sp.Expr, simplified: sp.Expr) -> sp.Expr | None:
    """Rewrite f' through a = f(x) for a strictly increasing, smooth f."""
    if probe.decreases_somewhere(raw, X, -np.inf, np.inf):
        return None
    increasing = bounded.bounded(lambda: sp.is_strictly_increasing(f, sp.S.Reals), False)
    if not increasing:
        return None
    for d in dict.fromkeys((raw, simplified)):
        g = _rewrite_through(f, d, X)
        if g is not None:
            return g
    return None


def _breakpoints(f: sp.Piecewise) -> list[sp.Expr] | None:
    """The sorted numeric thresholds of f's conditions, or None if they are not simple."""
    points: set[sp.Expr] = set()
    for _, cond in f.args:
        for rel in cond.atoms(sp.core.relational.Relational):
            other = rel.rhs if rel.lhs == X else rel.lhs if rel.rhs == X else None
            if other is None or not other.is_number:
                return None
            points.add(sp.nsimplify(other))
    return sorted(points, key=lambda p: float(p))


def _piecewise_in_a(f: sp.Piecewise, d: sp.Expr) -> sp.Expr | None:
    """Rewrite d through a = f(x), interval by interval between f's breakpoints."""
    cuts = _breakpoints(f)
    if cuts is None or not cuts:
        return None
    lows = [sp.S.NegativeInfinity, *cuts]
    highs = [*cuts, sp.S.Infinity]
    branches: list[tuple[sp.Expr, sp.Expr]] = []
    for k, (lo, hi) in enumerate(zip(lows, highs, strict=True)):
        g = _interval_in_a(f, d, lo, hi)
        if g is None:
            return None
        if k > 0:
            # At the breakpoint a = f(lo) falls to the branch below: it must match f'(lo).
            if not bounded.is_zero(branches[-1][0].subs(A, f.subs(X, lo)) - d.subs(X, lo)):
                return None
        branches.append((g, lo))
    pieces = [(g, A > f.subs(X, lo)) for g, lo in reversed(branches[1:])]
    return sp.Piecewise(*pieces, (branches[0][0], True))


def _interval_in_a(f: sp.Expr, d: sp.Expr, lo: sp.Expr, hi: sp.Expr) -> sp.Expr | None:
    """g on the open interval (lo, hi), where f is one smooth piece."""
    var = lo + _T if lo.is_finite else hi - _T
    piece = sp.piecewise_fold(f.subs(X, var))
    dpiece = sp.piecewise_fold(d.subs(X, var))
    if piece.has(sp.Piecewise) or dpiece.has(sp.Piecewise):
        return None  # an interval that is not one piece: not handled
    interval = sp.Interval.open(lo, hi)
    fx = piece.subs(_T, X - lo if lo.is_finite else hi - X)
    dx = dpiece.subs(_T, X - lo if lo.is_finite else hi - X)
    if probe.decreases_somewhere(sp.diff(fx, X), X, float(lo), float(hi)):
        return None
    if not bounded.bounded(lambda: sp.is_increasing(fx, interval), False):
        return None
    if not dx.has(X):
        return dx  # a constant slope needs nothing stored on this interval
    if not bounded.bounded(lambda: sp.is_strictly_increasing(fx, interval), False):
        return None
    return _rewrite_through(piece, dpiece, _T)


# --- intermediates kept from the forward pass ----------------------------------------------
#
# Cost rule. The forward pass evaluates f(z); when f' is read in z it often evaluates again a
# function call that f made (GELU's erf(z/sqrt 2), mish's tanh(softplus(z)), swish's sigmoid).
# Keeping that value costs one write in the forward pass and one read in the backward pass
# (about two passes over an array of the layer's size, plus that array's memory in the cache);
# recomputing it costs its evaluation. Measured on a 256x1024 float32 array (a multiply
# 0.025 ms = one pass): exp 4.4 passes, tanh 3.8, the sigmoid helper 8.7, softplus 20, erf 140.
# So an intermediate is kept when its estimated cost exceeds KEEP_PASSES: any call of an
# elementary function; arithmetic alone is recomputed.

KEEP_PASSES = 2
_CALL_PASSES = {sp.erf: 140, sp.erfc: 140}
_CALL_DEFAULT = 4  # exp, log, tanh, sin, ...: 4 to 5 passes each


def passes(expr: sp.Expr) -> float:
    """Estimated cost of evaluating expr elementwise, in passes over the array (see above)."""
    cost = 0.0
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Piecewise):
            cost += 2 * len(node.args)
        elif isinstance(node, sp.Function):
            cost += _CALL_PASSES.get(type(node), _CALL_DEFAULT)
        elif isinstance(node, (sp.Add, sp.Mul)):
            cost += len(node.args) - 1
        elif isinstance(node, sp.Pow):
            cost += 1 if node.exp.is_Integer and abs(node.exp) <= 2 else _CALL_DEFAULT
    return cost


def _is_call(u: sp.Expr) -> bool:
    """A function call, or a sigmoid 1/(1 + exp(-v)) (which the printer evaluates as one)."""
    if isinstance(u, sp.Function):
        return not isinstance(u, sp.Piecewise)
    return isinstance(u, sp.Pow) and u.exp == -1 and u.base.has(sp.exp)


def kept_intermediate(f: sp.Expr, derivative: sp.Expr) -> sp.Expr | None:
    """The call of f(x) to keep from the forward pass for f'(x), under the cost rule above.

    Candidates are the calls of f, in the form the printer evaluates (through_sigmoid), that
    f' makes again, whose cost is over KEEP_PASSES, and that are finite wherever f is (a kept
    cosh(x) would overflow where log(cosh(x)) does not). Of these, the outermost; of several,
    the costliest."""
    f, derivative = through_sigmoid(f), through_sigmoid(derivative)
    t = sp.Dummy("t", real=True)
    found = []
    for u in sp.preorder_traversal(f):
        if u == f or not _is_call(u) or not u.has(X) or passes(u) <= KEEP_PASSES:
            continue
        if derivative.subs(u, t).has(t) and probe.no_worse(u, f):
            found.append(u)
    outer = [u for u in found if not any(o != u and o.has(u) for o in found)]
    if not outer:
        return None
    return max(outer, key=lambda u: (passes(u), sp.default_sort_key(u)))


def reading_kept(expr: sp.Expr, value: sp.Expr, t: sp.Symbol) -> sp.Expr:
    """expr in the form the printer evaluates (through_sigmoid), reading t = value where it
    would evaluate value again; that form is used only when it equals expr and is finite
    wherever expr's is, else expr's form is returned unchanged."""
    before = through_sigmoid(expr)
    after = before.subs(value, t)
    if after.has(t) and agree(before, after.xreplace({t: value})):
        if probe.no_worse(after, before, linked={t: value}):
            return after
    return before
