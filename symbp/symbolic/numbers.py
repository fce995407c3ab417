"""Numbers as a person writes them, for every printer (NumPy code and LaTeX)."""

from __future__ import annotations

from decimal import Decimal

import sympy as sp


def decimal_text(r: sp.Rational) -> str | None:
    """p/q as the exact decimal a user writes (0.044715 for 8943/200000) when q is a
    multiple of 10 with no prime factors but 2 and 5; None otherwise (1/2, 1/3, 7)."""
    q = r.q
    if q % 10:
        return None
    while q % 2 == 0:
        q //= 2
    while q % 5 == 0:
        q //= 5
    if q != 1:
        return None
    text = format(Decimal(r.p) / Decimal(r.q), "f")
    return text if Decimal(text) * r.q == r.p else None
