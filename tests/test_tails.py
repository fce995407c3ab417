"""Tails: every built-in activation and the README's custom examples evaluate, differentiate
and give Hessian-vector products without an overflow, an invalid operation or a division
by zero where the mathematical value is finite, with |z| up to 1e4, in both dtypes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from symbp.frontend.spec import BUILTIN_ACTIVATIONS
from tests.conftest import make_arch

# Every elementwise built-in (softmax is the output layer's, tested elsewhere).
BUILTIN = [name for name in BUILTIN_ACTIVATIONS if name != "softmax"]
README_CUSTOM = {"mish": "x*tanh(log(1 + exp(x)))"}


def _problem(module, dtype: str):
    """Pre-activations from -1e4 to 1e4 (and near 0) on 4 units, for 9 samples."""
    z = np.array([-1e4, -800.0, -40.0, -1.0, 0.0, 1e-3, 1.0, 40.0, 1e4])
    params = module.init_params(0)
    params["W1"] = np.array([[1.0], [-1.0], [0.5], [-2e-3]]).astype(dtype)
    params["b1"] = np.zeros_like(params["b1"])
    X = z[None, :].astype(dtype)
    Y = np.linspace(-1, 1, z.size)[None, :].astype(dtype)
    return params, X, Y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", [*BUILTIN, *README_CUSTOM])
def test_no_floating_point_error_in_the_tails(module_for, activation: str, dtype: str) -> None:
    arch = make_arch(
        input=1,
        dtype=dtype,
        activations={k: v for k, v in README_CUSTOM.items() if k == activation},
        layers=[{"units": 4, "activation": activation}, {"units": 1, "activation": "identity"}],
    )
    m = module_for(arch)
    params, X, Y = _problem(m, dtype)
    v = {k: np.ones_like(p) for k, p in params.items()}
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        value, grads = m.loss_and_grads(params, X, Y)
        _, out_dot = m.jvp(params, X, v)
        hv = m.hvp(params, X, Y, v)
    assert np.isfinite(value)
    for name, arrays in (("gradient", grads), ("hvp", hv)):
        for key, array in arrays.items():
            assert array.dtype == np.dtype(dtype), (name, key)
            assert np.isfinite(array).all(), (name, key, array)
    assert np.isfinite(out_dot).all()
