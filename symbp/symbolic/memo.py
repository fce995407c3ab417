"""Memoisation of symbolic transformations up to a renaming of the symbols.

Layer 7's error term is layer 3's with A3, Z3, G3 renamed. A transformation that does not
look at names (a rewrite, a simplification) computed once on a canonical form, whose symbols
are numbered in the order of their names, serves every layer: the result is renamed back.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

_CACHE: dict[tuple[Callable, sp.Basic], sp.Basic] = {}
_LIMIT = 4096


def _canonical(expr: sp.Basic) -> tuple[sp.Basic, dict[sp.Basic, sp.Basic]]:
    """expr with its symbols renamed _c00000, _c00001, ... (assumptions kept) and its matrix
    symbols _m..., shapes kept, and the way back."""
    named = [
        node for node in expr.atoms(sp.Symbol, sp.MatrixSymbol) if not isinstance(node, sp.Dummy)
    ]
    # Numbered in the order of the original names, so that SymPy orders the terms of the
    # result as it would have ordered the originals ('A0' < 'W1' < 'bd1' as 'A3' < 'W4' < 'bd4').
    named.sort(key=lambda node: str(node.name))
    order: dict[sp.Basic, sp.Basic] = {}
    for rank, node in enumerate(named):
        if isinstance(node, sp.MatrixSymbol):
            order[node] = sp.MatrixSymbol(f"_m{rank:05d}", *node.shape)
        else:
            order[node] = sp.Symbol(f"_c{rank:05d}", **node.assumptions0)
    canonical = expr.xreplace(order)
    return canonical, {new: old for old, new in order.items()}


def renamed(transform: Callable[[sp.Basic], sp.Basic], expr: sp.Basic) -> sp.Basic:
    """transform(expr), computed once per expression shape; transform must ignore names."""
    canonical, back = _canonical(expr)
    key = (transform, canonical)
    if key not in _CACHE:
        if len(_CACHE) >= _LIMIT:
            _CACHE.clear()
        _CACHE[key] = transform(canonical)
    return _CACHE[key].xreplace(back)


def _doit(expr: sp.Basic) -> sp.Basic:
    return expr.doit()


def doit(expr: sp.Basic) -> sp.Basic:
    """expr.doit(), once per expression shape (matrix products of a deep network's layers)."""
    return renamed(_doit, expr)
