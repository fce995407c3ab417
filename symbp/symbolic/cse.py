"""Common subexpressions, named where a caller finds them worth a name (sympy.cse).

The code IR names those that are arrays (symbp.backends.numpy.emit: one statement each); the
documents name the wide ones a long formula repeats (symbp.documents.document: "where u_1 = ...").
Both put the others back in place, so that what is left reads as the expression did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sympy as sp

Keep = Callable[[sp.Symbol, Any, Callable[[], Any]], bool]


def common_subexpressions(
    expr: Any, symbols: Iterator[sp.Symbol], keep: Keep
) -> tuple[Any, list[tuple[sp.Symbol, Any]]]:
    """(expr reduced, the kept (name, value) pairs in order). sympy.cse proposes the pairs;
    keep(name, value, rest) decides each, value written with the names kept before it and
    rest() the reduced expression with the pairs refused so far put back; a refused pair is
    put back in place."""
    pairs, (reduced,) = sp.cse(expr, symbols=symbols, order="none")
    kept: list[tuple[sp.Symbol, Any]] = []
    back: dict[sp.Basic, Any] = {}
    for name, value in pairs:
        value = value.xreplace(back)
        if keep(name, value, lambda: reduced.xreplace(back)):
            kept.append((name, value))
        else:
            back[name] = value
    return reduced.xreplace(back), kept
