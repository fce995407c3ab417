"""layernorm and batchnorm as graph nodes: the equations of symbp.symbolic.norm_calculus put in
place.

Layer norm normalises each sample over its n_l features (statistics per sample); batch norm
each feature over the n samples of the batch, with the batch's own statistics (training
mode: forward, loss, gradients, jvp and hvp all use them). Both keep mu, sigma and xhat
from the forward pass for the backward pass.
"""

from __future__ import annotations

import functools
from typing import Any

import sympy as sp

from symbp.derivation.context import Context, Cost, node_symbols, param_symbol
from symbp.derivation.nodes import directional
from symbp.errors import DerivationError
from symbp.ir.bindings import Family, Kind
from symbp.ir.graph import Node
from symbp.ir.image_ops import ChannelBatchSum, ChannelTotal, PerChannel, channels
from symbp.ir.naming import Role, array
from symbp.ir.reductions import BatchSum
from symbp.symbolic.norm_calculus import (
    ARR,
    ARR_COUNT,
    ARR_SIGMA,
    EPS,
    MU,
    SIGMA,
    M,
    N,
    X,
    derive_norm,
)

# z is not one product: it keeps its own array
Z_IN_ONE_PRODUCT = False
KEYS = ("eps",)
BATCH_COUNT = sp.Symbol("count")  # the code's batch size n


F = Family


def _stat(ctx: Context, node: Node):
    """Statistics: one per sample (layer norm) or one per unit (batch norm)."""
    if node.kind == "layernorm":
        return ctx.statistic
    n = node.z.row_size
    return lambda name, what, family, tex="": ctx.units(name, n, what, family, tex=tex)


def _over(node: Node) -> str:
    return "features" if node.kind == "layernorm" else "batch"


def _names(ctx: Context, node: Node) -> dict[sp.Basic, sp.Basic]:
    """The derivation's generic arrays -> this node's."""
    l, n = node.index, node.z.row_size
    stat = _stat(ctx, node)
    gamma, beta = node.params
    s = node_symbols(ctx, node)
    return {
        ARR["X"]: ctx.activation_symbol(node.inputs[0]),
        ARR["Xd"]: ctx.tangent_of(node.inputs[0]),
        ARR["G"]: s[Role.ERROR],
        ARR["Xhat"]: ctx.samples(
            array(Role.NORMALIZED, l),
            n,
            f"normalised input of layer {l}",
            F.FORWARD,
            rf"\hat{{x}}^{{({l})}}",
            rows=node.z.rows,
        ),
        ARR_SIGMA: stat(
            array(Role.STD, l), f"standard deviation in layer {l}", F.FORWARD, rf"\rho^{{({l})}}"
        ),
        sp.Symbol("Mu", real=True): stat(
            array(Role.MEAN, l), f"mean in layer {l}", F.FORWARD, rf"\mu^{{({l})}}"
        ),
        ARR["Gamma"]: _spread(node, param_symbol(ctx, gamma)),
        ARR["Beta"]: _spread(node, param_symbol(ctx, beta)),
        ARR["Gammad"]: _spread(node, param_symbol(ctx, gamma, direction=True)),
        ARR["Betad"]: _spread(node, param_symbol(ctx, beta, direction=True)),
        ARR_COUNT: sp.Integer(n) if node.kind == "layernorm" else _batch_count(node),
        EPS: sp.Rational(repr(node.layer.eps)),  # exact: 1e-05 is 1/100000
    }


# Batch norm on an image normalises each channel over the batch and its H*W positions
# (BatchNorm2d in training mode): the vector's equations hold entry by entry with the
# image's C*H*W entries as units, its sums over the batch taken per channel, N = n H W,
# and gamma, beta one per channel, repeated over the channel's positions.


def _per_channel_kind(node: Node) -> bool:
    """Batch norm on an image. (Layer norm on an image is the vector's over its C*H*W
    entries, with a gamma and a beta per entry, which the code holds flat.)"""
    return node.kind == "batchnorm" and node.z.image


