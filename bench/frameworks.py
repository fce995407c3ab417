"""Optional contenders: PyTorch eager and JAX jit(value_and_grad), both in row layout.

Each builder returns None when its framework cannot be imported. A contender's step runs
forward, loss and backward once; its check() returns the loss and the gradients as NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.nets import Net

Params = dict[str, np.ndarray]


@dataclass
class Framework:
    """A framework contender: a timed step and a one-off evaluation for the correctness guard."""

    name: str
    version: str
    step: Callable[[], None]
    check: Callable[[], tuple[float, Params]]


def _torch_activation(torch: Any, name: str) -> Callable:
    table = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "identity": lambda t: t,
    }
    return table[name]


def _torch_loss(torch: Any, net: Net, z: Any, y: Any) -> Any:
    """The mean loss from the output layer's pre-activation z."""
    F = torch.nn.functional
    last = net.activations[-1]
    if net.loss == "cross_entropy" and last == "softmax":
        return -(y * F.log_softmax(z, dim=1)).sum() / net.batch
    if net.loss == "bce" and last == "sigmoid":
        return F.binary_cross_entropy_with_logits(z, y, reduction="sum") / net.batch
    if net.loss == "mse":
        out = _torch_activation(torch, last)(z)
        return 0.5 * ((out - y) ** 2).sum() / net.batch
    raise ValueError(f"torch: {net.loss} after {last} is not supported")


def torch_contender(net: Net, params: Params, X: np.ndarray, Y: np.ndarray) -> Framework | None:
    """PyTorch eager with torch.nn.functional; params and data in row layout."""
    try:
        import torch
    except ImportError:
        return None
    F = torch.nn.functional
    tp = {k: torch.tensor(v).requires_grad_() for k, v in params.items()}
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    acts = [_torch_activation(torch, a) for a in net.activations[:-1]]

    def run() -> Any:
        for p in tp.values():
            p.grad = None
        h = x
        for i, act in enumerate(acts, start=1):
            h = act(F.linear(h, tp[f"W{i}"], tp[f"b{i}"]))
        L = net.depth
        value = _torch_loss(torch, net, F.linear(h, tp[f"W{L}"], tp[f"b{L}"]), y)
        value.backward()
        return value

    def step() -> None:
        run()

    def check() -> tuple[float, Params]:
        value = run()
        return float(value.detach()), {k: p.grad.numpy().copy() for k, p in tp.items()}

    return Framework("PyTorch eager", torch.__version__, step, check)


def _jax_loss_fn(jax: Any, net: Net) -> Callable:
    """loss(params, x, y) in jax.numpy, row layout."""
    jnp = jax.numpy
    table = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}
    table["identity"] = lambda t: t

    def loss(p: dict, x: Any, y: Any) -> Any:
        h = x
        for i, name in enumerate(net.activations[:-1], start=1):
            h = table[name](h @ p[f"W{i}"].T + p[f"b{i}"])
        L = net.depth
        z = h @ p[f"W{L}"].T + p[f"b{L}"]
        last = net.activations[-1]
        if net.loss == "cross_entropy" and last == "softmax":
            return -(y * jax.nn.log_softmax(z, axis=1)).sum() / net.batch
        if net.loss == "bce" and last == "sigmoid":
            return -(y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z)).sum() / net.batch
        if net.loss == "mse":
            return 0.5 * ((table[last](z) - y) ** 2).sum() / net.batch
        raise ValueError(f"jax: {net.loss} after {last} is not supported")

    return loss


def jax_contender(net: Net, params: Params, X: np.ndarray, Y: np.ndarray) -> Framework | None:
    """jax.jit(jax.value_and_grad(loss)), waited for with block_until_ready."""
    try:
        import jax
    except ImportError:
        return None
    value_and_grad = jax.jit(jax.value_and_grad(_jax_loss_fn(jax, net)))
    jp = {k: jax.device_put(v) for k, v in params.items()}
    x, y = jax.device_put(X), jax.device_put(Y)

    def step() -> None:
        jax.block_until_ready(value_and_grad(jp, x, y))

    def check() -> tuple[float, Params]:
        value, grads = jax.block_until_ready(value_and_grad(jp, x, y))
        return float(value), {k: np.asarray(g) for k, g in grads.items()}

    return Framework("JAX jit(value_and_grad)", jax.__version__, step, check)
