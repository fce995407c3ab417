"""Forms shown in the documents: second derivatives and Piecewise conditions, each checked
against what SymPy derives (symbp.documents.shown)."""

from __future__ import annotations

import mpmath
import pytest
import sympy as sp

from symbp.documents.latex import tex
from symbp.documents.shown import (
    NormalPdf,
    Sigmoid,
    condition_shown,
    elementary,
    second_derivative_shown,
)
from symbp.symbolic.activations import BUILTIN, X

MISH = X * sp.tanh(sp.log(1 + sp.exp(X)))
ACTIVATIONS = {**{name: f(X) for name, f in BUILTIN.items()}, "mish": MISH}
# Points on both sides of the kinks (0 for relu and elu), none at a kink.
POINTS = [sp.Rational(k, 7) for k in range(-45, 46) if k != 0]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_second_derivative_shown_equals_sympys(name: str) -> None:
    f = ACTIVATIONS[name]
    exact = sp.diff(f, X, 2)
    form = second_derivative_shown(f, X)
    plain = elementary(form)
    with mpmath.workdps(40):
        for p in POINTS:
            want, got = exact.subs(X, p).evalf(40), plain.subs(X, p).evalf(40)
            assert abs(want - got) <= sp.Float("1e-30", 40) * (1 + abs(want)), (name, p)
    assert sp.count_ops(form) <= sp.count_ops(exact)
    tex(form)  # prints


def test_second_derivatives_in_their_usual_forms() -> None:
    s, phi = Sigmoid(X), NormalPdf(X)
    expected = {
        "gelu": phi * (2 - X**2),
        "sigmoid": s * (1 - s) * (1 - 2 * s),
        "softplus": s * (1 - s),
        "tanh": -2 * sp.tanh(X) * sp.sech(X) ** 2,
        "identity": sp.S.Zero,
        "relu": sp.S.Zero,
    }
    for name, want in expected.items():
        got = second_derivative_shown(ACTIVATIONS[name], X)
        assert sp.expand(got - want) == 0, (name, got)
    assert tex(second_derivative_shown(ACTIVATIONS["gelu"], X)) == (
        r"\left(2 - x^{2}\right) \varphi\left(x\right)"
    )
    # mish: through sigma(x) and tanh(softplus(x)), no bare e^x left outside the softplus
    mish = second_derivative_shown(MISH, X)
    softplus = sp.log(sp.exp(X) + 1)
    assert mish.has(Sigmoid) and mish.has(sp.sech(softplus) ** 2)
    assert not mish.xreplace({softplus: sp.Symbol("sp")}).has(sp.exp)


def test_conditions_shown_tightest() -> None:
    x, y = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
    assert condition_shown(sp.And(x >= 1, x > -1)) == (x >= 1)
    assert condition_shown(sp.Or(x >= 1, x > 2)) == (x >= 1)
    assert condition_shown(sp.And(x >= 1, x <= 0)) == sp.false
    assert condition_shown(sp.And(x > -1, x < 1)) == sp.And(x > -1, x < 1)
    assert condition_shown(sp.And(x > 0, x > 1, y < 2)) == sp.And(x > 1, y < 2)
    assert condition_shown(x > 1) == (x > 1)
    # shown on the page: the Piecewise of a clipped activation prints the tight condition
    clipped = sp.Piecewise((1, sp.And(x >= 1, x > -1)), (x, True))
    assert r"x \geq 1 \wedge" not in tex(clipped) and r"x \geq 1" in tex(clipped)


def test_definition_lines_break_a_long_definition() -> None:
    from symbp.documents.latex import LINE_WIDTH, definition_lines, width

    x = sp.Symbol("x", real=True)
    long = sp.atan(x) + sp.sin(x) * sp.erf(x) + sp.sqrt(1 + x**2) - sp.pi * sp.cos(x) / sp.E
    assert width(long) > LINE_WIDTH
    rows = definition_lines("u_{1}", long)
    assert len(rows) > 1 and rows[0].startswith("u_{1} = ")
    assert definition_lines("u_{1}", x + 1) == ["u_{1} = x + 1"]
