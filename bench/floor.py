"""The GEMM floor: only the matrix products backpropagation needs, into preallocated arrays.

Per layer l: one forward product (Z_l from A_{l-1}), one product for dW_l, and one to
carry delta back to layer l-1 (not for the first layer). No elementwise work, no bias,
no allocation: no correct implementation can be faster with the same BLAS.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import numpy as np

from bench.nets import Net


def _buffers(net: Net, rng: np.random.Generator) -> tuple[list, list, list]:
    """Activations (first: X), deltas (last: random) and weight gradients, all float32."""
    n = net.batch
    shape = (lambda k: (n, k)) if net.row else (lambda k: (k, n))
    acts = [rng.standard_normal(shape(net.sizes[0]), dtype=np.float32)]
    acts += [np.empty(shape(k), dtype=np.float32) for k in net.sizes[1:]]
    deltas = [rng.standard_normal(shape(k), dtype=np.float32) for k in net.sizes[1:]]
    dws = [np.empty((k, j), dtype=np.float32) for j, k in pairwise(net.sizes)]
    return acts, deltas, dws


def gemm_floor(net: Net, weights: list[np.ndarray], seed: int = 0) -> Callable[[], None]:
    """A step that runs the 3L - 1 products of one gradient evaluation."""
    acts, deltas, dws = _buffers(net, np.random.default_rng(seed))
    depth = net.depth
    if net.row:

        def step() -> None:
            for i in range(depth):
                np.matmul(acts[i], weights[i].T, out=acts[i + 1])
            for i in reversed(range(depth)):
                np.matmul(deltas[i].T, acts[i], out=dws[i])
                if i:
                    np.matmul(deltas[i], weights[i], out=deltas[i - 1])

    else:

        def step() -> None:
            for i in range(depth):
                np.matmul(weights[i], acts[i], out=acts[i + 1])
            for i in reversed(range(depth)):
                np.matmul(deltas[i], acts[i].T, out=dws[i])
                if i:
                    np.matmul(weights[i].T, deltas[i], out=deltas[i - 1])

    return step
