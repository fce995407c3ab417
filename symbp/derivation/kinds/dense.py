"""dense: z = W a + b (or z = W a without a bias), the seed's layer.

SymPy differentiates z_{i,s} = sum_p W_{i,p} a_{p,s} + b_i in index notation
(symbol.indexed.layer_calculus); the contractions read as matrix products give
dL/dW = delta a^T, dL/db = delta 1 and what goes back to a: W^T delta. Forward mode and
the R-operator come from the same equations moved along a direction (symbp.derivation.tangent).
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

from symbp.derivation.context import Context, Cost, node_symbols
from symbp.derivation.derive import L2_WEIGHT, _per_sample
from symbp.derivation.tangent import MAT_BD, tangent_calculus
from symbp.ir.bindings import Family, Kind
from symbp.ir.graph import Node
from symbp.ir.naming import Role, array, matrix
from symbp.symbolic import memo
from symbp.symbolic.indexed import (
    MAT_A,
    MAT_AD,
    MAT_DELTA,
    MAT_RDELTA,
    MAT_W,
    MAT_WD,
    N_BATCH,
    layer_calculus,
)

# z is one product (W a + b), evaluated into one reused array named Z when nothing
# after the layer reads it
Z_IN_ONE_PRODUCT = True
KEYS = ("units", "bias")


def _bind(ctx: Context, node: Node) -> None:
    l, n_in, n_out = node.index, node.inputs[0].shape[0], node.z.shape[0]
    F = Family
    W, *b = node.params
    for role, what, family in (
        (Role.WEIGHT, "weights", F.PARAMETER),
        (Role.WEIGHT_DIRECTION, "direction of W", F.DIRECTION),
    ):
        ctx.bindings.add(array(role, l), Kind.MATRIX, n_out, f"{what} of layer {l}", family, W)
    if b:
        for role, what, family in (
            (Role.BIAS, "biases", F.PARAMETER),
            (Role.BIAS_DIRECTION, "direction of b", F.DIRECTION),
        ):
            what = f"{what} of layer {l}"
            ctx.bindings.add(array(role, l), Kind.UNITS, n_out, what, family, b[0])
    ctx.activation_symbol(node.inputs[0])
    node_symbols(ctx, node)
    if l > 1:
        ctx.samples(array(Role.TANGENT_A, l - 1), n_in, f"tangent of a{l - 1}", F.TANGENT)


def _matrices(node: Node, row: bool) -> dict[str, sp.MatrixExpr]:
    """The node's matrices, named by the tensors they are: W and b by their parameters' layer
    (a weight another layer owns keeps its own name), A by the tensor read, Delta by the
    node; per-sample arrays are stored transposed in row layout."""
    (n_out,), (n_in,) = node.z.shape, node.inputs[0].shape
    W, *b = node.params

    def stored(role: Role, layer: int, units: int) -> sp.MatrixExpr:
        if row:
            return matrix(role, layer, N_BATCH, units).T
        return matrix(role, layer, units, N_BATCH)

    return {
        "W": matrix(Role.WEIGHT, W.layer, n_out, n_in),
        "b": matrix(Role.BIAS, b[0].layer, n_out, 1) if b else sp.ZeroMatrix(n_out, 1),
        "A": stored(Role.ACTIVATION, node.inputs[0].layer, n_in),
        "Delta": stored(Role.ERROR, node.index, n_out),
        "Wd": matrix(Role.WEIGHT_DIRECTION, W.layer, n_out, n_in),
        "bd": matrix(Role.BIAS_DIRECTION, b[0].layer, n_out, 1) if b else sp.ZeroMatrix(n_out, 1),
        "Ad": stored(Role.TANGENT_A, node.inputs[0].layer, n_in)
        if node.inputs[0].layer > 0
        else sp.ZeroMatrix(n_in, N_BATCH),
        "Rdelta": stored(Role.R_ERROR, node.index, n_out),
    }


def forward(ctx: Context, node: Node) -> tuple:
    """((Z<l>, W a + b),) in the file's layout."""
    _bind(ctx, node)
    sym = _matrices(node, ctx.row)
    parts = (sym["W"], sym["A"], sym["b"] if node.layer.bias else sp.S.Zero)
    z = memo.renamed(_pre_activation, sp.Tuple(*parts))
    return ((array(Role.PRE_ACTIVATION, node.index), _per_sample(z, ctx.row)),)


def _pre_activation(parts: sp.Tuple) -> sp.MatrixExpr:
    w, a, b = parts.args
    product = w * a
    return product if b == 0 else product + b * sp.OneMatrix(1, N_BATCH)


def backward(ctx: Context, node: Node) -> tuple[tuple, tuple]:
    """(grads, backs): dL/dW (+ lambda W), dL/db; W^T delta to a^(l-1) (none to the input)."""
    calc = layer_calculus()
    sym = _matrices(node, ctx.row)
    names = {MAT_W: sym["W"], MAT_A: sym["A"], MAT_DELTA: sym["Delta"]}
    dW = memo.doit(calc.dW_matrix.xreplace(names))
    if ctx.decays(node.params[0], node):
        dW = dW + L2_WEIGHT * sym["W"]
    W, b = node.params[0], node.params[1:]
    grads = [(W, dW)]
    if b:
        grads.append((b[0], memo.doit(calc.db_matrix.xreplace(names))))
    backs = []
    if node.inputs[0].layer > 0:
        backs.append((node.inputs[0], _per_sample(calc.da_matrix.xreplace(names), ctx.row)))
    return tuple(grads), tuple(backs)


def tangents(ctx: Context, node: Node) -> tuple[tuple, tuple, tuple]:
    """(z' statements, R{grads}, R{backs}), from the layer equation moved along a direction."""
    l, row = node.index, ctx.row
    calc = tangent_calculus()
    sym = _matrices(node, row)
    names = {
        MAT_W: sym["W"],
        MAT_A: sym["A"],
        MAT_DELTA: sym["Delta"],
        MAT_WD: sym["Wd"],
        MAT_AD: sym["Ad"],
        MAT_RDELTA: sym["Rdelta"],
        MAT_BD: sym["bd"],
    }

    def put(expr: sp.MatrixExpr) -> sp.MatrixExpr:
        return memo.doit(expr.xreplace(names))

    z_dot = _per_sample(put(calc.z_dot_matrix), row)
    dW_r = put(calc.dW_r_matrix)
    if ctx.decays(node.params[0], node):
        dW_r = dW_r + L2_WEIGHT * sym["Wd"]
    r_grads = [(node.params[0], dW_r)]
    if node.layer.bias:
        r_grads.append((node.params[1], put(calc.db_r_matrix)))
    r_backs = []
    if node.inputs[0].layer > 0:
        r_backs.append((node.inputs[0], _per_sample(put(calc.back_r_matrix), row)))
    return ((array(Role.TANGENT_Z, l), z_dot),), tuple(r_grads), tuple(r_backs)


def cost(node: Node) -> Cost:
    """W a: n_l n_(l-1) per sample; backward delta a^T for dW, and W^T delta unless it
    reads the network's input (whose error nobody needs)."""
    products = node.z.shape[0] * node.inputs[0].shape[0]
    return Cost(products, products * (2 if node.inputs[0].layer > 0 else 1))


def document_section(kind: str, eq: dict[str, int], tex: Callable[..., str]) -> None:
    """None: the dense layer is the seed's, derived in the document's general section."""
    return None
