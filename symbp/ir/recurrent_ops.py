"""Whole-array operations of the recurrent layers (rnn, lstm, gru), as unevaluated SymPy
functions of array symbols, printed as helper calls like the image operations
(symbp.ir.image_ops): a loop over the time steps, forward or in reverse, whose body is the
cell's step derived by SymPy (symbp.symbolic.cells) and printed as a function of the module.

A sequence is held as the n*T rows of its positions (sample, then time step). The kept
array of a layer holds, for each row, the blocks of h entries its cell keeps (Cell.kept: the
new carries h (and c) first); its tangent array the tangents of the same blocks. The error
array of the gates holds dL/du (and, when the cell does not read u + v only, dL/dv beside
it), G h entries a row (2 G h). The last argument is the geometry (T, h, blocks, carries,
last, summed, G, cell): `last` when the layer returns h_T only (n rows, not n*T); `cell`
the index of the cell in symbp.symbolic.cells.CELLS.
"""

from __future__ import annotations

import sympy as sp

from symbp.ir.image_ops import ImageOp

GEOMETRY = ("T", "h", "blocks", "carries", "last", "summed", "G", "cell")
CELL_NAMES = ("rnn_tanh", "rnn_relu", "lstm", "gru")  # each defined in symbp.symbolic.cells


def recurrent_geometry(
    positions: int, h: int, blocks: int, carries: int, last: bool, summed: bool, G: int, cell: str
) -> sp.Tuple:
    values = (positions, h, blocks, carries, int(last), int(summed), G, CELL_NAMES.index(cell))
    return sp.Tuple(*map(sp.Integer, values))


class RecurrentOp(ImageOp):
    """An operation of a recurrent layer over all its time steps."""

    # the steps of the cell the helper is given, first, as functions of the module
    # ("forward", "backward", "tangent", "r_backward": symbp.symbolic.cells' derivations)
    steps: tuple[str, ...] = ()

    @property
    def window(self) -> dict[str, int]:
        return dict(zip(GEOMETRY, map(int, self.args[-1]), strict=True))

    @property
    def cell(self) -> str:
        return CELL_NAMES[self.window["cell"]]

    @classmethod
    def eval(cls, *args: sp.Basic) -> sp.Expr | None:
        return None


class RecurrentForward(RecurrentOp):
    """The forward loop: for t = 1..T, v_t = h_(t-1) W_hh^T + b_hh and the cell's step on
    (u_t, v_t, the carries of t-1), zero carries before t = 1; the kept rows of every step
    (args: U = A W_ih^T + b_ih, W_hh, b_hh (0 without a bias), geometry)."""

    helper = "_recurrent_forward"
    steps = ("forward",)

    def latex_form(self, *parts: str) -> str:
        return rf"\operatorname{{scan}}\left({parts[0]}\right)"


class RecurrentOutput(RecurrentOp):
    """The layer's output from its kept rows (or their tangents): each step's h, n*T rows,
    or with `last` the last step's, n rows (args: kept, geometry)."""

    helper = "_recurrent_output"

    @classmethod
    def eval(cls, *args: sp.Basic) -> sp.Expr | None:
        return sp.S.Zero if args[0].is_zero else None

    def latex_form(self, *parts: str) -> str:
        return rf"H\left({parts[0]}\right)"


class PreviousOutputs(RecurrentOp):
    """h_(t-1) for each row (zero at t = 1), from the kept rows or their tangents: the rows
    W_hh multiplies (args: kept, geometry)."""

    helper = "_previous_outputs"

    @classmethod
    def eval(cls, *args: sp.Basic) -> sp.Expr | None:
        return sp.S.Zero if args[0].is_zero else None

    def latex_form(self, *parts: str) -> str:
        return rf"H_{{-1}}\left({parts[0]}\right)"


class RecurrentBackward(RecurrentOp):
    """The reverse loop (backpropagation through time): for t = T..1, the incoming dL/dh_t
    (from the layers above, plus d_v(t+1) W_hh from the step after) and the other carries'
    through the cell's backward step; every step's dL/du (and dL/dv) (args: kept, W_hh,
    the error of the output, geometry)."""

    helper = "_recurrent_backward"
    steps = ("backward",)

    def latex_form(self, *parts: str) -> str:
        return rf"\operatorname{{bptt}}\left({parts[-1]}\right)"


class GateErrors(RecurrentOp):
    """dL/du of every row, the first G h entries of the gates' error array (args: the
    gates' errors, geometry)."""

    helper = "_gate_errors"

    @classmethod
    def eval(cls, *args: sp.Basic) -> sp.Expr | None:
        return sp.S.Zero if args[0].is_zero else None

    def latex_form(self, *parts: str) -> str:
        return rf"\left[{parts[0]}\right]_u"


class HiddenGateErrors(GateErrors):
    """dL/dv of every row: the second G h entries of the gates' error array, or the first
    when the cell reads u + v only (dL/dv = dL/du) (args: the gates' errors, geometry)."""

    helper = "_hidden_gate_errors"

    def latex_form(self, *parts: str) -> str:
        return rf"\left[{parts[0]}\right]_v"


class RecurrentTangent(RecurrentOp):
    """The forward loop of the tangents: v'_t = h'_(t-1) W_hh^T + h_(t-1) W_hh'^T + b_hh' and
    the cell's tangent step; the tangents of every kept row (args: kept, U', W_hh, W_hh',
    b_hh', geometry)."""

    helper = "_recurrent_tangent"
    steps = ("tangent",)

    def latex_form(self, *parts: str) -> str:
        return rf"\dot{{\operatorname{{scan}}}}\left({parts[1]}\right)"


class RecurrentRBackward(RecurrentOp):
    """The reverse loop of the R-operator: the backward loop again, with R{dL/dh_t} beside
    dL/dh_t through the cell's R-step, R{d_v} W_hh + d_v W_hh' to the step before; every
    step's R{dL/du} (and R{dL/dv}) (args: kept, its tangents, W_hh, W_hh', the output's
    error and its R, geometry)."""

    helper = "_recurrent_r_backward"
    steps = ("r_backward",)

    def latex_form(self, *parts: str) -> str:
        return rf"\mathcal{{R}}\left\{{\operatorname{{bptt}}\left({parts[-1]}\right)\right\}}"


RECURRENT_OPS = (
    RecurrentForward,
    RecurrentOutput,
    PreviousOutputs,
    RecurrentBackward,
    GateErrors,
    HiddenGateErrors,
    RecurrentTangent,
    RecurrentRBackward,
)
