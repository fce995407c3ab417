"""What each array symbol of the whole-array equations is: its layout (Kind), the pass that
computes it (Family), its size and its LaTeX. Names are generated per layer (A3, Z3, delta3,
Xhat3, ...); what each one *is* lives here, in Bindings, never in the name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import sympy as sp

from symbp.ir.graph import Tensor
from symbp.ir.image_ops import ImageOp
from symbp.ir.naming import ArraySymbol
from symbp.ir.reductions import BatchSum, UnitSum

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
    STATE = "state"  # batch norm's running statistics
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
    rows: int = 1  # stored rows per sample (per-sample arrays): T for a sequence's positions


@dataclass
class Bindings:
    """Symbol name -> ArrayInfo: the structure the printer and the buffer placement read."""

    table: dict[str, ArrayInfo] = field(default_factory=dict)

    def add(
        self,
        symbol: ArraySymbol | str,
        kind: Kind,
        units: int,
        what: str,
        family: Family,
        tensor: Tensor | None = None,
        tex: str = "",
        tex_batch: str = "",
        rows: int = 1,
    ) -> sp.Symbol:
        """Bind an array of the code: an ArraySymbol (symbp.ir.naming), or by name a
        temporary or a scalar that has no role; the symbol."""
        info = ArrayInfo(kind, units, what, family, tensor, tex, tex_batch, rows)
        if isinstance(symbol, ArraySymbol):
            self.table.setdefault(symbol.name, info)
            return symbol
        self.table.setdefault(symbol, info)
        return sp.Symbol(symbol, real=True) if kind != Kind.SCALAR else sp.Symbol(symbol)

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


__all__ = ["ArrayInfo", "Bindings", "Expr", "Family", "Kind"]
