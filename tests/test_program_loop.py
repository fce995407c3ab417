"""A loop in the program IR (codegen.program.Loop), printed by the NumPy backend: a toy
recurrence h_t = tanh(h_(t-1) + x_t) forward in time, and its backward pass through time
in a reverse loop, against NumPy and central differences."""

from __future__ import annotations

import numpy as np
import sympy as sp
from conftest import EXAMPLES

from symbp.backends.numpy.emit import Emitter, block_lines
from symbp.backends.numpy.inline import helper_source
from symbp.codegen.program import Loop, Stmt, build_program
from symbp.derivation.derive import derive
from symbp.derivation.network import derive_network
from symbp.ir.naming import Role, array
from symbp.ir.tensor_ops import Step

T, D, N = 5, 3, 4
SHAPE = (T, D)


def _emitter() -> Emitter:
    """A NumPy emitter in row layout (any network's: the loop reads no layer)."""
    d = derive(EXAMPLES / "resmlp.yaml")
    return Emitter(build_program(d, derive_network(d)))


def _run(lines: list[str], e: Emitter, **arrays: np.ndarray) -> dict:
    namespace = {"np": np, "UNIT_AXIS": 1, **arrays}
    exec(helper_source(e.printer.used), namespace)  # noqa: S102 - symbp's own runtime
    exec("\n".join(lines), namespace)  # noqa: S102 - printed by symbp from its own IR
    return namespace


def _forward_reference(x: np.ndarray) -> np.ndarray:
    steps = x.reshape(N, T, D)
    h, out = np.zeros((N, D)), np.zeros((N, T, D))
    for t in range(T):
        h = np.tanh(h + steps[:, t])
        out[:, t] = h
    return out.reshape(N, T * D)


def test_a_loop_forward_and_back_through_time() -> None:
    e = _emitter()
    t = sp.Symbol("t", integer=True)
    x, s, h = array(Role.ACTIVATION, 0), sp.Symbol("S", real=True), sp.Symbol("H", real=True)
    forward = [
        Loop(
            t,
            sp.Integer(0),
            sp.Integer(T),
            [
                Stmt("S", sp.tanh(s + Step(x, sp.Tuple(*SHAPE), 0, t))),
                Stmt("H", s, step=(0, t), shape=SHAPE),
            ],
        )
    ]
    g = sp.Symbol("Dg", real=True)
    backward = [  # L = sum of every h_t: delta_t = (1 - h_t^2) (1 + delta_(t+1))
        Loop(
            t,
            sp.Integer(T - 1),
            sp.Integer(-1),
            [
                Stmt("Dg", (1 - Step(h, sp.Tuple(*SHAPE), 0, t) ** 2) * (1 + g)),
                Stmt("DX", g, step=(0, t), shape=SHAPE),
            ],
            step=-1,
        )
    ]
    lines = block_lines(e, forward) + block_lines(e, backward)
    assert lines[0] == "for t in range(0, 5):" and "range(4, -1, -1)" in lines[3]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, T * D))
    done = _run(
        lines, e, A0=X, S=np.zeros((N, D)), H=np.zeros((N, T * D)),
        Dg=np.zeros((N, D)), DX=np.zeros((N, T * D)),
    )  # fmt: skip
    np.testing.assert_allclose(done["H"], _forward_reference(X), rtol=1e-14)
    fd = np.zeros_like(X)
    for idx in np.ndindex(X.shape):
        up, down = X.copy(), X.copy()
        up[idx] += 1e-6
        down[idx] -= 1e-6
        fd[idx] = (_forward_reference(up).sum() - _forward_reference(down).sum()) / 2e-6
    np.testing.assert_allclose(done["DX"], fd, rtol=1e-6, atol=1e-9)
