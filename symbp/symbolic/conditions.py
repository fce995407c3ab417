"""Piecewise conditions as a document shows them: the tightest checked form (never what the
code evaluates). symbp.documents.shown re-exports condition_shown; the LaTeX printer calls it
on every condition it prints."""

from __future__ import annotations

import sympy as sp

from symbp.symbolic import bounded

SECONDS = 1.0  # per condition

_CONDITIONS: dict[sp.Basic, sp.Basic] = {}


def condition_shown(cond: sp.Basic) -> sp.Basic:
    """A Piecewise condition in its tightest form: a conjunction or disjunction of relations in
    one real variable written as the bounds of the set it holds on (z >= 1 and z > -1 is
    z >= 1; z >= 1 or z > 2 is z >= 1; z > -1 and z < 1 stays as it is), returned only when it
    holds on the same set of reals (SymPy's as_set); any other condition as it is. For what is
    displayed only: the code evaluates the conditions SymPy gave."""
    if cond not in _CONDITIONS:
        if len(_CONDITIONS) >= 4096:
            _CONDITIONS.clear()
        _CONDITIONS[cond] = bounded.bounded(lambda: _tightest(cond), cond, SECONDS)
    return _CONDITIONS[cond]


def _tightest(cond: sp.Basic) -> sp.Basic:
    if not isinstance(cond, (sp.And, sp.Or, sp.Not)):
        return cond
    variables = cond.free_symbols
    if len(variables) != 1:  # the parts in each variable on their own (x > 0 and x > 1 and y < 2)
        if isinstance(cond, sp.Not):
            return cond
        groups: dict[frozenset[sp.Basic], list[sp.Basic]] = {}
        for part in cond.args:
            groups.setdefault(frozenset(part.free_symbols), []).append(part)
        return cond.func(*[condition_shown(cond.func(*parts)) for parts in groups.values()])
    x = next(iter(variables))
    if not x.is_real:
        return cond
    where = cond.as_set()
    tight = _relations(x, where)
    if tight is None or tight.as_set() != where:
        return cond
    return tight if sp.count_ops(tight) <= sp.count_ops(cond) else cond


def _relations(x: sp.Symbol, where: sp.Set) -> sp.Basic | None:
    """x in `where` (an interval, a union of intervals, all or none of the reals) as bounds on
    x; None for another set."""
    if where == sp.S.Reals:
        return sp.true
    if where is sp.S.EmptySet:
        return sp.false
    if isinstance(where, sp.Union):
        parts = [_relations(x, part) for part in where.args]
        return None if any(p is None for p in parts) else sp.Or(*parts)
    if not isinstance(where, sp.Interval):
        return None
    bounds = []
    if where.start != -sp.oo:
        bounds.append((sp.Gt if where.left_open else sp.Ge)(x, where.start))
    if where.end != sp.oo:
        bounds.append((sp.Lt if where.right_open else sp.Le)(x, where.end))
    return sp.And(*bounds)
