"""The derivatives SymPy finds, asserted as SymPy identities (not as strings)."""

from __future__ import annotations

import pytest
import sympy as sp

from symbp.ir.reductions import UnitSum
from symbp.symbolic.activations import BUILTIN, X
from symbp.symbolic.calculus import A, derive_activation
from symbp.symbolic.output import ARR_A, ARR_Y, ARR_Z, SCALE, Y_VAR, YHAT_VAR, derive_output

EXPECTED_IN_A = {
    "sigmoid": A * (1 - A),
    "tanh": 1 - A**2,
    "softplus": 1 - sp.exp(-A),
    "identity": sp.S.One,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_IN_A))
def test_derivative_rewritten_in_a(name: str) -> None:
    d = derive_activation(name, BUILTIN[name](X))
    assert d.in_a is not None
    assert sp.simplify(d.in_a - EXPECTED_IN_A[name]) == 0


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu"])
def test_piecewise_derivative_in_a_matches_sympy_derivative(name: str) -> None:
    d = derive_activation(name, BUILTIN[name](X))
    assert d.needs == "a"
    for x0 in (sp.Rational(-7, 2), sp.Rational(-1, 4), 0, sp.Rational(1, 2), 2):
        a0 = d.f.subs(X, x0)
        assert sp.simplify(d.in_a.subs(A, a0) - sp.diff(d.f, X).subs(X, x0)) == 0


def test_relu_derivative_is_zero_at_zero() -> None:
    d = derive_activation("relu", BUILTIN["relu"](X))
    assert d.in_a.subs(A, 0) == 0


@pytest.mark.parametrize("name", ["swish", "gelu"])
def test_non_invertible_activations_keep_z(name: str) -> None:
    d = derive_activation(name, BUILTIN[name](X))
    assert d.needs == "z"
    assert sp.simplify(d.backward_form - sp.diff(BUILTIN[name](X), X)) == 0


def test_custom_mish_derivative_is_sympy_derivative() -> None:
    mish = X * sp.tanh(sp.log(1 + sp.exp(X)))
    d = derive_activation("mish", mish)
    for x0 in (-2, 0.3, 1.7):
        want = sp.diff(mish, X).subs(X, x0).evalf(30)
        assert abs(d.backward_form.subs(X, x0).evalf(30) - want) < 1e-25


MSE = (YHAT_VAR - Y_VAR) ** 2 / 2
BCE = -(Y_VAR * sp.log(YHAT_VAR) + (1 - Y_VAR) * sp.log(1 - YHAT_VAR))
CE = -Y_VAR * sp.log(YHAT_VAR)


@pytest.mark.parametrize(
    "act, loss, probability",
    [("sigmoid", BCE, False), ("identity", MSE, False), ("softmax", CE, True)],
)
def test_fused_output_error_is_a_minus_y(act: str, loss: sp.Expr, probability: bool) -> None:
    ad = None if act == "softmax" else derive_activation(act, BUILTIN[act](X))
    out = derive_output(loss, ad, probability)
    assert sp.simplify(out.delta_array - SCALE * (ARR_A - ARR_Y)) == 0


def _components(expr: sp.Expr, a: list, y: list) -> list:
    """Evaluate a whole-array output formula unit by unit (UnitSum sums over units)."""

    def unit_sum(h: sp.Expr) -> sp.Expr:
        return sum(h.subs({ARR_A: ak, ARR_Y: yk}) for ak, yk in zip(a, y, strict=True))

    total = expr.replace(UnitSum, unit_sum)
    return [
        sp.nsimplify(total.subs({ARR_A: aj, ARR_Y: yj, SCALE: 1}))
        for aj, yj in zip(a, y, strict=True)
    ]


def test_softmax_with_mse_goes_through_the_jacobian() -> None:
    out = derive_output(MSE, None, False)
    a = [sp.Rational(1, 5), sp.Rational(3, 10), sp.Rational(1, 2)]
    y = [sp.Integer(1), sp.Integer(0), sp.Integer(2)]
    g = [ak - yk for ak, yk in zip(a, y, strict=True)]  # dl/da for mse
    inner = sum(gk * ak for gk, ak in zip(g, a, strict=True))
    want = [aj * (gj - inner) for aj, gj in zip(a, g, strict=True)]  # a * (g - sum_k g_k a_k)
    assert _components(out.delta_array, a, y) == want


def test_sigmoid_bce_loss_is_computed_from_logits() -> None:
    ad = derive_activation("sigmoid", BUILTIN["sigmoid"](X))
    out = derive_output(BCE, ad, False)
    assert out.loss_from_logits
    z, y = ARR_Z, ARR_Y  # the output's arrays (symbp.ir.naming), not any symbols named so
    want = sp.log(1 + sp.exp(z)) - y * z
    for z0 in (-3, 0.5, 2):
        for y0 in (0, sp.Rational(1, 3), 1):
            got = out.loss_array.subs({z: z0, y: y0}).evalf(30)
            assert abs(got - want.subs({z: z0, y: y0}).evalf(30)) < 1e-25