def _spread(node: Node, param: sp.Basic) -> sp.Basic:
    """A per-channel parameter read at every entry of an image; a vector's as it is."""
    return PerChannel(param, channels(node.z.shape)) if _per_channel_kind(node) else param


def _batch_count(node: Node) -> sp.Expr:
    """N: the batch size n, times H*W on an image."""
    return BATCH_COUNT * (node.z.shape[1] * node.z.shape[2] if _per_channel_kind(node) else 1)


def _per_channel(node: Node, expr: sp.Basic, total: bool = False) -> sp.Basic:
    """On an image, every sum over the batch taken per channel: repeated over the
    positions inside an expression, or (total: a parameter's gradient) one per channel."""
    if not _per_channel_kind(node):
        return expr
    g = channels(node.z.shape)
    if total:  # the outermost sums give the gradient, one value per channel
        outer = sp.Add.make_args(expr)
        return sp.Add(*[_total(node, term, g) for term in outer])
    return expr.replace(lambda e: isinstance(e, BatchSum), lambda e: ChannelBatchSum(e.args[0], g))


def _total(node: Node, term: sp.Basic, g: sp.Tuple) -> sp.Basic:
    """c * BatchSum(u) -> c * ChannelTotal(u), u's own sums repeated over the positions."""
    factors = sp.Mul.make_args(term)
    sums = [f for f in factors if isinstance(f, BatchSum)]
    if len(sums) != 1 or any(f.has(BatchSum) for f in factors if f is not sums[0]):
        raise ValueError(f"a per-channel gradient that is not one sum over the batch: {term}")
    rest = sp.Mul(*[f for f in factors if f is not sums[0]])
    return rest * ChannelTotal(_per_channel(node, sums[0].args[0]), g)


def _dots(ctx: Context, node: Node) -> dict[str, sp.Symbol]:
    l, n = node.index, node.z.row_size
    stat = _stat(ctx, node)
    return {
        "Xhatd": ctx.samples(
            array(Role.NORMALIZED_TANGENT, l),
            n,
            f"tangent of xhat{l}",
            F.TANGENT,
            rf"\dot{{\hat{{x}}}}^{{({l})}}",
            rows=node.z.rows,
        ),
        "Sigmad": stat(
            array(Role.STD_TANGENT, l), f"tangent of sigma{l}", F.TANGENT, rf"\dot\rho^{{({l})}}"
        ),
    }


def forward(ctx: Context, node: Node) -> tuple:
    if node.kind == "batchnorm":
        ctx.bindings.add("count", Kind.SCALAR, 1, "the batch size", Family.FORWARD, tex="n")
    d, names = derive_norm(_over(node)), _names(ctx, node)
    s = node_symbols(ctx, node)
    mu, sigma, xhat = names[sp.Symbol("Mu", real=True)], names[ARR_SIGMA], names[ARR["Xhat"]]
    return tuple(
        (target, _per_channel(node, value.xreplace(names)))
        for target, value in (
            (mu, d.mean),
            (sigma, d.sigma),
            (xhat, d.xhat),
            (s[Role.PRE_ACTIVATION], d.out),
        )
    )


def _state(ctx: Context, node: Node) -> tuple[sp.Symbol, sp.Symbol]:
    """running_mean<l> and running_var<l>: batch norm's state, shaped like gamma<l>."""
    l, gamma = node.index, node.params[0]
    bound = []
    for role, what in ((Role.RUNNING_MEAN, "running mean"), (Role.RUNNING_VAR, "running var")):
        tex = rf"\bar{{\mu}}^{{({l})}}" if role == Role.RUNNING_MEAN else rf"\bar{{v}}^{{({l})}}"
        symbol = array(role, l)
        bound.append(ctx.units(symbol, gamma.size, f"{what} of layer {l}", F.STATE, gamma, tex))
    return bound[0], bound[1]


