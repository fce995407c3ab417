"""Batch norm's running statistics (issue 20, section 1): init_state, the state a training
step returns, and evaluation mode, against torch.nn.functional.batch_norm (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_arch

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _vector_arch(layout: str, momentum: float):
    return make_arch(
        name=f"bn_{layout}",
        layout=layout,
        input=4,
        layers=[
            {"units": 5, "activation": "tanh"},
            {"type": "batchnorm", "activation": "identity", "momentum": momentum, "eps": 1e-3},
            {"units": 3, "activation": "softmax"},
        ],
        loss="cross_entropy",
    )


def _image_arch():
    return make_arch(
        name="bn_image",
        layout="row",
        input=[2, 4, 4],
        layers=[
            {"type": "conv2d", "filters": 3, "kernel": 3, "padding": 1},
            {"type": "batchnorm", "activation": "relu", "momentum": 0.3},
            {"type": "flatten"},
            {"units": 2, "activation": "softmax"},
        ],
        loss="cross_entropy",
    )


def _problem(m, n: int, row: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(v.shape) for k, v in m.init_params(seed).items()}
    d_in = m.LAYER_SIZES[0]
    X = rng.standard_normal((n, d_in)) if row else rng.standard_normal((d_in, n))
    k = m.LAYER_SIZES[-1]
    labels = rng.integers(0, k, n)
    Y = np.eye(k)[labels] if row else np.eye(k)[labels].T
    return params, X, Y


@pytest.mark.parametrize("layout", ["row", "column"])
def test_vector_batch_norm_state_matches_torch(module_for, layout: str) -> None:
    m = module_for(_vector_arch(layout, 0.25))
    row = layout == "row"
    state = m.init_state()
    assert sorted(state) == ["running_mean2", "running_var2"]
    assert np.all(state["running_mean2"] == 0) and np.all(state["running_var2"] == 1)
    params, X, Y = _problem(m, 7, row)
    rm, rv = torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    for step in range(3):
        X = X + 0.5 * step
        _, grads, state = m.loss_and_grads(params, X, Y, state=state)
        # torch: the hidden layer, then batch norm in training mode (updates rm, rv)
        x = torch.tensor(X if row else X.T)
        h = torch.tanh(x @ torch.tensor(params["W1"]).T + torch.tensor(params["b1"]).reshape(-1))
        gamma = torch.tensor(params["gamma2"]).reshape(-1)
        beta = torch.tensor(params["beta2"]).reshape(-1)
        F.batch_norm(h, rm, rv, gamma, beta, training=True, momentum=0.25, eps=1e-3)
        scale = np.abs(rm.numpy()).max()
        np.testing.assert_allclose(state["running_mean2"].reshape(-1), rm.numpy(), rtol=0,
                                   atol=1e-10 * scale)  # fmt: skip
        np.testing.assert_allclose(state["running_var2"].reshape(-1), rv.numpy(), rtol=1e-10)
    # evaluation mode: the running statistics, not the batch's
    x = torch.tensor(X if row else X.T)
    h = torch.tanh(x @ torch.tensor(params["W1"]).T + torch.tensor(params["b1"]).reshape(-1))
    z = F.batch_norm(h, rm, rv, gamma, beta, training=False, eps=1e-3)
    logits = z @ torch.tensor(params["W3"]).T + torch.tensor(params["b3"]).reshape(-1)
    want = torch.softmax(logits, dim=1).numpy()
    got = m.forward(params, X, state=state)
    np.testing.assert_allclose(got if row else got.T, want, rtol=1e-10, atol=1e-12)
    loss_eval = m.loss(params, X, Y, state=state)
    labels = torch.tensor((Y if row else Y.T).argmax(axis=1))
    assert loss_eval == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-10)
    assert m.loss(params, X, Y) != pytest.approx(loss_eval, rel=1e-6)  # training mode differs


def test_the_callers_state_is_not_changed(module_for) -> None:
    m = module_for(_vector_arch("row", 0.1))
    params, X, Y = _problem(m, 6, True)
    state = m.init_state()
    copy = {k: v.copy() for k, v in state.items()}
    _, _, new = m.loss_and_grads(params, X, Y, state=state)
    assert all(np.array_equal(copy[k], state[k]) for k in state)
    assert not np.array_equal(new["running_mean2"], state["running_mean2"])
    _, grads = m.loss_and_grads(params, X, Y)  # without state: as before, two values
    assert set(grads) == set(params)


def test_image_batch_norm_state_matches_torch(module_for) -> None:
    m = module_for(_image_arch())
    state = m.init_state()
    assert state["running_mean2"].shape == (3,)
    params, X, Y = _problem(m, 5, True, seed=2)
    _, _, state = m.loss_and_grads(params, X, Y, state=state)
    x = torch.tensor(X.reshape(5, 2, 4, 4))
    w, b = torch.tensor(params["W1"]), torch.tensor(params["b1"])
    h = F.conv2d(x, w, b, padding=1)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    gamma, beta = torch.tensor(params["gamma2"]), torch.tensor(params["beta2"])
    F.batch_norm(h, rm, rv, gamma, beta, training=True, momentum=0.3, eps=1e-5)
    np.testing.assert_allclose(state["running_mean2"], rm.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(state["running_var2"], rv.numpy(), rtol=1e-10)
    z = torch.relu(F.batch_norm(h, rm, rv, gamma, beta, training=False, eps=1e-5))
    logits = z.reshape(5, -1) @ torch.tensor(params["W4"]).T + torch.tensor(params["b4"])
    want = torch.softmax(logits, dim=1).numpy()
    np.testing.assert_allclose(m.forward(params, X, state=state), want, rtol=1e-10, atol=1e-12)


def test_a_network_without_batch_norm_has_an_empty_state(module_for) -> None:
    m = module_for(make_arch(name="plain_state"))
    assert m.init_state() == {}
    params, X, Y = _problem(m, 4, False)
    value, grads, new = m.loss_and_grads(params, X, Y, state={})
    assert new == {} and value == m.loss(params, X, Y, state={})
