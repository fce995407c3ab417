"""Forward mode (jvp) and Hessian-vector products (hvp) of the generated module."""

from __future__ import annotations

import numpy as np
import pytest

from symbp.check.gradcheck import random_problem
from tests.conftest import make_arch

CASES = [
    ("tanh", "identity", "mse", "column", 0.0),
    ("sigmoid", "sigmoid", "bce", "row", 0.0),
    ("relu", "softmax", "cross_entropy", "column", 0.1),
    ("softplus", "softmax", "mse", "row", 0.0),
    ("gelu", "tanh", "mse", "column", 0.05),
    ("swish", "sigmoid", "mse", "row", 0.0),
    ("elu", "identity", "mse", "column", 0.0),
]


def _arch(hidden: str, output: str, loss: str, layout: str, l2: float):
    return make_arch(
        layout=layout,
        loss=loss,
        l2=l2,
        layers=[
            {"units": 4, "activation": hidden},
            {"units": 3, "activation": hidden},
            {"units": 3, "activation": output},
        ],
    )


def _direction(params: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(v.shape) for k, v in params.items()}


def _shift(params: dict, v: dict, t: float) -> dict:
    return {k: params[k] + t * v[k] for k in params}


def _dot(a: dict, b: dict) -> float:
    return float(sum(np.sum(a[k] * b[k]) for k in a))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_jvp_matches_central_differences_of_forward(module_for, case) -> None:
    arch = _arch(*case)
    m = module_for(arch)
    params, X, _ = random_problem(m, arch, seed=2, n=5)
    v = _direction(params, 7)
    out, out_dot = m.jvp(params, X, v)
    np.testing.assert_allclose(out, m.forward(params, X), rtol=1e-13, atol=1e-13)
    h = 1e-6
    fd = (m.forward(_shift(params, v, h), X) - m.forward(_shift(params, v, -h), X)) / (2 * h)
    np.testing.assert_allclose(out_dot, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_hvp_matches_central_differences_of_gradients(module_for, case) -> None:
    arch = _arch(*case)
    m = module_for(arch)
    params, X, Y = random_problem(m, arch, seed=3, n=5)
    v = _direction(params, 11)
    hv = m.hvp(params, X, Y, v)
    h = 1e-5
    _, gp = m.loss_and_grads(_shift(params, v, h), X, Y)
    _, gm = m.loss_and_grads(_shift(params, v, -h), X, Y)
    for key in params:
        assert hv[key].shape == params[key].shape
        fd = (gp[key] - gm[key]) / (2 * h)
        scale = max(1.0, float(np.max(np.abs(fd))))
        assert np.max(np.abs(hv[key] - fd)) <= 1e-6 * scale, key


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_hessian_is_symmetric(module_for, case) -> None:
    arch = _arch(*case)
    m = module_for(arch)
    params, X, Y = random_problem(m, arch, seed=4, n=5)
    u, w = _direction(params, 1), _direction(params, 2)
    uhw = _dot(u, m.hvp(params, X, Y, w))
    whu = _dot(w, m.hvp(params, X, Y, u))
    assert uhw == pytest.approx(whu, rel=1e-10, abs=1e-12)


def test_gradient_dot_direction_equals_jvp_of_the_loss(module_for) -> None:
    """For mse with an identity output, dL/dt = c sum (Yhat - Y) * Yhat'."""
    arch = _arch("tanh", "identity", "mse", "column", 0.0)
    m = module_for(arch)
    params, X, Y = random_problem(m, arch, seed=5, n=6)
    v = _direction(params, 3)
    _, grads = m.loss_and_grads(params, X, Y)
    out, out_dot = m.jvp(params, X, v)
    through_jvp = float(np.sum((out - Y) * out_dot)) / X.shape[1]
    assert _dot(grads, v) == pytest.approx(through_jvp, rel=1e-12)
    h = 1e-6
    fd = (m.loss(_shift(params, v, h), X, Y) - m.loss(_shift(params, v, -h), X, Y)) / (2 * h)
    assert _dot(grads, v) == pytest.approx(fd, rel=1e-7)


def test_float32_jvp_and_hvp_stay_float32(module_for) -> None:
    arch = make_arch(dtype="float32", layout="row")
    m = module_for(arch)
    params = m.init_params(0)
    X = np.ones((4, 3), dtype=np.float32)
    Y = np.zeros((4, 2), dtype=np.float32)
    v = {k: np.ones_like(p) for k, p in params.items()}
    assert m.jvp(params, X, v)[1].dtype == np.float32
    assert all(h.dtype == np.float32 for h in m.hvp(params, X, Y, v).values())
