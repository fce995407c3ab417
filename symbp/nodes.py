"""Per-node equations for every layer kind: forward, backward (what each node sends back to
each tensor it reads), forward mode and the R-operator, in whole-array form.

Each kind's local derivatives come from SymPy: the dense layer's from symbp.indexed (the
layer equation in index notation), the normalisations' from symbp.ops.norm, add's from
differentiating x_i + r_i. The activation and the output error are the same for every kind
(symbp.calculus, symbp.output). Reverse mode over the graph is then a sum over consumers:
the error of a tensor is the sum of the `backs` of the nodes that read it.

Array symbols are named per layer (A3, Z3, delta3, Xhat3, ...); what each one *is* lives in
`Bindings`, not in the name.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import sympy as sp

from symbp import bounded
from symbp.calculus import ActivationDerivation
from symbp.graph import Graph, Node, Tensor
from symbp.indexed import MAT_A, MAT_DELTA, MAT_W, N_BATCH
from symbp.ops.image_ops import ImageOp
from symbp.reductions import BatchSum, UnitSum

Expr: TypeAlias = Any  # an elementwise (sp.Expr) or a matrix (sp.MatrixExpr) expression


class Kind(enum.Enum):
    """How an array symbol is laid out in the generated code."""

    SAMPLES = "per sample"  # one value per unit and sample: (n, units) or (units, n)
    UNITS = "per unit"  # one value per unit: a parameter, its gradient, a batch statistic
    SAMPLE_STAT = "per sample statistic"  # one value per sample (a layer norm's mean, sigma)
    MATRIX = "weight matrix"  # W<l> and what has its shape
    SCALAR = "scalar"


class Family(enum.Enum):
    """Which pass computes an array, so which container a function loads it from."""

    PARAMETER = "params"  # W, b, gamma, beta
    DIRECTION = "direction"  # W', b', ... (tangents/vectors of jvp and hvp)
    FORWARD = "cache"  # a, z, xhat, sigma: computed by the forward pass
    BACKWARD = "deltas"  # delta, G: computed by the backward pass
    TANGENT = "tan"  # a', z', xhat', sigma': computed by the forward-mode pass
    R = "r"  # R{delta}, R{G}
    GRADIENT = "grads"
    DATA = "data"  # Y


@dataclass(frozen=True)
class ArrayInfo:
    """What an array symbol stands for."""

    kind: Kind
    units: int  # per-sample or per-unit size (1 for statistics and scalars)
    what: str  # one line for comments: "activation of layer 3", ...
    family: Family
    tensor: Tensor | None = None  # the graph tensor (parameters: for their key)
    tex: str = ""  # its LaTeX, when the kind that binds it names it (gamma^{(2)}, ...)
    tex_batch: str = ""  # the whole batch's array, when its name differs (g -> G)


@dataclass
class Bindings:
    """Symbol name -> ArrayInfo: the structure the printer and the buffer placement read."""

    table: dict[str, ArrayInfo] = field(default_factory=dict)

    def add(
        self,
        name: str,
        kind: Kind,
        units: int,
        what: str,
        family: Family,
        tensor: Tensor | None = None,
        tex: str = "",
        tex_batch: str = "",
    ) -> sp.Symbol:
        info = ArrayInfo(kind, units, what, family, tensor, tex, tex_batch)
        self.table.setdefault(name, info)
        return sp.Symbol(name, real=True) if kind != Kind.SCALAR else sp.Symbol(name)

    def tex_names(self, batch: bool = False) -> dict[str, str]:
        """Symbol name -> LaTeX, for the arrays whose kind names them (batch: the names of the
        whole batch's arrays, where they differ)."""
        return {
            name: (info.tex_batch or info.tex) if batch else info.tex
            for name, info in self.table.items()
            if info.tex
        }

    def info(self, symbol: sp.Basic) -> ArrayInfo | None:
        name = getattr(symbol, "name", None)
        return self.table.get(name) if isinstance(name, str) else None

    def per_sample(self, expr: Expr) -> bool:
        """Whether expr reads an array with one value per sample (outside reductions)."""
        reduced = expr.replace(
            lambda e: (
                isinstance(e, (UnitSum, BatchSum)) or (isinstance(e, ImageOp) and not e.per_sample)
            ),
            lambda e: sp.Dummy(),
        )
        return any(
            (info := self.info(s)) is not None and info.kind == Kind.SAMPLES
            for s in reduced.free_symbols | _matrix_symbols(reduced)
        )


def _matrix_symbols(expr: Expr) -> set:
    return set(expr.atoms(sp.MatrixSymbol)) if isinstance(expr, sp.Basic) else set()


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


__all__ = [
    "ArrayInfo",
    "Bindings",
    "Kind",
    "NodeDerivation",
    "directional",
    "add_derivative",
    "MAT_A",
    "MAT_DELTA",
    "MAT_W",
    "N_BATCH",
    "bounded",
    "Graph",
]
