"""The NumPy backend's chains (symbp.backends.numpy.inplace): an elementwise expression taken
apart into ufunc calls on a few temporaries computes what the module printer's one expression
computes, never writes into an array it did not make, and keeps float32."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from symbp.backends.numpy import runtime
from symbp.backends.numpy.inplace import MIN_OPERATIONS, Chain, chain_lines
from symbp.backends.numpy.printer import NumPyPrinter

A, B = sp.symbols("A B", real=True)  # whole per-sample arrays (4, 3)
g, c = sp.symbols("g c", real=True)  # a per-unit vector (3,) and a scalar


def _whole(expr: sp.Expr) -> bool:
    return bool(expr.free_symbols & {A, B})


@st.composite
def trees(draw, depth: int = 4) -> sp.Expr:
    """Sums, products, integer powers, tanh and exp (printed whole) of A, B, g, c, numbers."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        leaves = [A, B, g, c, sp.Rational(1, 2), sp.Float(0.75), sp.S(-1), sp.S(3)]
        return draw(st.sampled_from(leaves))
    kind = draw(st.sampled_from(["add", "sub", "mul", "pow", "tanh", "exp"]))
    left, right = draw(trees(depth - 1)), draw(trees(depth - 1))
    if kind == "add":
        return left + right
    if kind == "sub":
        return left - right
    if kind == "mul":
        return left * right
    if kind == "pow":
        return left ** draw(st.sampled_from([2, 3, 4]))
    if kind == "tanh":
        return sp.tanh(left)
    return sp.exp(sp.tanh(left))


def _run(lines: list[str], env: dict) -> dict:
    """The lines run with the NumPy runtime's helpers (the printer calls _exp and others)."""
    exec("\n".join(lines), dict(vars(runtime)), env)  # the test's own generated lines
    return env


@settings(max_examples=300, deadline=None)
@given(expr=trees(), op=st.sampled_from(["=", "*=", "+="]), dtype=st.sampled_from(["f8", "f4"]))
def test_a_chain_computes_the_expression(expr, op, dtype) -> None:
    printer = NumPyPrinter(True)
    rng = np.random.default_rng(0)
    arrays = {
        "A": rng.uniform(-1, 1, (4, 3)).astype(dtype),
        "B": rng.uniform(-1, 1, (4, 3)).astype(dtype),
        "g": rng.uniform(-1, 1, 3).astype(dtype),
        "c": np.asarray(0.3, dtype=dtype)[()],
        "target": rng.uniform(-1, 1, (4, 3)).astype(dtype),
    }
    lines = chain_lines("target", op, expr, printer.doprint, _whole)
    if lines is None:
        assert Chain(printer.doprint, _whole).operations(expr) < MIN_OPERATIONS
        return
    text = printer.doprint(expr)
    expected = _run([f"target {op} {text}"], {k: v.copy() for k, v in arrays.items()})
    got = _run(lines, {k: v.copy() for k, v in arrays.items()})
    assert got["target"].dtype == np.dtype(dtype)
    tolerance = 1e-4 if dtype == "f4" else 1e-12
    np.testing.assert_allclose(got["target"], expected["target"], rtol=tolerance, atol=tolerance)
    for name in ("A", "B", "g"):  # the inputs are read, never written
        np.testing.assert_array_equal(got[name], arrays[name])


def test_a_long_factor_is_taken_apart_and_a_short_one_is_not() -> None:
    printer = NumPyPrinter(True)
    gelu = sp.Rational(1, 2) + A / 2 + sp.Float(0.4) * B * (1 - A**2) * (1 + sp.Float(0.13) * B**2)
    lines = chain_lines("D", "*=", gelu, printer.doprint, _whole)
    assert lines is not None and lines[0].startswith("# D *= ") and lines[-1].startswith("del ")
    assert all("out=" in line for line in lines[1:-2] if not line.startswith("_t"))
    assert chain_lines("D", "*=", A * (1 - A), printer.doprint, _whole) is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_broadcast_operand_is_never_written(dtype) -> None:
    """g (a vector) and c (a scalar) only broadcast: the temporaries are whole arrays."""
    printer = NumPyPrinter(True)
    expr = g * c + g * (A + B) ** 2 - c * sp.tanh(A)
    lines = chain_lines("T", "=", expr, printer.doprint, _whole)
    assert lines is not None
    for line in lines:
        assert "out=g" not in line and "out=c" not in line
    env = _run(lines, {"A": np.ones((4, 3), dtype), "B": np.ones((4, 3), dtype),
                       "g": np.arange(3, dtype=dtype), "c": 2.0})  # fmt: skip
    assert env["T"].shape == (4, 3) and env["T"].dtype == np.dtype(dtype)


class _View(sp.Function):
    """A node the printer writes as an existing array (as a helper may return a view)."""


def test_a_printed_call_that_returns_an_existing_array_is_never_written() -> None:
    printer = NumPyPrinter(True)

    def code(expr: sp.Expr) -> str:  # _View(A) printed as the existing array B
        return printer.doprint(expr.replace(lambda e: isinstance(e, _View), lambda e: B))

    def whole(expr: sp.Expr) -> bool:
        return _whole(expr) or expr.has(_View)

    expr = (_View(A) * 2 + A) * (1 + _View(A) ** 2) - sp.tanh(_View(A))
    lines = chain_lines("T", "=", expr, code, whole)
    assert lines is not None
    b = np.linspace(-1, 1, 12).reshape(4, 3)
    env = _run(lines, {"A": np.ones((4, 3)), "B": b.copy()})
    np.testing.assert_array_equal(env["B"], b)
    np.testing.assert_allclose(env["T"], (2 * b + 1) * (1 + b**2) - np.tanh(b), rtol=1e-14)


def test_a_matrix_expression_is_left_whole() -> None:
    W, X = sp.MatrixSymbol("W", 3, 3), sp.MatrixSymbol("X", 3, 3)
    expr = sp.Float(0.3) * W + X.T * W + X * X
    printer = NumPyPrinter(True)
    assert chain_lines("D", "+=", expr, printer.doprint, lambda e: True) is None
