"""Whole-array operations of the token embedding, as unevaluated SymPy functions of array
symbols, printed as helper calls like the image operations (symbp.ir.image_ops).

A token input holds one integer id per position: the code keeps a batch of n sequences of T
ids as the n*T ids of its positions, one per row, and every sequence array as n*T rows. The
last argument is the geometry (V, dim, T): the vocabulary, the embedding's width and the
positions.
"""

from __future__ import annotations

import sympy as sp

from symbp.ir.image_ops import ImageOp

GEOMETRY = ("V", "dim", "T")


def embedding_geometry(vocab: int, dim: int, positions: int) -> sp.Tuple:
    return sp.Tuple(*map(sp.Integer, (vocab, dim, positions)))


class TokenOp(ImageOp):
    """An operation of the embedding (kept unevaluated, printed as a helper call)."""

    @property
    def window(self) -> dict[str, int]:
        return dict(zip(GEOMETRY, map(int, self.args[-1]), strict=True))

    @classmethod
    def eval(cls, *args: sp.Basic) -> sp.Expr | None:
        """Linear in its first array: zero of zero."""
        return sp.S.Zero if args[0].is_zero else None


class Lookup(TokenOp):
    """Row x_r of E for each position r: the embedding of its token (args: E, ids,
    geometry); one row per position."""

    helper = "_lookup"

    def latex_form(self, *parts: str) -> str:
        e, x = parts
        return rf"\operatorname{{rows}}_{{{x}}}\left({e}\right)"


class TilePositions(TokenOp):
    """Row t of P for each position r = s T + t, the same for every sample (args: P, ids
    (for the batch's size), geometry)."""

    helper = "_tile_positions"

    def latex_form(self, *parts: str) -> str:
        return rf"\mathbf{{1}}_B \otimes {parts[0]}"


class Sinusoid(TokenOp):
    """The fixed sinusoidal position rows (Vaswani et al.), computed in float64, for each
    position (args: E (whose dtype and device the rows take), ids (for the batch's size),
    geometry): a constant, not a function of E."""

    helper = "_sinusoid_rows"

    @classmethod
    def eval(cls, *args: sp.Basic) -> sp.Expr | None:
        return None

    def latex_form(self, *parts: str) -> str:
        return r"\mathbf{1}_B \otimes P_{\sin}"

    def _symbp_latex(self, printer) -> str:
        return self.latex_form()


class ScatterRows(TokenOp):
    """dL/dE: row v is the sum of the rows of D at the positions whose token is v, an exact
    scatter-add (args: D, ids, geometry); one (V, dim) array."""

    helper = "_scatter_rows"
    per_sample = False

    def latex_form(self, *parts: str) -> str:
        d, x = parts
        return rf"\left[\sum_{{r}} [{x}_r = v] \left({d}\right)_{{r}}\right]_{{v}}"


class PositionTotal(TokenOp):
    """dL/dP: row t is the sum over the samples of D's row at position t (args: D,
    geometry); one (T, dim) array."""

    helper = "_position_total"
    per_sample = False

    def latex_form(self, *parts: str) -> str:
        return rf"\left[\sum_{{s}} \left({parts[0]}\right)_{{s,t}}\right]_{{t}}"


def fold_geometry(positions: int, d: int) -> sp.Tuple:
    return sp.Tuple(sp.Integer(positions), sp.Integer(d))


class FoldOp(ImageOp):
    """A sequence's n*T rows of d read as n rows of T*d, or back: the same entries in the
    same (C) order, so a reshape (args: the array, geometry (T, d))."""

    @property
    def window(self) -> dict[str, int]:
        return dict(zip(("T", "d"), map(int, self.args[-1]), strict=True))


class FoldPositions(FoldOp):
    """Row s of the result is the T rows s T .. s T + T - 1 of A side by side: flatten on a
    sequence, as torch.flatten(x, 1) on (n, T, d)."""

    helper = "_fold_positions"

    def latex_form(self, *parts: str) -> str:
        return rf"\operatorname{{vec}}_T\left({parts[0]}\right)"


class UnfoldPositions(FoldOp):
    """The inverse of FoldPositions: each row of T*d back as T rows of d."""

    helper = "_unfold_positions"

    def latex_form(self, *parts: str) -> str:
        return rf"\operatorname{{vec}}_T^{{-1}}\left({parts[0]}\right)"


SEQUENCE_OPS = (
    Lookup,
    TilePositions,
    Sinusoid,
    ScatterRows,
    PositionTotal,
    FoldPositions,
    UnfoldPositions,
)
