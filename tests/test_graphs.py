"""Graphs of layer kinds (add, layernorm, batchnorm, dense without bias), checked like the
dense chains: central differences in float64, the float32 module against the float64 one,
the workspace path, the Taylor test, jvp and hvp against central differences, and, for the
ops alone, PyTorch-style closed forms written here in NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from symbp.check.gradcheck import random_problem, taylor_test
from tests.conftest import make_arch
from tests.test_gradients import (
    _assert_close,
    assert_float32_follows_float64,
    assert_jvp_and_hvp,
)

# Every kind, mixed: a residual block with layer norm, a skip from the input, batch norm
# after a bias-free dense layer.
MIXED = [
    {"units": 4, "activation": "tanh", "name": "stem"},
    {"units": 4, "bias": False},
    {"type": "layernorm", "activation": "relu"},
    {"units": 4},
    {"type": "add", "from": "stem", "activation": "tanh"},
    {"units": 3, "bias": False},
    {"type": "add", "from": "input"},
    {"type": "batchnorm", "eps": 1e-3, "activation": "sigmoid"},
    {"units": 3, "activation": "softmax"},
]


def _mixed(**overrides: Any):
    return make_arch(input=3, layers=MIXED, loss="cross_entropy", **overrides)


# Each kind alone (between two dense layers), so that a failure names the kind.
ALONE = {
    "add": [{"units": 3, "activation": "tanh", "name": "h"}, {"type": "add", "from": "h"}],
    "add-input": [{"units": 3, "activation": "tanh"}, {"type": "add", "from": "input"}],
    "layernorm": [{"units": 3, "activation": "tanh"}, {"type": "layernorm"}],
    "batchnorm": [{"units": 3, "bias": False}, {"type": "batchnorm", "activation": "tanh"}],
    "no-bias": [{"units": 3, "activation": "tanh", "bias": False}],
}


@pytest.mark.parametrize("kind", ALONE)
@pytest.mark.parametrize("layout", ["column", "row"])
def test_each_kind_alone(module_for, kind: str, layout: str) -> None:
    layers = [*ALONE[kind], {"units": 2, "activation": "identity"}]
    arch = make_arch(layout=layout, layers=layers)
    _assert_close(module_for(arch), arch)


@pytest.mark.parametrize("layout", ["column", "row"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_mixed_graph_options(module_for, layout: str, reduction: str, l2: float) -> None:
    arch = _mixed(layout=layout, reduction=reduction, l2=l2)
    m64 = module_for(arch)
    _assert_close(m64, arch)
    assert taylor_test(m64, arch, seed=1).ok
    # The float32 module: the same numbers to float32 precision, float32 arrays out.
    arch32 = _mixed(layout=layout, reduction=reduction, l2=l2, dtype="float32")
    assert_float32_follows_float64(m64, module_for(arch32), arch)


@pytest.mark.parametrize("layout", ["column", "row"])
def test_mixed_graph_jvp_and_hvp(module_for, layout: str) -> None:
    arch = _mixed(layout=layout, l2=0.05)
    assert_jvp_and_hvp(module_for(arch), arch)


def _norm_reference(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, axis: int):
    """y = gamma (x - mu)/sqrt(var + eps) + beta along axis, and the map g -> dL/dx in the
    textbook closed form, written here independently of symbp."""
    mu = x.mean(axis=axis, keepdims=True)
    sigma = np.sqrt(((x - mu) ** 2).mean(axis=axis, keepdims=True) + eps)
    xhat = (x - mu) / sigma

    def back(g: np.ndarray) -> np.ndarray:
        gg = g * gamma
        return (
            gg - gg.mean(axis=axis, keepdims=True) - xhat * (gg * xhat).mean(axis, keepdims=True)
        ) / sigma

    return gamma * xhat + beta, back


@pytest.mark.parametrize("kind", ["layernorm", "batchnorm"])
def test_norm_matches_the_textbook_closed_form(module_for, kind: str) -> None:
    """A network that is one norm (identity, mse, sum): its gradient with respect to the input
    is not returned, so the check goes through W of a dense layer before it, whose gradient is
    (dL/dz) X^T with dL/dz from the closed form."""
    layers = [{"units": 4, "bias": False}, {"type": kind, "eps": 0.01}]
    arch = make_arch(layout="row", input=3, layers=layers, reduction="sum")
    m = module_for(arch)
    params, X, Y = random_problem(m, arch, seed=2, n=6)
    rng = np.random.default_rng(0)
    params["gamma2"] = rng.uniform(0.5, 1.5, 4)
    params["beta2"] = rng.standard_normal(4)
    z = X @ params["W1"].T
    axis = 1 if kind == "layernorm" else 0  # row layout: samples are rows
    y, back = _norm_reference(z, params["gamma2"], params["beta2"], 0.01, axis)
    np.testing.assert_allclose(m.forward(params, X), y, rtol=1e-12, atol=1e-12)
    value, grads = m.loss_and_grads(params, X, Y)
    assert value == pytest.approx(0.5 * np.sum((y - Y) ** 2), rel=1e-12)
    dz = back(y - Y)
    np.testing.assert_allclose(grads["W1"], dz.T @ X, rtol=1e-10, atol=1e-12)
    xhat = (y - params["beta2"]) / params["gamma2"]
    np.testing.assert_allclose(grads["gamma2"], ((y - Y) * xhat).sum(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["beta2"], (y - Y).sum(0), rtol=1e-10, atol=1e-12)
