"""Peak memory of one call, as NumPy reports its allocations to tracemalloc."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np


def peak_bytes(call: Callable[[], object]) -> int:
    """Peak bytes traced during one call, above what was allocated before it.

    The call runs once before tracing starts, so one-off caches are not counted;
    the result (e.g. the gradients it returns) counts, since it is alive at the end.
    """
    call()
    tracemalloc.start()
    try:
        call()  # warm under tracing as well
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = call()
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return peak - base


def activation_bytes(sizes: tuple[int, ...], batch: int, itemsize: int = 4) -> int:
    """Bytes of the stored activations A_1 .. A_L (A_0 = X is the caller's)."""
    return batch * sum(sizes[1:]) * itemsize


def nbytes(arrays: dict[str, np.ndarray]) -> int:
    """Total bytes of a dict of arrays."""
    return sum(a.nbytes for a in arrays.values())


def page_faults(call: Callable[[], object], calls: int = 20) -> float | None:
    """Minor page faults per call (fresh pages the allocator maps in), None off Unix."""
    try:
        import resource
    except ImportError:
        return None
    call()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        call()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    return (after - before) / calls
