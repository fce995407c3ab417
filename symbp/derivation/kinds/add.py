"""add: z = a^(l-1) + r, r the output of the layer that `from` names (a residual connection).

SymPy differentiates z_i = x_i + r_i: dz_i/dx_j = dz_i/dr_j = [i = j], so both tensors
receive delta itself; a tensor that a later add also reads gets the sum of what its
consumers send back.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from symbp.derivation.context import Context, Cost, node_symbols
from symbp.derivation.nodes import add_derivative
from symbp.ir.graph import Node
from symbp.ir.naming import Role

# z is not one product: it keeps its own array
Z_IN_ONE_PRODUCT = False
KEYS = ("from",)


def forward(ctx: Context, node: Node) -> tuple:
    s = node_symbols(ctx, node)
    left, right = (ctx.activation_symbol(t) for t in node.inputs)
    return ((s[Role.PRE_ACTIVATION], left + right),)


def backward(ctx: Context, node: Node) -> tuple[tuple, tuple]:
    """Each input gets sum_i delta_i dz_i/dx_j = delta_j (the derivative is [i = j])."""
    dx, dr = add_derivative()
    assert dx == dr  # both Kronecker deltas: each input receives delta as it is
    delta = node_symbols(ctx, node)[Role.ERROR]
    backs = tuple((t, delta) for t in node.inputs if t.layer > 0)
    return (), backs


def tangents(ctx: Context, node: Node) -> tuple[tuple, tuple, tuple]:
    s = node_symbols(ctx, node)
    z_dot = sp.Add(*(ctx.tangent_of(t) for t in node.inputs))
    r_backs = tuple((t, s[Role.R_ERROR]) for t in node.inputs if t.layer > 0)
    return ((s[Role.TANGENT_Z], z_dot),), (), r_backs


def cost(node: Node) -> Cost:
    """No matrix products: one addition per entry forward; backward, delta is passed on."""
    return Cost(0, 0)


FRAGMENT = "add"


def notation(kind: str, doc: Any) -> list[tuple[str, str]]:
    """None of its own: r, the layer `from` names, is defined where it is used."""
    return []


def document_labels(kind: str) -> tuple[str, ...]:
    """The numbered equations of the kind's section, in order (the box last)."""
    return ("eq:add-index", "eq:add-box")


def tangent_labels(kind: str) -> tuple[str, ...]:
    return ("eq:add-r",)


def document_section(kind: str, doc: Any) -> dict:
    """The document's section on add: SymPy's [i = j] for each input, and the box (what
    each input receives, from the derivative); `doc` writes the arrays (symbp.documents)."""
    dx, dr = add_derivative()
    Z, A, D = doc.arr("Z", "l"), doc.arr("A", "l-1"), doc.arr("Delta", "l")
    other = doc.arr("A", "r")
    return {
        "dx": r"\frac{\partial z_i}{\partial x_j} = " + doc.tex(dx),
        "dr": r"\frac{\partial z_i}{\partial {x'}_j} = " + doc.tex(dr),
        "box": [
            (Z, f"{A} + {other}"),
            (doc.grad(A), D),
            (doc.grad(other), D),
        ],
        "shapes": [r"\text{all four of one shape}"],
        "r": f"{doc.R(doc.grad(A))} = {doc.R(doc.grad(other))} = {doc.R(D)}",
        # what a layer m of this kind sends back to a tensor it reads (the summary)
        "send": doc.arr("delta", "m"),
    }