def eval_forward(ctx: Context, node: Node) -> tuple:
    """Evaluation mode: batch norm normalises with its running statistics instead of the
    batch's (mu = running mean, sigma = sqrt(running var + eps)); layer norm as in training."""
    steps = forward(ctx, node)
    if node.kind != "batchnorm":
        return steps
    mean, var = _state(ctx, node)
    names = _names(ctx, node)
    mu, sigma = names[sp.Symbol("Mu", real=True)], names[ARR_SIGMA]
    running = {mu: _spread(node, mean), sigma: _spread(node, sp.sqrt(var + names[EPS]))}
    return tuple((target, running.get(target, value)) for target, value in steps)


def state_updates(ctx: Context, node: Node) -> tuple:
    """((running_mean<l>, its new value), (running_var<l>, ...)) after a training step, as
    PyTorch updates them: running = (1 - m) running + m statistic of the batch, the variance
    unbiased (the sum of squares over N - 1, N the batch size, times H W on an image)."""
    if node.kind != "batchnorm":
        return ()
    mean, var = _state(ctx, node)
    names = _names(ctx, node)
    x, mu, count = names[ARR["X"]], names[sp.Symbol("Mu", real=True)], names[ARR_COUNT]
    if _per_channel_kind(node):
        g = channels(node.z.shape)
        batch_mean = ChannelTotal(x, g) / count
        square_sum = ChannelTotal((x - mu) ** 2, g)
    else:
        batch_mean = mu
        square_sum = BatchSum((x - mu) ** 2)
    m = sp.Rational(repr(node.layer.momentum))
    return (
        (mean, (1 - m) * mean + m * batch_mean),
        (var, (1 - m) * var + m * square_sum / (count - 1)),
    )


def backward(ctx: Context, node: Node) -> tuple[tuple, tuple]:
    d, names = derive_norm(_over(node)), _names(ctx, node)
    gamma, beta = node.params
    grads = tuple(
        (param, _per_channel(node, grad.xreplace(names), total=True))
        for param, grad in ((gamma, d.d_gamma), (beta, d.d_beta))
    )
    backs: tuple = ()
    if node.inputs[0].layer > 0:
        backs = ((node.inputs[0], _per_channel(node, d.back.xreplace(names))),)
    return grads, backs


def tangents(ctx: Context, node: Node) -> tuple[tuple, tuple, tuple]:
    d, names = derive_norm(_over(node)), _names(ctx, node)
    dots, s = _dots(ctx, node), node_symbols(ctx, node)
    steps = tuple(
        (target, _per_channel(node, value.xreplace(names)))
        for target, value in (
            (dots["Sigmad"], d.sigma_dot),
            (dots["Xhatd"], d.xhat_dot),
            (s[Role.TANGENT_Z], d.out_dot),
        )
    )
    gamma, beta = node.params
    names = {**names, R_G: s[Role.R_ERROR], XHATD: dots["Xhatd"], SIGMAD: dots["Sigmad"]}
    (r_gamma, r_beta), r_back = _r_operator(_over(node))
    r_grads = tuple(
        (param, _per_channel(node, grad.xreplace(names), total=True))
        for param, grad in ((gamma, r_gamma), (beta, r_beta))
    )
    r_backs: tuple = ()
    if node.inputs[0].layer > 0:
        r_backs = ((node.inputs[0], _per_channel(node, r_back.xreplace(names))),)
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


FRAGMENT = "normalize"


def notation(kind: str, doc: Any) -> list[tuple[str, str]]:
    """The symbols the kind adds to the document's notation table."""
    return [
        (
            r"$\gamma$, $\beta$, $\mu$, $\rho$, $\hat x$, $\epsilon$",
            "a normalisation's scale, shift, mean, standard deviation, normalised input, "
            "and the constant added to the variance",
        )
    ]


def document_labels(kind: str) -> tuple[str, ...]:
    """The numbered equations of the kind's section, in order (the box last)."""
    return (f"eq:{kind}-z", f"eq:{kind}-vjp", f"eq:{kind}-box")


