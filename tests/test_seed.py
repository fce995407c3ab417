"""The seed tutorial's example trains with the generated train()."""

from __future__ import annotations

import numpy as np

from symbp.frontend.spec import load_arch
from tests.conftest import EXAMPLES


def seed_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """X = randn(2, 100), Y = (x0 + x1 > 0) as a 1 x 100 row, as in the seed."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2, 100))
    Y = (X[0:1] + X[1:2] > 0).astype(float)
    return X, Y


def test_seed_network_trains(module_for) -> None:
    arch = load_arch(EXAMPLES / "seed.yaml")
    assert arch.layer_sizes == (2, 4, 1) and arch.layout == "column"
    m = module_for(arch)
    X, Y = seed_data()
    params = m.init_params(0)
    before = m.loss(params, X, Y)
    trained = m.train(params, X, Y, epochs=1000, lr=0.5)
    after = m.loss(trained, X, Y)
    assert after < 0.5 * before
    accuracy = np.mean((m.forward(trained, X) > 0.5) == (Y > 0.5))
    assert accuracy > 0.9
    # train() returns new arrays and leaves the caller's parameters alone.
    assert m.loss(params, X, Y) == before


def test_seed_output_error_is_a_minus_y(module_for) -> None:
    """The seed's backward pass starts from dZ = A - Y (per sample); symbp derives it."""
    arch = load_arch(EXAMPLES / "seed.yaml")
    m = module_for(arch)
    X, Y = seed_data(1)
    params = m.init_params(0)
    _, grads = m.loss_and_grads(params, X, Y)
    A2 = m.forward(params, X)
    A1 = 1 / (1 + np.exp(-(params["W1"] @ X + params["b1"])))
    dZ2 = (A2 - Y) / X.shape[1]
    np.testing.assert_allclose(grads["W2"], dZ2 @ A1.T, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads["b2"], dZ2.sum(axis=1, keepdims=True), rtol=1e-12, atol=1e-15)
