"""Generated gradients vs central finite differences (float64), across the option matrix."""

from __future__ import annotations

import numpy as np
import pytest

from symbp.check.gradcheck import TOLERANCE, check_module, random_problem, workspace_problems
from tests.conftest import make_arch

ELEMENTWISE = [
    "identity",
    "linear",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "softplus",
    "swish",
    "silu",
    "gelu",
]


def _assert_close(module, arch) -> None:
    rows = check_module(module, arch, seed=3, n=6)
    bad = [(r.name, r.max_rel) for r in rows if not r.ok]
    assert not bad, f"gradients off: {bad}"
    assert all(r.max_rel <= TOLERANCE for r in rows)
    # The preallocated-workspace path gives the same bits, into the workspace's arrays.
    assert workspace_problems(module, arch, seed=3, n=6) == []


def assert_float32_follows_float64(m64, m32, arch, n: int = 6) -> None:
    """The float32 module gives the float64 one's loss and gradients to float32 precision,
    in float32 arrays."""
    params, X, Y = random_problem(m64, arch, seed=5, n=n)
    l64, g64 = m64.loss_and_grads(params, X, Y)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    l32, g32 = m32.loss_and_grads(p32, X.astype(np.float32), Y.astype(np.float32))
    assert abs(l32 - l64) <= 1e-5 * max(1.0, abs(l64))
    for key in params:
        assert g32[key].dtype == np.float32, key
        scale = max(1.0, float(np.max(np.abs(g64[key]))))
        assert np.max(np.abs(g32[key] - g64[key])) <= 2e-4 * scale, key


def assert_jvp_and_hvp(m, arch, seed: int = 3, n: int = 5) -> None:
    """jvp against the forward pass and central differences of it; hvp against central
    differences of loss_and_grads, along a random direction of every parameter."""
    params, X, Y = random_problem(m, arch, seed=seed, n=n)
    rng = np.random.default_rng(11)
    v = {k: rng.standard_normal(p.shape) for k, p in params.items()}

    def shifted(t: float) -> dict:
        return {k: params[k] + t * v[k] for k in params}

    out, out_dot = m.jvp(params, X, v)
    np.testing.assert_allclose(out, m.forward(params, X), rtol=1e-13, atol=1e-13)
    h = 1e-6
    fd = (m.forward(shifted(h), X) - m.forward(shifted(-h), X)) / (2 * h)
    np.testing.assert_allclose(out_dot, fd, rtol=1e-6, atol=1e-8)
    hv = m.hvp(params, X, Y, v)
    h = 1e-5
    gp, gm = m.loss_and_grads(shifted(h), X, Y)[1], m.loss_and_grads(shifted(-h), X, Y)[1]
    for key in params:
        fd = (gp[key] - gm[key]) / (2 * h)
        scale = max(1.0, float(np.max(np.abs(fd))))
        assert np.max(np.abs(hv[key] - fd)) <= 1e-6 * scale, key


@pytest.mark.parametrize("activation", ELEMENTWISE)
@pytest.mark.parametrize("layout", ["column", "row"])
def test_every_hidden_activation(module_for, activation: str, layout: str) -> None:
    arch = make_arch(
        layout=layout,
        layers=[
            {"units": 5, "activation": activation},
            {"units": 4, "activation": activation},
            {"units": 3, "activation": "identity"},
        ],
    )
    _assert_close(module_for(arch), arch)


# Outputs whose range suits the loss: bce needs (0, 1), cross-entropy needs positive outputs.
PAIRINGS = [
    *[("mse", out) for out in ("identity", "sigmoid", "softmax", "tanh", "softplus")],
    *[("expr", out) for out in ("identity", "sigmoid", "softmax", "tanh", "softplus")],
    *[("bce", out) for out in ("sigmoid", "softmax")],
    *[("cross_entropy", out) for out in ("softmax", "sigmoid", "softplus")],
]


@pytest.mark.parametrize("loss, output", PAIRINGS)
def test_every_loss_with_every_suitable_output(module_for, loss: str, output: str) -> None:
    spec = {"expr": "(yhat - y)**2 + yhat**4 / 8"} if loss == "expr" else loss
    arch = make_arch(
        loss=spec,
        layers=[{"units": 4, "activation": "tanh"}, {"units": 3, "activation": output}],
    )
    _assert_close(module_for(arch), arch)


