"""maxpool2d and avgpool2d: the maximum or the mean of each window, channel by channel.

SymPy differentiates both on one window written out entry by entry (symbp.derivation.kinds.pool's
`derive_pool`): the mean's derivative is 1/(kh kw) for every entry; the maximum's is a
product of Heaviside steps that is 1 at the window's maximum and 0 elsewhere, so max
pooling sends each error term to the position of its window's maximum (the first one,
row by row, when several are equal, as PyTorch does). Both are linear in what they send
back, and max pooling's choice of position is piecewise constant, so forward mode and the
R-operator use the same routing: a' is the tangent at the chosen position.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sympy as sp

from symbp.derivation.context import Context, Cost, node_symbols
from symbp.derivation.kinds.notation import IMAGE_NOTATION
from symbp.errors import DerivationError
from symbp.ir.graph import Node
from symbp.ir.image_ops import (
    AvgPool,
    AvgPoolBack,
    MaxPool,
    MaxPoolPick,
    MaxPoolRoute,
    node_geometry,
)
from symbp.ir.naming import Role

# z is not one product: it keeps its own array
Z_IN_ONE_PRODUCT = False
KEYS = ("size", "stride")


@dataclass(frozen=True)
class PoolDerivation:
    """One 2 x 2 window x_{p,q} written out: z and SymPy's dz/dx_{p,q} for each entry."""

    window: tuple[sp.Symbol, ...]
    z_max: sp.Expr
    dmax: tuple[sp.Expr, ...]
    z_mean: sp.Expr
    dmean: tuple[sp.Expr, ...]

    def __repr__(self) -> str:
        return f"PoolDerivation(dmax/dx00 = {self.dmax[0]})"


@functools.lru_cache(maxsize=1)
def derive_pool() -> PoolDerivation:
    """SymPy's derivatives of the maximum and the mean of a window, checked: the mean's is
    1/4 everywhere, the maximum's is 1 at the maximum and 0 at the others."""
    window = tuple(sp.Symbol(f"x_{{{p}{q}}}", real=True) for p in range(2) for q in range(2))
    z_max, z_mean = sp.Max(*window), sp.Add(*window) / len(window)
    dmax = tuple(sp.diff(z_max, x) for x in window)
    dmean = tuple(sp.diff(z_mean, x) for x in window)
    if any(d != sp.Rational(1, len(window)) for d in dmean):
        raise DerivationError(f"the mean's derivative came out as {dmean}")
    point = dict(zip(window, (1, 4, 2, 3), strict=True))  # the maximum is x_{01}
    routed = [d.subs(point) for d in dmax]
    if routed != [0, 1, 0, 0]:
        raise DerivationError(f"max pooling's derivative at {point} came out as {routed}")
    return PoolDerivation(window, z_max, dmax, z_mean, dmean)


def forward(ctx: Context, node: Node) -> tuple:
    derive_pool()
    s = node_symbols(ctx, node)
    x = ctx.activation_symbol(node.inputs[0])
    op = MaxPool if node.kind == "maxpool2d" else AvgPool
    return ((s[Role.PRE_ACTIVATION], op(x, node_geometry(node))),)


def _pooled(ctx: Context, node: Node) -> sp.Symbol:
    """The pooled maxima z = a of the forward pass (a pooling has no activation), which
    the backward pass compares the windows with instead of taking the maxima again."""
    return node_symbols(ctx, node)[Role.ACTIVATION]


def _back(ctx: Context, node: Node, x: sp.Symbol, d: sp.Basic) -> sp.Basic:
    g = node_geometry(node)
    if node.kind == "maxpool2d":
        return MaxPoolRoute(x, _pooled(ctx, node), d, g)
    return AvgPoolBack(d, g)


def backward(ctx: Context, node: Node) -> tuple[tuple, tuple]:
    """No parameters; delta routed to each window's maximum, or spread over the window."""
    delta = node_symbols(ctx, node)[Role.ERROR]
    x = ctx.activation_symbol(node.inputs[0])
    backs = ((node.inputs[0], _back(ctx, node, x, delta)),) if node.inputs[0].layer > 0 else ()
    return (), backs


def tangents(ctx: Context, node: Node) -> tuple[tuple, tuple, tuple]:
    s = node_symbols(ctx, node)
    x = ctx.activation_symbol(node.inputs[0])
    x_dot = ctx.tangent_of(node.inputs[0])
    g = node_geometry(node)
    if node.kind == "maxpool2d":
        z_dot = MaxPoolPick(x, _pooled(ctx, node), x_dot, g)
    else:
        z_dot = AvgPool(x_dot, g)
    r_backs: tuple = ()
    if node.inputs[0].layer > 0:
        r_backs = ((node.inputs[0], _back(ctx, node, x, s[Role.R_ERROR])),)
    return ((s[Role.TANGENT_Z], z_dot),), (), r_backs


def cost(node: Node) -> Cost:
    """No multiply-adds: kh kw comparisons or additions per output."""
    return Cost(0, 0)


FRAGMENT = "pool"


def notation(kind: str, doc: Any) -> list[tuple[str, str]]:
    """The symbols the kind adds to the document's notation table."""
    if kind == "maxpool2d":
        own = (
            r"$\operatorname{route}$, $\operatorname{pick}$, $\operatorname{step}$",
            "max pooling's routing to the first maximum and its tangent; the unit step",
        )
    else:
        own = (r"$\operatorname{spread}$", "average pooling's backward pass")
    return [*IMAGE_NOTATION, own]


def document_labels(kind: str) -> tuple[str, ...]:
    """The numbered equations of the kind's section, in order (the box last)."""
    return (f"eq:{kind}", f"eq:{kind}-box")


def tangent_labels(kind: str) -> tuple[str, ...]:
    return (f"eq:{kind}-r",)


def document_section(kind: str, doc: Any) -> dict:
    """SymPy's derivative on a 2 x 2 window, and the box: route (max) or spread (mean)."""
    d = derive_pool()
    z, grads = (d.z_max, d.dmax) if kind == "maxpool2d" else (d.z_mean, d.dmean)
    Z, A, D = doc.arr("Z", "l"), doc.arr("A", "l-1"), doc.arr("Delta", "l")
    name = "maxpool" if kind == "maxpool2d" else "avgpool"
    back, send = r"\operatorname{spread}", r"\operatorname{spread}"
    if kind == "maxpool2d":
        back = rf"\operatorname{{route}}_{{{A}}}"
        send = rf"\operatorname{{route}}_{{{doc.arr('a', 'l')}}}"
    return {
        "z": f"z = {doc.tex(z)}",
        "grads": [(doc.tex(x), doc.tex(g)) for x, g in zip(d.window, grads, strict=True)],
        "box": [
            (Z, rf"\operatorname{{{name}}}_{{k,S}}\left({A}\right)"),
            (doc.grad(A), rf"{back}\left({D}\right)"),
        ],
        "shapes": [
            rf"{A} \in \mathbb{{R}}^{{n \times C \times h \times w}}",
            rf"{Z}, {D} \in \mathbb{{R}}^{{n \times C \times h_o \times w_o}}",
        ],
        "r": rf"{doc.R(doc.grad(A))} = {back}\left({doc.R(D)}\right)",
        "send": rf"{send}\left({doc.arr('delta', 'm')}\right)",
    }
