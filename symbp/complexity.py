"""Operation counts of the generated code, per layer: parameters and multiply-adds.

Counts are per sample and cover the matrix products only (elementwise work is O(units),
not O(weights)). Backward: one product for dW^(l) and, except in layer 1, one to send
delta^(l) back through (W^(l))^T.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerCost:
    """Costs of one dense layer, per sample."""

    index: int
    params: int
    forward: int  # multiply-adds of z = W a + b
    backward: int  # multiply-adds of dW (and of W^T delta when index > 1)


def layer_costs(sizes: tuple[int, ...]) -> list[LayerCost]:
    """Per-layer costs for layer sizes (input first)."""
    costs = []
    for l in range(1, len(sizes)):
        weights = sizes[l] * sizes[l - 1]
        backward = weights * (2 if l > 1 else 1)
        costs.append(LayerCost(l, weights + sizes[l], weights, backward))
    return costs


def backward_forward_ratio(sizes: tuple[int, ...]) -> float:
    """Total backward multiply-adds over forward multiply-adds (at most 2)."""
    costs = layer_costs(sizes)
    return sum(c.backward for c in costs) / sum(c.forward for c in costs)
