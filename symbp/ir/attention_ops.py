"""Whole-array operations of multi-head attention, as unevaluated SymPy functions of array
symbols, printed as helper calls like the image operations (symbp.ir.image_ops).

A sequence is held as the n*T rows of its positions. Queries, keys, values and the heads'
outputs are (n*T, d) arrays: head h is their columns h d_h .. (h+1) d_h - 1. The scores and
probabilities are, for each sample and head, a T x T matrix: their arrays hold n heads T T
entries, in the order (sample, head, query position, key position), which the helpers view
as (n, heads, T, T); only helpers and entry-by-entry operations read them. The last argument
is the geometry (T, d, heads, causal).
"""

from __future__ import annotations

import sympy as sp

from symbp.ir.image_ops import ImageOp

GEOMETRY = ("T", "d", "heads", "causal")


def attention_geometry(positions: int, d: int, heads: int, causal: bool) -> sp.Tuple:
    return sp.Tuple(*map(sp.Integer, (positions, d, heads, int(causal))))


class HeadOp(ImageOp):
    """An operation of attention on the heads of whole arrays."""

    @property
    def window(self) -> dict[str, int]:
        return dict(zip(GEOMETRY, map(int, self.args[-1]), strict=True))

    @classmethod
    def eval(cls, *args: sp.Basic) -> sp.Expr | None:
        """Linear in each array: zero when any is."""
        return sp.S.Zero if any(a.is_zero for a in args[:-1]) else None


class HeadOuter(HeadOp):
    """For each sample and head, A_h B_h^T: the T x T products of the rows of A with the rows
    of B (args: A, B, geometry). With A = Q, B = K: the raw scores."""

    helper = "_head_outer"

    def latex_form(self, *parts: str) -> str:
        a, b = parts
        return rf"{a}_h \left({b}_h\right)^{{\mathsf{{T}}}}"


class HeadSoftmax(HeadOp):
    """For each sample, head and query position, the softmax over the key positions (minus
    the row's maximum first), the positions after the query excluded when causal (args:
    S, geometry)."""

    helper = "_head_softmax"

    @classmethod
    def eval(cls, *args: sp.Basic) -> sp.Expr | None:
        return None

    def latex_form(self, *parts: str) -> str:
        return rf"\operatorname{{softmax}}\left({parts[0]}\right)"


class HeadMix(HeadOp):
    """For each sample and head, P_h V_h, the heads side by side: (n*T, d) (args: P, V,
    geometry). With P the probabilities: the heads' outputs."""

    helper = "_head_mix"

    def latex_form(self, *parts: str) -> str:
        p, v = parts
        return rf"{p}_h {v}_h"


class HeadMixT(HeadOp):
    """For each sample and head, P_h^T D_h, the heads side by side: (n*T, d) (args: P, D,
    geometry)."""

    helper = "_head_mix_t"

    def latex_form(self, *parts: str) -> str:
        p, d = parts
        return rf"\left({p}_h\right)^{{\mathsf{{T}}}} {d}_h"


class HeadRowSum(HeadOp):
    """For each sample, head and query position, the sum of X's row over the key positions,
    repeated along it (args: X, geometry)."""

    helper = "_head_row_sum"

    def latex_form(self, *parts: str) -> str:
        return rf"\operatorname{{rowsum}}\left({parts[0]}\right)"


ATTENTION_OPS = (HeadOuter, HeadSoftmax, HeadMix, HeadMixT, HeadRowSum)
