"""Run a call with a wall-clock budget, falling back when it runs out.

simplify() and solve() can take unbounded time on hostile expressions; symbp
then keeps the unsimplified (still correct) form instead of hanging. No SymPy here: reading
a file's expressions (symbp.frontend.expr) runs under the same budgets.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

SIMPLIFY_SECONDS = 2.0


class BudgetExceeded(BaseException):
    """Raised inside a bounded call when its time budget is spent.

    A BaseException, so that code catching Exception (SymPy's or ours) cannot swallow it.
    """


# Deadlines (time.monotonic) of the budgets open now, innermost last.
_DEADLINES: list[float] = []
# After the first alarm, the timer fires again at this interval until the block ends:
# an alarm that lands where Python drops exceptions (a __del__, a GC callback) is not lost.
_REPEAT = 0.1


def _on_alarm(signum: int, frame: object) -> None:
    if not _DEADLINES:  # a late alarm after every budget closed: stop the timer
        signal.setitimer(signal.ITIMER_REAL, 0)
        return
    raise BudgetExceeded()


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise BudgetExceeded in the block after `seconds` (main thread only; elsewhere unbounded).

    Budgets nest: an inner one never extends the outer one, and the outer one's timer
    runs again when the inner block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    deadline = time.monotonic() + seconds
    if _DEADLINES:
        deadline = min(deadline, _DEADLINES[-1])
    depth = len(_DEADLINES)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    _DEADLINES.append(deadline)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-4), _REPEAT)
    try:
        yield
    finally:
        _close(depth, previous)


def _close(depth: int, previous: Any) -> None:
    """End the budgets from `depth` on; an alarm arriving meanwhile only makes this run again."""
    while True:
        try:
            del _DEADLINES[depth:]
            if _DEADLINES:
                left = max(_DEADLINES[-1] - time.monotonic(), 1e-4)
                signal.setitimer(signal.ITIMER_REAL, left, _REPEAT)
            else:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            return
        except BudgetExceeded:
            continue


def bounded(call: Callable[[], T], fallback: T, seconds: float = SIMPLIFY_SECONDS) -> T:
    """The value of call(), or fallback if it exceeds its budget or SymPy gives up."""
    try:
        with time_budget(seconds):
            return call()
    except (BudgetExceeded, RecursionError, NotImplementedError, TypeError, ValueError):
        return fallback
