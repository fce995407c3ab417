"""Generated code at extreme pre-activations: no overflow, no warning, no inf or NaN."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from symbp.check.gradcheck import check_module
from tests.conftest import make_arch

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "swish", "gelu", "identity"]
OUTPUTS = [
    ("sigmoid", "bce"),
    ("softmax", "cross_entropy"),
    ("identity", "mse"),
    ("sigmoid", "mse"),
]


def extreme_batch(arch, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Inputs whose pre-activations reach +-scale, and targets exactly 0 and 1."""
    d, k = arch.layer_sizes[0], arch.layer_sizes[-1]
    n = 8
    X = np.linspace(-scale, scale, n * d).reshape(d, n)
    Y = np.zeros((k, n))
    Y[0, ::2] = 1.0
    if arch.loss.kind == "cross_entropy":
        Y[k - 1, 1::2] = 1.0
    if arch.layout == "row":
        return X.T.copy(), Y.T.copy()
    return X, Y


def unit_params(m) -> dict:
    """Weights that pass the input scale through: W = [I 0] (or all ones), b = 0."""
    params = m.init_params(0)
    for key, value in params.items():
        if key.startswith("W"):
            rows, cols = value.shape
            w = np.zeros_like(value)
            w[np.arange(rows) % rows, np.arange(rows) % cols] = 1.0
            params[key] = w
        else:
            params[key] = np.zeros_like(value)
    return params


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output, loss", OUTPUTS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_no_floating_point_errors_at_1000(
    module_for, hidden: str, output: str, loss: str, dtype: str
) -> None:
    arch = make_arch(
        dtype=dtype,
        loss=loss,
        layers=[{"units": 3, "activation": hidden}, {"units": 2, "activation": output}],
    )
    m = module_for(arch)
    params = unit_params(m)
    X, Y = extreme_batch(arch, 1000.0)
    with np.errstate(all="raise"):
        out = m.forward(params, X.astype(dtype))
        value, grads = m.loss_and_grads(params, X.astype(dtype), Y.astype(dtype))
    assert np.all(np.isfinite(out))
    assert np.isfinite(value)
    for key, g in grads.items():
        assert np.all(np.isfinite(g)), key
        assert g.dtype == np.dtype(dtype)


@pytest.mark.parametrize("output, loss", [("sigmoid", "bce"), ("softmax", "cross_entropy")])
def test_saturated_outputs_give_exact_losses(module_for, output: str, loss: str) -> None:
    """At z = +-40, 1 - sigmoid(z) rounds to 0 in float64: the loss must still be right."""
    arch = make_arch(loss=loss, input=2, layers=[{"units": 2, "activation": output}])
    m = module_for(arch)
    params = {"W1": np.eye(2), "b1": np.zeros((2, 1))}
    X = np.array([[40.0], [-40.0]])
    Y = np.array([[0.0], [1.0]])
    value = m.loss(params, X, Y)
    if loss == "bce":
        want = 40.0 + np.log1p(np.exp(-40.0)) + 40.0 + np.log1p(np.exp(-40.0))
    else:
        want = 80.0 + np.log1p(np.exp(-80.0))
    assert value == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradients_correct_at_large_but_checkable_values(module_for, hidden: str) -> None:
    """Finite differences still agree with scaled-up inputs (|z| up to about 30)."""
    arch = make_arch(
        loss="bce",
        layers=[{"units": 3, "activation": hidden}, {"units": 2, "activation": "sigmoid"}],
    )
    m = module_for(arch)
    import symbp.check.gradcheck as gc

    original = gc.random_problem

    def scaled(module, a, seed, n):
        params, X, Y = original(module, a, seed, n)
        return params, 10 * X, Y

    gc.random_problem = scaled
    try:
        rows = check_module(m, arch, seed=5, n=6)
    finally:
        gc.random_problem = original
    assert all(r.max_rel <= 1e-5 for r in rows), [(r.name, r.max_rel) for r in rows]


