"""Per-node equations for every layer kind: forward, backward (what each node sends back to
each tensor it reads), forward mode and the R-operator, in whole-array form.

Each kind's local derivatives come from SymPy: the dense layer's from symbp.symbolic.indexed
(the layer equation in index notation), the normalisations' from symbp.symbolic.norm_calculus,
add's from differentiating x_i + r_i. The activation and the output error are the same for
every kind (symbp.symbolic.calculus, symbp.symbolic.output). Reverse mode over the graph is
then a sum over consumers: the error of a tensor is the sum of the `backs` of the nodes that
read it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import sympy as sp

from symbp.ir.bindings import Bindings, Expr
from symbp.ir.graph import Node, Tensor
from symbp.ir.reductions import BatchSum, UnitSum
from symbp.symbolic.calculus import ActivationDerivation


@dataclass(frozen=True)
class NodeDerivation:
    """Layer l's equations, every one in whole-array form."""

    node: Node
    act: ActivationDerivation | None  # None: softmax
    is_output: bool
    forward: tuple[tuple[sp.Symbol, Expr], ...]  # saved statistics in order, then z
    a: sp.Expr  # a = f(z), in the symbol Z<l>
    delta: sp.Expr  # dL/dz: G<l> * f'(z) (hidden), the output error (output)
    grads: tuple[tuple[Tensor, Expr], ...]  # each parameter's gradient
    backs: tuple[tuple[Tensor, Expr], ...]  # what is sent back to each tensor read
    tangent: tuple[tuple[sp.Symbol, Expr], ...]  # forward mode: statistics', then z'
    a_dot: sp.Expr
    r_delta: sp.Expr
    r_grads: tuple[tuple[Tensor, Expr], ...]
    r_backs: tuple[tuple[Tensor, Expr], ...]
    stores_z: bool
    local: dict = field(default_factory=dict, compare=False)  # kind-specific steps (document)
    # evaluation mode's forward statements, when they differ (batch norm's running
    # statistics), and the state a training step updates: ((running_mean3, new value), ...)
    eval_forward: tuple[tuple[sp.Symbol, Expr], ...] | None = None
    state_updates: tuple[tuple[sp.Symbol, Expr], ...] = ()
    # a kind's own intermediate steps of the backward pass, computed after delta and before
    # the gradients and what is sent back (attention's dL/dO, dL/dS, ...), and of the
    # R-operator's, after R{delta}
    backward_steps: tuple[tuple[sp.Symbol, Expr], ...] = ()
    r_steps: tuple[tuple[sp.Symbol, Expr], ...] = ()

    def __repr__(self) -> str:
        return f"NodeDerivation({self.node.index} {self.node.kind}: delta = {self.delta})"


def sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def directional(expr: Expr, moves: dict[sp.Basic, Expr]) -> Expr:
    """d/dt of expr with every moved symbol s -> s + t s' (elementwise expressions with
    UnitSum/BatchSum, which are linear, or matrix expressions, by the product rule)."""
    if isinstance(expr, sp.MatrixExpr):
        return _matrix_directional(expr, moves)
    reductions = sorted(expr.atoms(UnitSum, BatchSum), key=sp.default_sort_key)
    stand_in = {u: sp.Dummy(f"u{k}") for k, u in enumerate(reductions)}
    flat = expr.xreplace(stand_in)
    total = sp.S.Zero
    for symbol, velocity in moves.items():
        if isinstance(symbol, sp.Symbol) and flat.has(symbol):
            total += sp.diff(flat, symbol) * velocity
    for u, dummy in stand_in.items():
        total += sp.diff(flat, dummy) * type(u)(directional(u.args[0], moves))
    back = {dummy: u for u, dummy in stand_in.items()}
    return total.xreplace(back)


def _matrix_directional(expr: sp.MatrixExpr, moves: dict) -> sp.MatrixExpr:
    """The product rule over MatMul/MatAdd/Transpose; a moved matrix symbol -> its tangent."""
    if expr in moves:
        return moves[expr]
    if isinstance(expr, sp.Transpose):
        return _matrix_directional(expr.arg, moves).T
    if isinstance(expr, sp.MatAdd):
        return sp.MatAdd(*[_matrix_directional(a, moves) for a in expr.args]).doit()
    if isinstance(expr, sp.MatMul):
        terms = []
        for k, factor in enumerate(expr.args):
            if not isinstance(factor, sp.MatrixExpr):
                continue
            moved = _matrix_directional(factor, moves)
            if isinstance(moved, sp.ZeroMatrix):
                continue
            args = [*expr.args[:k], moved, *expr.args[k + 1 :]]
            terms.append(sp.MatMul(*args).doit())
        if not terms:
            return sp.ZeroMatrix(*expr.shape)
        return sp.MatAdd(*terms).doit() if len(terms) > 1 else terms[0]
    return sp.ZeroMatrix(*expr.shape)


@functools.lru_cache(maxsize=1)
def add_derivative() -> tuple[sp.Expr, sp.Expr]:
    """d z_i / d x_j and d z_i / d r_j for z_i = x_i + r_i, by SymPy: both [i = j]."""
    i, j = sp.symbols("i j", integer=True)
    x, r = sp.IndexedBase("x", real=True), sp.IndexedBase("r", real=True)
    z = x[i] + r[i]
    return sp.diff(z, x[j]), sp.diff(z, r[j])


def scaled_sum(expr: sp.Expr, bindings: Bindings) -> bool:
    """True when expr is a sum over the batch (a per-unit result)."""
    return isinstance(expr, BatchSum) or (isinstance(expr, sp.Mul) and expr.has(BatchSum))
