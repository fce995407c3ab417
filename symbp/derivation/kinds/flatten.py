"""flatten: an image (C, H, W) read as the vector of its C*H*W entries in C order, as
`torch.flatten(x, 1)`. The code stores every image that way already, so z = a entry by
entry: SymPy's dz_k/da_m is [k = m] (as for add), and delta goes back unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

from symbp.derivation.context import Context, Cost, node_symbols
from symbp.derivation.nodes import add_derivative
from symbp.ir.graph import Node
from symbp.ir.naming import Role

# z is not one product: it keeps its own array
Z_IN_ONE_PRODUCT = False
KEYS = ()


def forward(ctx: Context, node: Node) -> tuple:
    s = node_symbols(ctx, node)
    return ((s[Role.PRE_ACTIVATION], ctx.activation_symbol(node.inputs[0])),)


def backward(ctx: Context, node: Node) -> tuple[tuple, tuple]:
    """The input gets sum_k delta_k dz_k/da_m = delta_m: the derivative is [k = m]."""
    dx, _ = add_derivative()
    assert isinstance(dx, sp.KroneckerDelta)
    delta = node_symbols(ctx, node)[Role.ERROR]
    return (), (((node.inputs[0], delta),) if node.inputs[0].layer > 0 else ())


def tangents(ctx: Context, node: Node) -> tuple[tuple, tuple, tuple]:
    s = node_symbols(ctx, node)
    r_backs = ((node.inputs[0], s[Role.R_ERROR]),) if node.inputs[0].layer > 0 else ()
    return ((s[Role.TANGENT_Z], ctx.tangent_of(node.inputs[0])),), (), r_backs


def cost(node: Node) -> Cost:
    """Nothing: the same entries, read as a vector."""
    return Cost(0, 0)


def document_section(kind: str, eq: dict[str, int], tex: Callable[..., str]) -> None:
    """None: the document's layer table gives its shapes."""
    return None