def test_two_piece_functions_are_printed_without_a_branch() -> None:
    """Leaky ReLU, ELU and ELU's derivative (pieces that meet at 0) as min/max, leaky ReLU's
    derivative as a 0/1 mask; a piece undefined at 0 or pieces that do not meet keep
    np.where; each form equals the Piecewise (symbp.symbolic.equal) and is parenthesised where it
    stands as a factor."""
    import sympy as sp

    from symbp.backends.numpy.printer import NumPyPrinter, branch_free
    from symbp.symbolic.equal import agree

    u, v = sp.Symbol("Z1", real=True), sp.Symbol("Zd1", real=True)
    leaky = sp.Piecewise((u, u > 0), (u / 100, True))
    elu = sp.Piecewise((u, u > 0), (sp.exp(u) - 1, True))
    elu_prime = sp.Piecewise((1, u > 0), (1 + u, True))
    for expr in (leaky, elu, elu_prime):
        free = branch_free(expr)
        assert free is not None and not free.has(sp.Piecewise) and agree(expr, free), expr
    assert branch_free(sp.Piecewise((sp.log(u), u > 0), (0, True))) is None  # log(0)
    assert branch_free(sp.Piecewise((u + 1, u > 0), (u, True))) is None  # a jump
    printer = NumPyPrinter(True)
    assert "np.where" not in printer.doprint(leaky) and "np.where" not in printer.doprint(elu)
    mask = printer.doprint(sp.Piecewise((1, u > 0), (sp.Rational(1, 100), True)))
    assert "np.where" not in mask and "(Z1 > 0)" in mask
    factor = printer.doprint(v * elu_prime)
    assert factor.startswith("Zd1*(") and factor.endswith(")"), factor


def test_expensive_calls_of_f_are_kept_for_f_prime() -> None:
    """The cost rule of symbp.symbolic.calculus.kept_intermediate: GELU keeps erf(z/sqrt 2), its
    tanh form its tanh, swish
    its sigmoid, mish tanh(softplus(z)); activations whose f' reads a, and arithmetic, keep nothing;
    a call that is not finite wherever f is (log x in a branch of x > 1) is not kept."""
    import sympy as sp

    from symbp.frontend.expr import parse_expression
    from symbp.symbolic.activations import BUILTIN, X, elementwise_expr
    from symbp.symbolic.calculus import derive_activation, kept_intermediate

    kept = {
        name: derive_activation(name, elementwise_expr(name, {})).kept
        for name in BUILTIN
        if name != "softmax"
    }
    assert kept.pop("gelu") == sp.erf(X / sp.sqrt(2))
    inner = sp.sqrt(2 / sp.pi) * (X + sp.Rational(44715, 1000000) * X**3)
    assert sp.simplify(kept.pop("gelu_tanh") - sp.tanh(inner)) == 0
    assert kept.pop("swish") == 1 / (1 + sp.exp(-X))
    assert kept.pop("silu", None) in (None, 1 / (1 + sp.exp(-X)))
    assert all(v is None for v in kept.values()), kept
    mish = parse_expression("x*tanh(log(1 + exp(x)))", {"x": X})
    assert derive_activation("mish", mish).kept == sp.tanh(sp.log(1 + sp.exp(X)))
    square = X**2 + X  # f' = 2x + 1: arithmetic only
    assert kept_intermediate(square, sp.diff(square, X)) is None
    branch = sp.Piecewise((sp.log(X) ** 2, X > 1), (0, True))
    assert kept_intermediate(branch, sp.diff(branch, X)) is None
    assert kept_intermediate(X + sp.tanh(X) ** 2, 1 + 2 * sp.tanh(X) * (1 - sp.tanh(X) ** 2))


@pytest.mark.parametrize("activation", ["gelu", "swish", "mish"])
def test_backward_pass_reads_what_the_forward_pass_kept(module_for, activation: str) -> None:
    """One step evaluates each kept function once per layer (in the forward pass): the
    backward pass, jvp's tangent and hvp's R-operator read T<l> from the cache."""
    arch = make_arch(
        loss="cross_entropy",
        activations={"mish": "x*tanh(log(1 + exp(x)))"},
        layers=[
            {"units": 4, "activation": activation},
            {"units": 3, "activation": activation},
            {"units": 2, "activation": "softmax"},
        ],
    )
    m = module_for(arch)
    from symbp.check.gradcheck import check_module

    assert all(r.max_rel <= 1e-6 for r in check_module(m, arch, seed=2, n=5))
    name = {"gelu": "_erf", "swish": "_sigmoid", "mish": "_softplus"}[activation]
    calls = {"n": 0}
    original = getattr(m, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return original(*args, **kwargs)

    from symbp.check.gradcheck import random_problem

    params, X, Y = random_problem(m, arch, 0, 5)
    setattr(m, name, counted)
    try:
        m.loss_and_grads(params, X, Y)
        assert calls["n"] == 2  # one per layer, in the forward pass
        calls["n"] = 0
        cache = m._forward(params, X)
        assert calls["n"] == 2 and "T1" in cache and "T2" in cache
        m.hvp(params, X, Y, params)
        assert calls["n"] == 4  # hvp's own forward pass only
    finally:
        setattr(m, name, original)
