"""layernorm and batchnorm as graph nodes: the equations of symbp.ops.norm put in place.

Layer norm normalises each sample over its n_l features (statistics per sample); batch norm
each feature over the n samples of the batch, with the batch's own statistics (training
mode: forward, loss, gradients, jvp and hvp all use them). Both keep mu, sigma and xhat
from the forward pass for the backward pass.
"""

from __future__ import annotations

import functools

import sympy as sp

from symbp.graph import Node
from symbp.latex import tex
from symbp.nodes import Family, Kind, directional
from symbp.ops.context import Context, Cost, node_symbols, param_symbol
from symbp.ops.norm import ARR, ARR_COUNT, ARR_SIGMA, EPS, derive_norm
from symbp.reductions import BatchSum

KEYS = ("eps",)
BATCH_COUNT = sp.Symbol("count")  # the code's batch size n


F = Family


def _stat(ctx: Context, node: Node):
    """Statistics: one per sample (layer norm) or one per unit (batch norm)."""
    if node.kind == "layernorm":
        return ctx.statistic
    n = node.z.shape[0]
    return lambda name, what, family, tex="": ctx.units(name, n, what, family, tex=tex)


def _over(node: Node) -> str:
    return "features" if node.kind == "layernorm" else "batch"


def _names(ctx: Context, node: Node) -> dict[sp.Basic, sp.Basic]:
    """The derivation's generic arrays -> this node's."""
    l, n = node.index, node.z.shape[0]
    stat = _stat(ctx, node)
    gamma, beta = node.params
    s = node_symbols(ctx, node)
    return {
        ARR["X"]: ctx.activation_symbol(node.inputs[0]),
        ARR["Xd"]: ctx.tangent_of(node.inputs[0]),
        ARR["G"]: s["delta"],
        ARR["Xhat"]: ctx.samples(
            f"Xhat{l}", n, f"normalised input of layer {l}", F.FORWARD, rf"\hat{{x}}^{{({l})}}"
        ),
        ARR_SIGMA: stat(
            f"Sigma{l}", f"standard deviation in layer {l}", F.FORWARD, rf"\sigma^{{({l})}}"
        ),
        sp.Symbol("Mu", real=True): stat(
            f"Mu{l}", f"mean in layer {l}", F.FORWARD, rf"\mu^{{({l})}}"
        ),
        ARR["Gamma"]: param_symbol(ctx, gamma),
        ARR["Beta"]: param_symbol(ctx, beta),
        ARR["Gammad"]: param_symbol(ctx, gamma, "d"),
        ARR["Betad"]: param_symbol(ctx, beta, "d"),
        ARR_COUNT: sp.Integer(n) if node.kind == "layernorm" else BATCH_COUNT,
        EPS: sp.Rational(repr(node.layer.eps)),  # exact: 1e-05 is 1/100000
    }


def _dots(ctx: Context, node: Node) -> dict[str, sp.Symbol]:
    l, n = node.index, node.z.shape[0]
    stat = _stat(ctx, node)
    return {
        "Xhatd": ctx.samples(
            f"Xhatd{l}", n, f"tangent of xhat{l}", F.TANGENT, rf"\dot{{\hat{{x}}}}^{{({l})}}"
        ),
        "Sigmad": stat(f"Sigmad{l}", f"tangent of sigma{l}", F.TANGENT, rf"\dot\sigma^{{({l})}}"),
    }


def forward(ctx: Context, node: Node) -> tuple:
    if node.kind == "batchnorm":
        ctx.bindings.add("count", Kind.SCALAR, 1, "the batch size", Family.FORWARD, tex="n")
    d, names = derive_norm(_over(node)), _names(ctx, node)
    s = node_symbols(ctx, node)
    mu, sigma, xhat = names[sp.Symbol("Mu", real=True)], names[ARR_SIGMA], names[ARR["Xhat"]]
    return (
        (mu, d.mean.xreplace(names)),
        (sigma, d.sigma.xreplace(names)),
        (xhat, d.xhat.xreplace(names)),
        (s["Z"], d.out.xreplace(names)),
    )


def backward(ctx: Context, node: Node) -> tuple[tuple, tuple]:
    d, names = derive_norm(_over(node)), _names(ctx, node)
    gamma, beta = node.params
    grads = ((gamma, d.d_gamma.xreplace(names)), (beta, d.d_beta.xreplace(names)))
    backs: tuple = ()
    if node.inputs[0].layer > 0:
        backs = ((node.inputs[0], d.back.xreplace(names)),)
    return grads, backs


def tangents(ctx: Context, node: Node) -> tuple[tuple, tuple, tuple]:
    d, names = derive_norm(_over(node)), _names(ctx, node)
    dots, s = _dots(ctx, node), node_symbols(ctx, node)
    steps = (
        (dots["Sigmad"], d.sigma_dot.xreplace(names)),
        (dots["Xhatd"], d.xhat_dot.xreplace(names)),
        (s["Zd"], d.out_dot.xreplace(names)),
    )
    gamma, beta = node.params
    names = {**names, R_G: s["Rdelta"], XHATD: dots["Xhatd"], SIGMAD: dots["Sigmad"]}
    (r_gamma, r_beta), r_back = _r_operator(_over(node))
    r_grads = ((gamma, r_gamma.xreplace(names)), (beta, r_beta.xreplace(names)))
    r_backs: tuple = ()
    if node.inputs[0].layer > 0:
        r_backs = ((node.inputs[0], r_back.xreplace(names)),)
    return steps, r_grads, r_backs


# The R-operator's generic arrays: R{G}, xhat', sigma' (named per node by tangents).
R_G = sp.Symbol("RG", real=True)
XHATD = sp.Symbol("Xhatd", real=True)
SIGMAD = sp.Symbol("Sigmad", positive=True)


@functools.lru_cache(maxsize=2)
def _r_operator(over: str) -> tuple[tuple[sp.Expr, sp.Expr], sp.Expr]:
    """R{.} of the gradients and of what is sent back, once per normalisation: each moved
    along G -> R{G}, xhat -> xhat', sigma -> sigma', gamma -> gamma' (the product rule)."""
    d = derive_norm(over)
    moves = {ARR["G"]: R_G, ARR["Xhat"]: XHATD, ARR_SIGMA: SIGMAD, ARR["Gamma"]: ARR["Gammad"]}
    grads = (directional(d.d_gamma, moves), directional(d.d_beta, moves))
    assert all(isinstance(g, (BatchSum, sp.Expr)) for g in grads)
    return grads, directional(d.back, moves)


def cost(node: Node) -> Cost:
    """No matrix products: about ten elementwise operations and sums over the normalised
    axis per entry, forward and backward."""
    return Cost(0, 0)


_DOTS = {"gammad": r"\dot\gamma", "betad": r"\dot\beta"}


def document_section(kind: str, eq: dict[str, int]) -> dict:
    """The document's section on a norm: the index equation, SymPy's derivative with the
    statistics named, the sum over i, the compact form, and the tangent."""
    n = derive_norm("features" if kind == "layernorm" else "batch")
    return {
        "eq_z": eq[f"eq:{kind}-z"],
        "eq_vjp": eq[f"eq:{kind}-vjp"],
        "eq_tangent": eq[f"eq:{kind}-tangent"],
        "z": tex(n.z),
        "dz_dx": tex(n.dz_dx),
        "vjp_raw": tex(n.vjp_raw),
        "vjp": tex(n.vjp),
        "tangent": tex(n.tangent, names=_DOTS),
    }
