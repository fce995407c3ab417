"""conv2d: z = b + W (x) a, the cross-correlation of the zero-padded image with each filter.

The index equations and their derivatives are SymPy's (symbp.symbolic.conv_calculus); here they
are put in place as whole-array operations (symbp.ir.image_ops): the forward correlation,
the kernel's gradient (the input correlated with delta), the bias's (delta summed over
the batch and the positions) and what goes back to the input (delta fully correlated with
the flipped kernel). Forward mode: z' = b' + W (x) a' + W' (x) a, the derivative SymPy
took along W', b', a'; the R-operator moves each backward product the same way.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from symbp.derivation.context import Context, Cost, node_symbols
from symbp.derivation.derive import L2_WEIGHT
from symbp.derivation.kinds.notation import IMAGE_NOTATION, weights_notation
from symbp.ir.bindings import Family, Kind
from symbp.ir.graph import Node
from symbp.ir.image_ops import (
    Conv2d,
    Conv2dBackInput,
    Conv2dBackKernel,
    Conv2dBackKernelColumns,
    Conv2dColumns,
    FilterTotal,
    Unfold,
    channels,
    node_geometry,
)
from symbp.ir.naming import Role, array
from symbp.symbolic.conv_calculus import derive_conv

# z is not one product: it keeps its own array
Z_IN_ONE_PRODUCT = False
KEYS = ("filters", "kernel", "stride", "padding", "bias")


def _params(ctx: Context, node: Node, direction: bool = False) -> tuple[sp.Symbol, sp.Basic]:
    """W<l> and b<l> (0 without a bias), or with `direction` their directions."""
    l = node.index
    family = Family.DIRECTION if direction else Family.PARAMETER
    what = "direction of the " if direction else ""
    W, *b = node.params
    filters = node.z.shape[0]
    w_role = Role.WEIGHT_DIRECTION if direction else Role.WEIGHT
    kernel = ctx.bindings.add(
        array(w_role, l), Kind.MATRIX, filters, f"{what}kernel of layer {l}", family, W
    )
    bias: sp.Basic = sp.S.Zero
    if b:
        b_role = Role.BIAS_DIRECTION if direction else Role.BIAS
        bias = ctx.bindings.add(
            array(b_role, l), Kind.UNITS, filters, f"{what}biases of layer {l}", family, b[0]
        )
    return kernel, bias


def _columns(ctx: Context, node: Node) -> sp.Symbol:
    """Cols<l>: the unfolded input, kept from the forward pass for the kernel's gradient.

    Cost rule: the forward pass writes these C kh kw Ho Wo entries per sample anyway (the
    product reads them), so keeping them costs memory only, while recomputing them in the
    backward pass would repeat the padding and the unfolding copy (measured: about as long
    as the kernel gradient's product itself)."""
    l = node.index
    assert node.layer.window is not None
    size = node.inputs[0].shape[0] * node.layer.window.area * node.z.shape[1] * node.z.shape[2]
    tex = rf"\operatorname{{cols}}^{{({l})}}"
    what = f"unfolded input of layer {l}"
    return ctx.samples(array(Role.COLUMNS, l), size, what, Family.FORWARD, tex, rows=1)


def forward(ctx: Context, node: Node) -> tuple:
    """(Cols<l>, the unfolded A<l-1>), (Z<l>, W<l> Cols<l> + b<l>): the correlation."""
    derive_conv()  # the equations the operations stand for, checked once
    kernel, bias = _params(ctx, node)
    s = node_symbols(ctx, node)
    x = ctx.activation_symbol(node.inputs[0])
    cols, g = _columns(ctx, node), node_geometry(node)
    return ((cols, Unfold(x, g)), (s[Role.PRE_ACTIVATION], Conv2dColumns(cols, kernel, bias, g)))


def backward(ctx: Context, node: Node) -> tuple[tuple, tuple]:
    """dL/dW (+ lambda W), dL/db; the flipped-kernel correlation back to the input."""
    kernel, bias = _params(ctx, node)
    delta = node_symbols(ctx, node)[Role.ERROR]
    g = node_geometry(node)
    dW = Conv2dBackKernelColumns(_columns(ctx, node), delta, g)
    if ctx.decays(node.params[0], node):
        dW = dW + L2_WEIGHT * kernel
    grads = [(node.params[0], dW)]
    if node.layer.bias:
        grads.append((node.params[1], FilterTotal(delta, channels(node.z.shape))))
    backs = []
    if node.inputs[0].layer > 0:
        backs.append((node.inputs[0], Conv2dBackInput(delta, kernel, g)))
    return tuple(grads), tuple(backs)


def tangents(ctx: Context, node: Node) -> tuple[tuple, tuple, tuple]:
    """z' = b' + W (x) a' + W' (x) a; R{dW} = a' (x) delta + a (x) R{delta} (+ lambda W');
    R{db} = the sums of R{delta}; R{back} = R{delta} with W, plus delta with W'."""
    kernel, _ = _params(ctx, node)
    kernel_d, bias_d = _params(ctx, node, direction=True)
    s = node_symbols(ctx, node)
    x_dot = ctx.tangent_of(node.inputs[0])
    g, cols = node_geometry(node), _columns(ctx, node)
    z_dot = Conv2dColumns(cols, kernel_d, bias_d, g) + Conv2d(x_dot, kernel, sp.S.Zero, g)
    r_dW = Conv2dBackKernel(x_dot, s[Role.ERROR], g) + Conv2dBackKernelColumns(
        cols, s[Role.R_ERROR], g
    )
    if ctx.decays(node.params[0], node):
        r_dW = r_dW + L2_WEIGHT * kernel_d
    r_grads = [(node.params[0], r_dW)]
    if node.layer.bias:
        r_grads.append((node.params[1], FilterTotal(s[Role.R_ERROR], channels(node.z.shape))))
    r_backs = []
    if node.inputs[0].layer > 0:
        back = Conv2dBackInput(s[Role.R_ERROR], kernel, g) + Conv2dBackInput(
            s[Role.ERROR], kernel_d, g
        )
        r_backs.append((node.inputs[0], back))
    return ((s[Role.TANGENT_Z], z_dot),), tuple(r_grads), tuple(r_backs)


def cost(node: Node) -> Cost:
    """Multiply-adds per sample: F Ho Wo C kh kw forward; the same for the kernel's
    gradient and again for the input's error (unless it reads the network's input)."""
    assert node.layer.window is not None
    products = node.z.size * node.inputs[0].shape[0] * node.layer.window.area
    return Cost(products, products * (2 if node.inputs[0].layer > 0 else 1))


FRAGMENT = "conv2d"


def notation(kind: str, doc: Any) -> list[tuple[str, str]]:
    """The symbols the kind adds to the document's notation table."""
    return [
        weights_notation(doc),
        *IMAGE_NOTATION,
        ("$F$, $o$; $k_h$, $k_w$", "the filters and a filter; the kernel's height and width"),
        ("$(p, q)$; $S$, $P$", "a kernel offset; the stride and the padding"),
        (
            r"$\star$, $\tilde\star$, $\operatorname{rot}_{180}$",
            "correlation, transposed correlation, flipped kernel (section on conv2d)",
        ),
    ]


def document_labels(kind: str) -> tuple[str, ...]:
    """The numbered equations of the kind's section, in order (the box last)."""
    return ("eq:conv2d-z", "eq:conv2d-dW", "eq:conv2d-dx", "eq:conv2d-box")


def tangent_labels(kind: str) -> tuple[str, ...]:
    return ("eq:conv2d-tangent", "eq:conv2d-r")


def document_section(kind: str, doc: Any) -> dict:
    """The index equation, SymPy's derivatives with the Kronecker deltas and the sums they
    leave (eqs. conv2d-z, -dW, -dx), and the box: the same sums as whole-array operations
    (symbp.ir.image_ops, each checked to be the index form it names)."""
    d = derive_conv()
    Z, A, D = doc.arr("Z", "l"), doc.arr("A", "l-1"), doc.arr("Delta", "l")
    W, b = doc.arr("W", "l"), doc.arr("b", "l")
    Wd, Ad, RD = doc.dot(W), doc.dot(A), doc.R(D)
    tstar, rot = r"\mathbin{\tilde\star}", r"\operatorname{rot}_{180}"
    back = rf"{D} \mathbin{{\tilde\star}}_{{S,P}} \operatorname{{rot}}_{{180}}\left({W}\right)"
    kernel = rf"\sum_{{s}} {A}_s \star_{{S,P}} {D}_s"
    bias = rf"\left[\sum_{{s,i,j}} {D}_{{s,o,i,j}}\right]_{{o}}"
    return {
        "z": "z_{s,o,i,j} = " + doc.tex(d.z),
        "dz_dW": doc.tex(d.dz_dW),
        "dz_dx": doc.tex(d.dz_dx),
        # the left-hand side on a line of its own: the sums fill a column
        "dW": doc.lines(r"\frac{\partial L}{\partial W_{o',c',p',q'}}", "", "= " + doc.tex(d.dW)),
        "db": doc.lines(r"\frac{\partial L}{\partial b_{o'}}", "", "= " + doc.tex(d.db)),
        "dx": doc.lines(r"\frac{\partial L}{\partial x_{s,c',u,v}}", "", "= " + doc.tex(d.dx)),
        "tangent": doc.display(r"\dot z_{s,o,i,j} = ", d.tangent),
        "box": [
            (Z, rf"{W} \star_{{S,P}} {A} + {b}"),
            (doc.grad(A), back),
            (doc.grad(W), kernel + doc.decay(W)),
            (doc.grad(b), bias),
        ],
        "shapes": [
            rf"{A} \in \mathbb{{R}}^{{n \times C \times h \times w}}",
            rf"{Z}, {D} \in \mathbb{{R}}^{{n \times F \times h_o \times w_o}}",
            rf"{W} \in \mathbb{{R}}^{{F \times C \times k_h \times k_w}}",
            rf"{b} \in \mathbb{{R}}^{{F}}",
        ],
        "r": [
            doc.lines(
                doc.R(doc.grad(A)),
                "",
                rf"= {RD} {tstar}_{{S,P}} {rot}\left({W}\right)",
                rf"+ {D} {tstar}_{{S,P}} {rot}\left({Wd}\right)",
            ),
            doc.lines(
                doc.R(doc.grad(W)),
                "",
                rf"= \sum_{{s}} \left({Ad}_s \star_{{S,P}} {D}_s \right.",
                rf"\left. + {A}_s \star_{{S,P}} {RD}_s\right){doc.decay(Wd)}",
            ),
            doc.R(doc.grad(b))
            + rf" = \left[\sum_{{s,i,j}} \left({RD}\right)_{{s,o,i,j}}\right]_{{o}}",
        ],
        "send": rf"{doc.arr('delta', 'm')} {tstar} {rot}\left({doc.arr('W', 'm')}\right)",
        "grads": [(W, kernel), (b, bias)],
    }
