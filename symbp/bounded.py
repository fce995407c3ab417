"""Run a SymPy call with a wall-clock budget, falling back when it runs out.

simplify() and solve() can take unbounded time on hostile expressions; symbp
then keeps the unsimplified (still correct) form instead of hanging.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import sympy as sp

T = TypeVar("T")

SIMPLIFY_SECONDS = 2.0


class BudgetExceeded(Exception):
    """Raised inside a bounded call when its time budget is spent."""


def _on_alarm(signum: int, frame: object) -> None:
    raise BudgetExceeded()


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise BudgetExceeded in the block after `seconds` (main thread only; elsewhere unbounded)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def bounded(call: Callable[[], T], fallback: T, seconds: float = SIMPLIFY_SECONDS) -> T:
    """The value of call(), or fallback if it exceeds its budget or SymPy gives up."""
    try:
        with time_budget(seconds):
            return call()
    except (BudgetExceeded, RecursionError, NotImplementedError, TypeError, ValueError):
        return fallback


def simplify(expr: sp.Expr, seconds: float = SIMPLIFY_SECONDS) -> sp.Expr:
    """sympy.simplify within a time budget; the input itself when the budget runs out."""
    return bounded(lambda: sp.simplify(expr), expr, seconds)


def _function_kinds(expr: sp.Expr) -> set[type]:
    return {type(f) for f in expr.atoms(sp.Function)}


def tidy(expr: sp.Expr, seconds: float = SIMPLIFY_SECONDS) -> sp.Expr:
    """simplify(), unless it brings in functions the input lacked (cosh for exp, ...).

    New functions usually mean a form with worse floating-point behaviour, such as
    1/cosh(z/2)**2, which overflows where exp(-z)/(1 + exp(-z))**2 does not.
    """
    simpler = simplify(expr, seconds)
    return simpler if _function_kinds(simpler) <= _function_kinds(expr) else expr


def is_zero(expr: sp.Expr, seconds: float = SIMPLIFY_SECONDS) -> bool:
    """True only when SymPy proves expr == 0 within the budget."""
    return bool(bounded(lambda: sp.simplify(expr) == 0, False, seconds))
