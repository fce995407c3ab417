"""flatten: an image (C, H, W) or a sequence (T, d) read as the vector of its entries in C
order, as `torch.flatten(x, 1)`. The code stores every image that way already, so z = a entry
by entry: SymPy's dz_k/da_m is [k = m] (as for add), and delta goes back unchanged. A
sequence is stored as T rows of d per sample: z takes each sample's T rows side by side
(symbp.ir.sequence_ops.FoldPositions) and delta goes back unfolded into rows.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from symbp.derivation.context import Context, Cost, node_symbols
from symbp.derivation.kinds.notation import IMAGE_NOTATION
from symbp.derivation.nodes import add_derivative
from symbp.ir.graph import Node
from symbp.ir.naming import Role
from symbp.ir.sequence_ops import FoldPositions, UnfoldPositions, fold_geometry

# z is not one product: it keeps its own array
Z_IN_ONE_PRODUCT = False
KEYS = ()


def _fold(node: Node, array: sp.Basic) -> sp.Basic:
    """The input's rows as the output's: a sequence's T rows side by side, an image as is."""
    x = node.inputs[0]
    return FoldPositions(array, fold_geometry(*x.shape)) if x.sequence else array


def _unfold(node: Node, array: sp.Basic) -> sp.Basic:
    x = node.inputs[0]
    return UnfoldPositions(array, fold_geometry(*x.shape)) if x.sequence else array


def forward(ctx: Context, node: Node) -> tuple:
    s = node_symbols(ctx, node)
    return ((s[Role.PRE_ACTIVATION], _fold(node, ctx.activation_symbol(node.inputs[0]))),)


def backward(ctx: Context, node: Node) -> tuple[tuple, tuple]:
    """The input gets sum_k delta_k dz_k/da_m = delta_m: the derivative is [k = m]."""
    dx, _ = add_derivative()
    assert isinstance(dx, sp.KroneckerDelta)
    delta = node_symbols(ctx, node)[Role.ERROR]
    return (), (((node.inputs[0], _unfold(node, delta)),) if node.inputs[0].layer > 0 else ())


def tangents(ctx: Context, node: Node) -> tuple[tuple, tuple, tuple]:
    s = node_symbols(ctx, node)
    r_backs = (
        ((node.inputs[0], _unfold(node, s[Role.R_ERROR])),) if node.inputs[0].layer > 0 else ()
    )
    return ((s[Role.TANGENT_Z], _fold(node, ctx.tangent_of(node.inputs[0]))),), (), r_backs


def cost(node: Node) -> Cost:
    """Nothing: the same entries, read as a vector."""
    return Cost(0, 0)


FRAGMENT = "flatten"


def notation(kind: str, doc: Any) -> list[tuple[str, str]]:
    """The symbols the kind adds to the document's notation table."""
    if doc.sequences:
        return [
            (
                r"$\operatorname{vec}_T$",
                r"a batch's $B T$ rows of $d$ read as $B$ rows of $T d$, a sample's positions "
                "side by side",
            )
        ]
    return [IMAGE_NOTATION[0], (r"$\operatorname{vec}$", "an image read as a vector, C order")]


def document_labels(kind: str) -> tuple[str, ...]:
    """The numbered equations of the kind's section, in order (the box last)."""
    return ("eq:flatten-box",)


def tangent_labels(kind: str) -> tuple[str, ...]:
    return ("eq:flatten-r",)


def document_section(kind: str, doc: Any) -> dict:
    """The box: vec forward, vec^-1 of delta back ([k = m] from SymPy, as for add)."""
    dx, _ = add_derivative()
    assert isinstance(dx, sp.KroneckerDelta)
    Z, A, D = doc.arr("Z", "l"), doc.arr("A", "l-1"), doc.arr("Delta", "l")
    if doc.sequences:  # T rows of d a sample, joined into one row of T d
        return {
            "box": [
                (Z, rf"\operatorname{{vec}}_T\left({A}\right)"),
                (doc.grad(A), rf"\operatorname{{vec}}_T^{{-1}}\left({D}\right)"),
            ],
            "shapes": [
                rf"{A} \in \mathbb{{R}}^{{B T \times d}}",
                rf"{Z}, {D} \in \mathbb{{R}}^{{B \times T d}}",
            ],
            "r": rf"{doc.R(doc.grad(A))} = \operatorname{{vec}}_T^{{-1}}\left({doc.R(D)}\right)",
            "send": rf"\operatorname{{vec}}_T^{{-1}}\left({doc.arr('delta', 'm')}\right)",
        }
    return {
        "box": [
            (Z, rf"\operatorname{{vec}}\left({A}\right)"),
            (doc.grad(A), rf"\operatorname{{vec}}^{{-1}}\left({D}\right)"),
        ],
        "shapes": [
            rf"{A} \in \mathbb{{R}}^{{n \times C \times h \times w}}",
            rf"{Z}, {D} \in \mathbb{{R}}^{{n \times C h w}}",
        ],
        "r": rf"{doc.R(doc.grad(A))} = \operatorname{{vec}}^{{-1}}\left({doc.R(D)}\right)",
        "send": rf"\operatorname{{vec}}^{{-1}}\left({doc.arr('delta', 'm')}\right)",
    }
