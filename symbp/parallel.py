"""Independent work spread over the machine's cores, with results in input order.

Deriving the distinct activations of a network is independent work of seconds each (SymPy's
simplify and solve under their budgets); on two cores it takes about half the time. Each
task runs in a forked worker process, so SymPy's caches and symbp's time budgets (SIGALRM in
each worker's main thread) work as in one process; results come back pickled, in the order
of the inputs, so the output does not depend on which worker finished first.

SYMBP_WORKERS=1 runs everything in this process (the default is one worker per core).
Forking a process whose other threads hold locks can deadlock the child (JAX warns so), so
the work also stays in this process once the process runs more threads than it did when
symbp was imported (NumPy's BLAS threads, started at import and safe to fork, are counted
in that baseline): a caller that started JAX or a thread pool gets the same output, serially.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import numpy  # noqa: F401 - its BLAS threads start at import: the baseline counts them

T = TypeVar("T")
R = TypeVar("R")


def _threads() -> int:
    """The process's threads, as the OS counts them (native threads included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


_BASELINE = _threads()


def workers() -> int:
    """How many processes to use: SYMBP_WORKERS, else the cores this process may run on."""
    wanted = os.environ.get("SYMBP_WORKERS", "")
    if wanted.isdigit() and int(wanted) > 0:
        return int(wanted)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def ordered_map(call: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """[call(item) for item in items], in worker processes when that can help: two or more
    items, more than one worker, and a platform that forks (no re-import of the caller)."""
    count = min(workers(), len(items))
    if count < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [call(item) for item in items]
    if _threads() > _BASELINE:  # another library's threads: forking could deadlock
        return [call(item) for item in items]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        return list(pool.map(call, items))
