"""Shaped tensors (symbp.ir.tensor_ops): each operation printed by the NumPy backend and run
by the runtime equals NumPy's own on the samples viewed as their shape, in both layouts, and
each vector-Jacobian product is the adjoint of its operation (<op(x), g> = <x, vjp(g)>)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symbp.backends.numpy import inline, runtime
from symbp.backends.numpy.printer import NumPyPrinter
from symbp.documents.latex import tex
from symbp.ir.naming import Role, array
from symbp.ir.tensor_ops import AxisSum, Embed, Permute, Reshape, Slice

SHAPE = (3, 4, 5)  # a sample: an image (C, H, W), or a sequence of 3 x 4 matrices
N = 6
X = array(Role.ACTIVATION, 1)
G = array(Role.ERROR, 1)
S = sp.Tuple(*SHAPE)


def _ops() -> dict[str, sp.Expr]:
    return {
        "sum over H, W": AxisSum(X, S, sp.Tuple(1, 2)),
        "sum over the last axis": AxisSum(X, S, sp.Tuple(2)),
        "reshape": Reshape(X, S, sp.Tuple(12, 5)),
        "permute": Permute(X, S, sp.Tuple(2, 0, 1)),
        "slice": Slice(X, S, 1, 1, 3),
        "embed": Embed(Slice(X, S, 2, 0, 2), sp.Tuple(3, 4, 2), 2, 2, 4, S),
    }


def _expected(name: str, t: np.ndarray) -> np.ndarray:
    """NumPy on the samples as (n, *SHAPE)."""
    if name == "sum over H, W":
        return np.broadcast_to(t.sum(axis=(2, 3), keepdims=True), t.shape)
    if name == "sum over the last axis":
        return np.broadcast_to(t.sum(axis=3, keepdims=True), t.shape)
    if name == "reshape":
        return t.reshape(N, 12, 5)
    if name == "permute":
        return t.transpose(0, 3, 1, 2)
    if name == "slice":
        return t[:, :, 1:3, :]
    out = np.zeros_like(t)
    out[:, :, :, 2:4] = t[:, :, :, 0:2]
    return out


def _run(expr: sp.Expr, values: dict[str, np.ndarray], row: bool) -> np.ndarray:
    """expr printed as the NumPy backend prints it, run with the runtime's helpers."""
    printer = NumPyPrinter(row_layout=row)
    code = printer.doprint(expr)
    namespace = {"np": np, "UNIT_AXIS": 1 if row else 0, **values}
    exec(inline.helper_source(printer.used), namespace)  # noqa: S102 - symbp's own runtime
    return eval(code, namespace)  # noqa: S307 - printed by symbp from its own IR


def _stored(t: np.ndarray, row: bool) -> np.ndarray:
    flat = t.reshape(t.shape[0], -1)
    return flat if row else flat.T


@pytest.mark.parametrize("row", [True, False], ids=["row", "column"])
@pytest.mark.parametrize("name", list(_ops()))
def test_printed_operation_equals_numpy(name: str, row: bool) -> None:
    t = np.random.default_rng(0).standard_normal((N, *SHAPE))
    got = _run(_ops()[name], {"A1": _stored(t, row)}, row)
    want = _expected(name, t)
    np.testing.assert_array_equal(got, _stored(np.ascontiguousarray(want), row))


@pytest.mark.parametrize("name", list(_ops()))
def test_the_vjp_is_the_adjoint(name: str) -> None:
    rng = np.random.default_rng(1)
    op = _ops()[name]
    inner = op.array if isinstance(op, Embed) else None
    x = rng.standard_normal((N, *SHAPE))
    out = _run(op, {"A1": _stored(x, True)}, True)
    g = rng.standard_normal(out.shape)
    back = op.vjp(G)
    if inner is not None:  # embed of a slice: the chain of the two adjoints
        back = inner.vjp(back)
    got = _run(back, {"delta1": g}, True)
    assert np.isclose(np.sum(out * g), np.sum(_stored(x, True) * got), rtol=1e-12)


def test_tangents_and_latex() -> None:
    op = Permute(X, S, sp.Tuple(2, 0, 1))
    assert op.jvp(G) == Permute(G, S, sp.Tuple(2, 0, 1))
    assert AxisSum(sp.S.Zero, S, sp.Tuple(0)) == 0
    assert r"\operatorname{sum}_{2,3}" in tex(_ops()["sum over H, W"])
    with pytest.raises(ValueError, match="cannot reshape"):
        Reshape(X, S, sp.Tuple(7, 2))


def test_the_runtime_helpers_keep_the_dtype() -> None:
    runtime.configure(np.float32, 1)
    try:
        x = np.ones((2, 60), np.float32)
        assert runtime._axis_sum(x, SHAPE, (2,)).dtype == np.float32
        assert runtime._embed(x, SHAPE, 0, 0, 3, SHAPE).dtype == np.float32
    finally:
        runtime.configure(np.float64, 1)