def tangent_labels(kind: str) -> tuple[str, ...]:
    return (f"eq:{kind}-tangent",)


def _statistics_named(z: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """(mu, rho, z) for the document: z_i with its mean and standard deviation named, each
    checked to give SymPy's z back when the definitions are put in."""
    mean = sp.Sum(X[M], (M, 1, N)) / N
    stdev = sp.sqrt(sp.Sum((X[M] - MU) ** 2, (M, 1, N)) / N + EPS)
    full = stdev.subs(MU, mean)
    named = z.subs(full, SIGMA).subs(sp.Sum(X[M], (M, 1, N)), N * MU)
    back = named.subs(SIGMA, full).subs(MU, mean)
    if named.has(sp.Sum) or sp.simplify(back - z) != 0:
        raise DerivationError("the norm's statistics could not be named in its equation")
    return mean, stdev, named


def document_section(kind: str, doc: Any) -> dict:
    """The index equation, SymPy's derivative with the statistics named, the sum over i
    (the error sent back, in the norm's own error term delta), the tangent, and the box:
    the same in the compact form, with the mean along the normalised axis named."""
    n = derive_norm("features" if kind == "layernorm" else "batch")
    names = {**_DOTS, "g": r"\delta"}
    axis = "k" if kind == "layernorm" else ("s,i,j" if doc.images else "s")
    mean = rf"\operatorname{{mean}}_{{{axis}}}"
    Z, A, D = doc.arr("Z", "l"), doc.arr("A", "l-1"), doc.arr("Delta", "l")
    X, s = doc.arr(r"\hat{X}", "l"), doc.arr(r"\rho", "l")
    gamma, beta = doc.arr(r"\gamma", "l"), doc.arr(r"\beta", "l")
    scaled = rf"\tilde{{{doc.v(chr(92) + 'Delta')}}}"
    total = r"\sum_{s,i,j}" if doc.images else r"\sum_{s}"
    shape = r"n \times C \times h \times w" if doc.images else r"n \times N"
    mu_def, rho_def, z_named = _statistics_named(n.z)
    return {
        "z": [
            r"\mu = " + doc.tex(mu_def, names=names),
            r"\rho = " + doc.tex(rho_def, names=names),
            "z_i = " + doc.tex(z_named, names=names),
        ],
        "dz_dx": doc.tex(n.dz_dx, names=names),
        "vjp": r"\frac{\partial L}{\partial x_j} = " + doc.tex(n.vjp, names=names),
        "tangent": r"\dot z_i = " + doc.tex(n.tangent, names=names),
        "box": [
            (s, rf"\sqrt{{\operatorname{{var}}_{{{axis}}} {A} + \epsilon}}"),
            (X, rf"\left({A} - {mean} {A}\right) / {s}"),
            (Z, rf"{gamma} \odot {X} + {beta}"),
            (scaled, rf"{gamma} \odot {D}"),
            (
                doc.grad(A),
                (
                    rf"\frac{{1}}{{{s}}} \odot \left({scaled} - {mean} {scaled} \right.",
                    rf"\left. - {X} \odot {mean}\left({scaled} \odot {X}\right)\right)",
                ),
            ),
            (doc.grad(gamma), rf"{total} \left({X} \odot {D}\right)_{{s}}"),
            (doc.grad(beta), rf"{total} {D}_{{s}}"),
        ],
        "shapes": [
            rf"{A}, {X}, {Z}, {D} \in \mathbb{{R}}^{{{shape}}}",
            rf"{gamma}, {beta} \in \mathbb{{R}}^{{{'C' if doc.images else 'N'}}}",
        ],
        # long: the summary names the box's line instead of repeating it
        "send": r"\text{the line } \partial L / \partial A^{(\ell-1)} \text{ of}",
        "grads": [
            (gamma, rf"{total} \left({X} \odot {D}\right)_s"),
            (beta, rf"{total} {D}_s"),
        ],
    }