@pytest.mark.parametrize("layout", ["column", "row"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_options(module_for, layout: str, dtype: str, reduction: str, l2: float) -> None:
    arch = make_arch(layout=layout, dtype="float64", reduction=reduction, l2=l2)
    _assert_close(module_for(arch), arch)
    # The float32 module: same gradients to float32 precision, and float32 arrays out.
    arch32 = make_arch(layout=layout, dtype=dtype, reduction=reduction, l2=l2)
    m32 = module_for(arch32)
    m64 = module_for(arch)
    rng = np.random.default_rng(0)
    params = m64.init_params(0)
    X = rng.standard_normal((5, 3) if layout == "row" else (3, 5))
    Y = rng.standard_normal((5, 2) if layout == "row" else (2, 5))
    l64, g64 = m64.loss_and_grads(params, X, Y)
    p32 = {k: v.astype(dtype) for k, v in params.items()}
    l32, g32 = m32.loss_and_grads(p32, X.astype(dtype), Y.astype(dtype))
    assert abs(l32 - l64) <= 1e-5 * max(1.0, abs(l64))
    for key in params:
        assert g32[key].dtype == np.dtype(dtype)
        np.testing.assert_allclose(g32[key], g64[key], rtol=2e-4, atol=2e-5)
    assert workspace_problems(m32, arch32, seed=1, n=4) == []


def test_custom_activation_mish(module_for) -> None:
    arch = make_arch(
        activations={"mish": "x*tanh(log(1 + exp(x)))"},
        layers=[{"units": 4, "activation": "mish"}, {"units": 2, "activation": "identity"}],
    )
    _assert_close(module_for(arch), arch)


def test_shapes_and_api(module_for) -> None:
    for layout, bias in (("column", (4, 1)), ("row", (4,))):
        arch = make_arch(layout=layout)
        m = module_for(arch)
        assert m.LAYER_SIZES == (3, 4, 2)
        p = m.init_params(seed=1)
        assert sorted(p) == ["W1", "W2", "b1", "b2"]
        assert p["W1"].shape == (4, 3) and p["b1"].shape == bias
        X = np.ones((3, 6)) if layout == "column" else np.ones((6, 3))
        Y = np.zeros((2, 6)) if layout == "column" else np.zeros((6, 2))
        out = m.forward(p, X)
        assert out.shape == Y.shape
        value, grads = m.loss_and_grads(p, X, Y)
        assert isinstance(value, float) and value == pytest.approx(m.loss(p, X, Y))
        assert {k: g.shape for k, g in grads.items()} == {k: v.shape for k, v in p.items()}
        # init_params is seeded: same seed, same weights; another seed, others.
        np.testing.assert_array_equal(m.init_params(1)["W1"], p["W1"])
        assert not np.array_equal(m.init_params(2)["W1"], p["W1"])


@pytest.mark.parametrize("output", ["relu", "leaky_relu", "elu", "swish", "gelu"])
def test_piecewise_and_z_form_output_layers(module_for, output: str) -> None:
    """Output activations whose derivative is a Piecewise or needs z (found by verify)."""
    arch = make_arch(
        layers=[{"units": 4, "activation": "tanh"}, {"units": 2, "activation": output}]
    )
    _assert_close(module_for(arch), arch)


def test_softmax_with_a_loss_whose_gradient_vanishes(module_for) -> None:
    """sum_k yhat_k = 1 for a softmax, so L = mean(sum_k yhat_k) has a zero gradient."""
    arch = make_arch(
        loss={"expr": "yhat"},
        layers=[{"units": 4, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
    )
    m = module_for(arch)
    _assert_close(m, arch)
    rng = np.random.default_rng(0)
    _, grads = m.loss_and_grads(m.init_params(1), rng.standard_normal((3, 5)), np.zeros((3, 5)))
    assert all(np.max(np.abs(g)) < 1e-12 for g in grads.values())


def test_scalar_times_sum_over_samples_is_printed_whole() -> None:
    import sympy as sp

    from symbp.backends.numpy.printer import print_numpy

    n = sp.Symbol("n")
    delta = sp.MatrixSymbol("delta2", 3, n)
    ones = sp.OneMatrix(n, 1)
    assert print_numpy(sp.MatMul(2, delta, ones), False) == "2 * delta2.sum(axis=1, keepdims=True)"
    assert print_numpy(sp.MatMul(2, delta.T, ones), True) == "2 * delta2.sum(axis=0)"


# Losses that once broke generation: K (the number of units) left in a softmax error,
# a sum of zeros (UnitSum(0)) in the R-operator, |u| (sign, DiracDelta), fractional
# powers, a product whose text starts and ends with parentheses, constant error terms.
UNUSUAL_LOSSES = [
    ("log(yhat)", "softmax"),
    ("-y*log(yhat)", "softmax"),
    ("abs(yhat - y)", "identity"),
    ("abs(yhat - y)**3", "identity"),
    ("sqrt(1 + (yhat - y)**2) - 1", "identity"),
    ("(1 + (yhat - y)**2)**(1/3)", "identity"),
    ("exp(yhat)", "identity"),
    ("yhat", "identity"),
    ("1", "identity"),
    ("y**2", "sigmoid"),
]


@pytest.mark.parametrize("loss, output", UNUSUAL_LOSSES)
def test_unusual_expression_losses(module_for, loss: str, output: str) -> None:
    arch = make_arch(
        loss={"expr": loss},
        layers=[{"units": 3, "activation": "tanh"}, {"units": 3, "activation": output}],
    )
    m = module_for(arch)
    _assert_close(m, arch)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((3, 4)), rng.uniform(0.1, 0.9, (3, 4))
    value, _ = m.loss_and_grads(m.init_params(0), X, Y)
    assert value == pytest.approx(m.loss(m.init_params(0), X, Y))
    if loss == "1":  # the mean over samples of a sum of 1 over the 3 units
        assert value == pytest.approx(3.0)


# Custom activations that once failed: piecewise ones as the output layer (the Kronecker
# delta sat inside each Piecewise branch), erf (its a-form needed erfinv).
CUSTOM = ["abs(x)", "max(x, 0.1*x)", "min(x, 1)", "max(min(x, 1), -1)", "erf(x)"]


@pytest.mark.parametrize("f", CUSTOM)
@pytest.mark.parametrize("where", ["hidden", "output"])
def test_unusual_custom_activations(module_for, f: str, where: str) -> None:
    arch = make_arch(
        activations={"custom": f},
        layers=[
            {"units": 4, "activation": "custom" if where == "hidden" else "tanh"},
            {"units": 2, "activation": "custom" if where == "output" else "identity"},
        ],
    )
    _assert_close(module_for(arch), arch)
