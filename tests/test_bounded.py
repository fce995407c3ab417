"""The SymPy time budget (symbp.symbolic.bounded): it interrupts, nests, and leaves no timer behind.

No test here asserts on elapsed time: each long call is a loop with a large iteration
cap, so a budget that fails to interrupt it shows up as the loop's own result.
"""

from __future__ import annotations

import signal

from symbp.symbolic.bounded import BudgetExceeded, bounded

CAP = 10**9  # far more iterations than a budget of a fraction of a second allows


def _spin() -> str:
    for _ in range(CAP):
        pass
    return "ran to the end"


def test_a_long_call_is_interrupted_and_the_timer_is_gone() -> None:
    before = signal.getsignal(signal.SIGALRM)
    assert bounded(_spin, "fallback", 0.2) == "fallback"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before


def test_code_that_catches_exception_cannot_swallow_the_budget() -> None:
    def careless() -> str:
        try:
            return _spin()
        except Exception:  # noqa: BLE001 - what some library code does
            return "swallowed"

    assert bounded(careless, "fallback", 0.2) == "fallback"


def test_an_alarm_swallowed_once_fires_again() -> None:
    def stubborn() -> str:
        try:
            _spin()
        except BudgetExceeded:  # dropped, as in a __del__ or a GC callback
            pass
        return _spin()

    assert bounded(stubborn, "fallback", 0.2) == "fallback"


def test_an_inner_budget_keeps_the_outer_one() -> None:
    def outer() -> str:
        assert bounded(lambda: "quick", "inner fallback", 30.0) == "quick"
        return _spin()  # only the outer budget can stop this

    assert bounded(outer, "outer fallback", 0.3) == "outer fallback"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_an_inner_budget_never_outlasts_the_outer_one() -> None:
    def outer() -> str:
        return bounded(_spin, "inner fallback", 30.0)

    assert bounded(outer, "outer fallback", 0.3) in ("inner fallback", "outer fallback")
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
