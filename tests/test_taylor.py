"""symbp's Taylor test (used by `symbp gradcheck`): it passes on correct code, including
losses whose second- and third-order terms cancel at the largest step, and fails when the
gradient or the Hessian-vector product is slightly wrong."""

from __future__ import annotations

import types

from symbp.check.gradcheck import taylor_test
from tests.conftest import make_arch


def _tampered(module, scale_grads: float = 1.0, scale_hvp: float = 1.0):
    """A stand-in module whose gradient or hvp is off by a factor."""

    def loss_and_grads(params, X, Y):
        value, grads = module.loss_and_grads(params, X, Y)
        return value, {k: g * scale_grads for k, g in grads.items()}

    def hvp(params, X, Y, v):
        return {k: h * scale_hvp for k, h in module.hvp(params, X, Y, v).items()}

    return types.SimpleNamespace(
        loss=module.loss, init_params=module.init_params, loss_and_grads=loss_and_grads, hvp=hvp
    )


def test_correct_code_passes_even_when_terms_cancel(module_for) -> None:
    # exp(yhat): at seed 0 the h^2 and h^3 terms nearly cancel at the largest step.
    arch = make_arch(
        loss={"expr": "exp(yhat)"},
        layers=[{"units": 3, "activation": "tanh"}, {"units": 3, "activation": "identity"}],
    )
    result = taylor_test(module_for(arch), arch, seed=0)
    assert result.ok, result


def test_a_slightly_wrong_gradient_or_hvp_fails(module_for) -> None:
    arch = make_arch()
    module = module_for(arch)
    assert taylor_test(module, arch, seed=1).ok
    bad_grad = taylor_test(_tampered(module, scale_grads=1.001), arch, seed=1)
    assert not bad_grad.ok and bad_grad.second < 2, bad_grad
    bad_hvp = taylor_test(_tampered(module, scale_hvp=1.01), arch, seed=1)
    assert not bad_hvp.ok and bad_hvp.second < 2.7, bad_hvp


def test_a_relu_network_whose_larger_steps_cross_a_kink_passes(module_for) -> None:
    # Found by a sweep: at seed 18 the steps from 0.05 cross a ReLU kink.
    arch = make_arch(
        input=2,
        layout="column",
        reduction="sum",
        l2=0.01,
        layers=[{"units": 3, "activation": "relu"}],
    )
    module = module_for(arch)
    result = taylor_test(module, arch, seed=18)
    assert result.ok and result.largest_step < 0.05, result
    bad = taylor_test(_tampered(module, scale_grads=1.001), arch, seed=18)
    assert not bad.ok, bad


def test_a_network_with_many_kinks_still_checks_its_hvp(module_for) -> None:
    """A ReLU CNN crosses kinks at every step above about 1e-5: there the h^3 remainder is
    below rounding, so v.Hv is checked against differences of the gradient, and an hvp
    off by 1% (or a gradient off by 0.1%) fails."""
    import dataclasses

    from symbp.frontend.spec import load_arch
    from tests.conftest import EXAMPLES

    arch = dataclasses.replace(load_arch(EXAMPLES / "res_cnn.yaml"), dtype="float64")
    module = module_for(arch)
    result = taylor_test(module, arch, seed=0)
    assert result.ok and result.largest_step < 1e-4 and result.hvp_error is not None, result
    assert not taylor_test(_tampered(module, scale_hvp=1.01), arch, seed=0).ok
    assert not taylor_test(_tampered(module, scale_grads=1.001), arch, seed=0).ok
