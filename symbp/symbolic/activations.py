"""Built-in activation functions as SymPy expressions in the pre-activation x.

Only the functions are written here; every derivative is left to SymPy.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

from symbp.errors import SpecError

X = sp.Symbol("x", real=True)

LEAK = sp.Rational(1, 100)


def _sigmoid(x: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-x))


def _relu(x: sp.Expr) -> sp.Expr:
    # A Piecewise so that SymPy's derivative at 0 is the value of the x <= 0 branch (0).
    return sp.Piecewise((x, x > 0), (0, True))


def _leaky_relu(x: sp.Expr) -> sp.Expr:
    return sp.Piecewise((x, x > 0), (LEAK * x, True))


def _elu(x: sp.Expr) -> sp.Expr:
    return sp.Piecewise((x, x > 0), (sp.exp(x) - 1, True))


BUILTIN: dict[str, Callable[[sp.Expr], sp.Expr]] = {
    "identity": lambda x: x,
    "sigmoid": _sigmoid,
    "tanh": sp.tanh,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "softplus": lambda x: sp.log(1 + sp.exp(x)),
    "swish": lambda x: x * _sigmoid(x),
    "gelu": lambda x: x / 2 * (1 + sp.erf(x / sp.sqrt(2))),
    # GELU's tanh approximation (Hendrycks and Gimpel; PyTorch's approximate="tanh")
    "gelu_tanh": lambda x: (
        x / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x + sp.Rational(44715, 1000000) * x**3)))
    ),
}

# Softmax is not elementwise: it is defined over the units of a sample in symbp.symbolic.indexed.
VECTOR = ("softmax",)


def elementwise_expr(name: str, custom: dict[str, sp.Expr]) -> sp.Expr:
    """The activation `name` applied to the symbol X."""
    if name in custom:
        return custom[name]
    if name in BUILTIN:
        return BUILTIN[name](X)
    raise SpecError(f"unknown activation {name!r}")
