"""Textbook NumPy backpropagation, written the way a tutorial writes it.

Forward stores every Z and A; backward uses the seed's formulas (sigmoid' = A(1 - A),
tanh' = 1 - A^2, relu' = [Z > 0]); softmax with cross-entropy (and sigmoid with binary
cross-entropy) starts from A - Y; the loss is a mean over the samples.
"""

from __future__ import annotations

import numpy as np

from bench.nets import Net

Params = dict[str, np.ndarray]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def softmax(z: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def activate(name: str, z: np.ndarray, axis: int) -> np.ndarray:
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "identity":
        return z
    if name == "softmax":
        return softmax(z, axis)
    raise ValueError(f"textbook: no activation {name!r}")


def derivative(name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """d act / dz from the stored Z and A (elementwise activations only)."""
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a**2
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "identity":
        return np.ones_like(z)
    raise ValueError(f"textbook: no derivative for {name!r}")


def forward(net: Net, params: Params, X: np.ndarray) -> tuple[list, list]:
    """Every pre-activation Z_l and activation A_l (A_0 = X)."""
    axis = 1 if net.row else 0
    A, Z = [X], []
    for i, name in enumerate(net.activations, start=1):
        W, b = params[f"W{i}"], params[f"b{i}"]
        z = A[-1] @ W.T + b if net.row else W @ A[-1] + b
        Z.append(z)
        A.append(activate(name, z, axis))
    return Z, A


def loss_value(net: Net, out: np.ndarray, Y: np.ndarray) -> float:
    """Mean over samples of the summed per-unit loss."""
    n = net.batch
    tiny = np.finfo(out.dtype).tiny
    if net.loss == "mse":
        return float(0.5 * np.sum((out - Y) ** 2) / n)
    if net.loss == "cross_entropy":
        return float(-np.sum(Y * np.log(np.maximum(out, tiny))) / n)
    if net.loss == "bce":
        p = np.clip(out, tiny, 1 - np.finfo(out.dtype).eps)
        return float(-np.sum(Y * np.log(p) + (1 - Y) * np.log(1 - p)) / n)
    raise ValueError(f"textbook: no loss {net.loss!r}")


def output_delta(net: Net, z: np.ndarray, a: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """dL/dZ_L: A - Y for the matched pairs, (A - Y) act'(Z) for the squared error."""
    last = net.activations[-1]
    matched = (net.loss, last) in (("cross_entropy", "softmax"), ("bce", "sigmoid"))
    if matched:
        return (a - Y) / net.batch
    if net.loss == "mse":
        return (a - Y) * derivative(last, z, a) / net.batch
    raise ValueError(f"textbook: {net.loss} after {last} is not supported")


def loss_and_grads(net: Net, params: Params, X: np.ndarray, Y: np.ndarray) -> tuple[float, Params]:
    """The loss and every gradient by backpropagation."""
    Z, A = forward(net, params, X)
    value = loss_value(net, A[-1], Y)
    delta = output_delta(net, Z[-1], A[-1], Y)
    grads: Params = {}
    for i in range(net.depth, 0, -1):
        if net.row:
            grads[f"W{i}"] = delta.T @ A[i - 1]
            grads[f"b{i}"] = delta.sum(axis=0)
        else:
            grads[f"W{i}"] = delta @ A[i - 1].T
            grads[f"b{i}"] = delta.sum(axis=1, keepdims=True)
        if i > 1:
            back = delta @ params[f"W{i}"] if net.row else params[f"W{i}"].T @ delta
            delta = back * derivative(net.activations[i - 2], Z[i - 2], A[i - 1])
    return value, grads
