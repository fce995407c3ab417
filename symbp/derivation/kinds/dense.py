"""dense: z = W a + b (or z = W a without a bias), the seed's layer.

SymPy differentiates z_{i,s} = sum_p W_{i,p} a_{p,s} + b_i in index notation
(symbol.indexed.layer_calculus); the contractions read as matrix products give
dL/dW = delta a^T, dL/db = delta 1 and what goes back to a: W^T delta. Forward mode and
the R-operator come from the same equations moved along a direction (symbp.derivation.tangent).
"""

from __future__ import annotations

import functools
from typing import Any

import sympy as sp

from symbp.derivation.context import Context, Cost, node_symbols
from symbp.derivation.derive import L2_WEIGHT, _per_sample
from symbp.derivation.kinds.notation import weights_notation
from symbp.derivation.tangent import MAT_BD, tangent_calculus
from symbp.ir.bindings import Family, Kind
from symbp.ir.graph import Node
from symbp.ir.naming import PARAMETER_ROLES, ArrayMatrix, Layer, Role, array, matrix
from symbp.symbolic import memo
from symbp.symbolic.indexed import (
    MAT_A,
    MAT_AD,
    MAT_DELTA,
    MAT_RDELTA,
    MAT_W,
    MAT_WD,
    N_BATCH,
    N_IN,
    N_OUT,
    layer_calculus,
)

# z is one product (W a + b), evaluated into one reused array named Z when nothing
# after the layer reads it
Z_IN_ONE_PRODUCT = True
KEYS = ("units", "bias", "tie")


def _bind(ctx: Context, node: Node) -> None:
    l, n_in, n_out = node.index, node.inputs[0].row_size, node.z.row_size
    F = Family
    W, *b = node.params
    w_role = PARAMETER_ROLES[W.symbol]  # W, or the embedding table E a tied layer reads
    assert w_role.direction is not None
    for role, what, family in (
        (w_role, "weights", F.PARAMETER),
        (w_role.direction, "direction of W", F.DIRECTION),
    ):
        at = W.layer
        ctx.bindings.add(array(role, at), Kind.MATRIX, n_out, f"{what} of layer {at}", family, W)
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
        what = f"tangent of a{l - 1}"
        ctx.samples(array(Role.TANGENT_A, l - 1), n_in, what, F.TANGENT, rows=node.inputs[0].rows)


@functools.lru_cache(maxsize=4096)
def _matrices(node: Node, row: bool) -> dict[str, sp.MatrixExpr]:
    """The node's matrices, named by the tensors they are: W and b by their parameters' layer
    (a weight another layer owns keeps its own name), A by the tensor read, Delta by the
    node; per-sample arrays are stored transposed in row layout."""
    n_out, n_in = node.z.row_size, node.inputs[0].row_size
    W, *b = node.params
    layers = (W.layer, b[0].layer if b else None, node.inputs[0].layer, node.index)
    return _matrix_set(row, n_in, n_out, layers, PARAMETER_ROLES[W.symbol])


def _matrix_set(
    row: bool, n_in: Any, n_out: Any, layers: tuple, w_role: Role = Role.WEIGHT
) -> dict[str, sp.MatrixExpr]:
    """W, b, A, Delta and their tangents for the given sizes and (weight, bias, input, node)
    layers: numbers for a node, the general layers for the layer-free forms (a bias layer of
    None means no bias; an input layer of 0, the network's input, has no tangent). w_role:
    the weight's role (a tied layer's weight is an embedding's table E)."""
    w_layer, b_layer, in_layer, layer = layers
    assert w_role.direction is not None

    def stored(role: Role, at: Any, units: Any) -> sp.MatrixExpr:
        if row:
            return matrix(role, at, N_BATCH, units).T
        return matrix(role, at, units, N_BATCH)

    no_bias = sp.ZeroMatrix(n_out, 1)
    return {
        "W": matrix(w_role, w_layer, n_out, n_in),
        "b": no_bias if b_layer is None else matrix(Role.BIAS, b_layer, n_out, 1),
        "A": stored(Role.ACTIVATION, in_layer, n_in),
        "Delta": stored(Role.ERROR, layer, n_out),
        "Wd": matrix(w_role.direction, w_layer, n_out, n_in),
        "bd": no_bias if b_layer is None else matrix(Role.BIAS_DIRECTION, b_layer, n_out, 1),
        "Ad": stored(Role.TANGENT_A, in_layer, n_in)
        if in_layer != 0
        else sp.ZeroMatrix(n_in, N_BATCH),
        "Rdelta": stored(Role.R_ERROR, layer, n_out),
    }


_TANGENT_FORMS = ("z_dot_matrix", "dW_r_matrix", "db_r_matrix", "back_r_matrix")


@functools.lru_cache(maxsize=16)
def _general_tangents(row: bool, bias: bool, from_input: bool) -> tuple[dict, dict]:
    """The tangent matrices on general (layer-free) symbols, simplified once per layout,
    bias and input kind; each node's then come by renaming, with no further SymPy work."""
    G = Layer.GENERAL
    layers = (G, G if bias else None, 0 if from_input else Layer.PREVIOUS, G)
    general = _matrix_set(row, N_IN, N_OUT, layers)
    calc = tangent_calculus()
    names = {MAT_W: general["W"], MAT_A: general["A"], MAT_DELTA: general["Delta"],
             MAT_WD: general["Wd"], MAT_AD: general["Ad"], MAT_RDELTA: general["Rdelta"],
             MAT_BD: general["bd"]}  # fmt: skip
    forms = {k: memo.doit(getattr(calc, k).xreplace(names)) for k in _TANGENT_FORMS}
    return general, forms


def _leaf(m: sp.MatrixExpr) -> sp.MatrixExpr:
    return m.arg if isinstance(m, sp.Transpose) else m


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
    sym = _matrices(node, row)
    general, forms = _general_tangents(row, node.layer.bias, node.inputs[0].layer == 0)
    rename = {
        _leaf(general[k]): _leaf(sym[k])
        for k in general
        if isinstance(_leaf(general[k]), ArrayMatrix)
    }
    rename.update({N_IN: node.inputs[0].row_size, N_OUT: node.z.row_size})

    def put(form: str) -> sp.MatrixExpr:
        return forms[form].xreplace(rename)

    z_dot = _per_sample(put("z_dot_matrix"), row)
    dW_r = put("dW_r_matrix")
    if ctx.decays(node.params[0], node):
        dW_r = dW_r + L2_WEIGHT * sym["Wd"]
    r_grads = [(node.params[0], dW_r)]
    if node.layer.bias:
        r_grads.append((node.params[1], put("db_r_matrix")))
    r_backs = []
    if node.inputs[0].layer > 0:
        r_backs.append((node.inputs[0], _per_sample(put("back_r_matrix"), row)))
    return ((array(Role.TANGENT_Z, l), z_dot),), tuple(r_grads), tuple(r_backs)


def cost(node: Node) -> Cost:
    """W a: n_l n_(l-1) per sample (at each of a sequence's positions); backward delta a^T
    for dW, and W^T delta unless it reads the network's input (whose error nobody needs)."""
    rows = node.z.shape[0] if node.z.sequence else 1
    products = rows * node.z.row_size * node.inputs[0].row_size
    return Cost(products, products * (2 if node.inputs[0].layer > 0 else 1))


FRAGMENT = "dense"
# The general layer's indexed arrays in the document, with the layer each belongs to: the
# layer reads a^(l-1) and owns W^(l), b^(l), delta^(l).
_OWN = {
    "a": r"a^{(\ell-1)}",
    "W": r"W^{(\ell)}",
    "delta": r"\delta^{(\ell)}",
    "ad": r"\dot{a}^{(\ell-1)}",
    "Wd": r"\dot{W}^{(\ell)}",
    "Rdelta": r"\mathcal{R}\delta^{(\ell)}",
    "n_out": r"n_{\ell}",
}


def notation(kind: str, doc: Any) -> list[tuple[str, str]]:
    """The symbols the kind adds to the document's notation table."""
    return [weights_notation(doc)]


def document_labels(kind: str) -> tuple[str, ...]:
    """The numbered equations of the kind's section, in order (the box last)."""
    return ("eq:dense-index", "eq:dense-sums", "eq:dense-box")


def tangent_labels(kind: str) -> tuple[str, ...]:
    return ("eq:dense-tangent", "eq:dense-r")


def document_section(kind: str, doc: Any) -> dict:
    """SymPy's index derivation (unit i, sample s), and the box: the same sums as matrix
    products for the batch, in the document's layout, printed from SymPy's matrix forms."""
    calc, tcalc = layer_calculus(), tangent_calculus()
    G = Layer.GENERAL
    general = _matrix_set(doc.row, N_IN, N_OUT, (G, G, Layer.PREVIOUS, G))
    names = {MAT_W: general["W"], MAT_A: general["A"], MAT_DELTA: general["Delta"]}
    z = _per_sample(_pre_activation(sp.Tuple(general["W"], general["A"], general["b"])), doc.row)
    back = _per_sample(calc.da_matrix.xreplace(names), doc.row)
    dW = memo.doit(calc.dW_matrix.xreplace(names))
    db = memo.doit(calc.db_matrix.xreplace(names))
    Z, A, D = doc.arr("Z", "l"), doc.arr("A", "l-1"), doc.arr("Delta", "l")
    W, b = doc.arr("W", "l"), doc.arr("b", "l")
    shape = r"n \times {}" if doc.row else r"{} \times n"
    t = doc.tex
    # the summary's per-sample form: sums over the samples s of outer products
    delta, a_in, w = doc.arr("delta", "l"), doc.arr("a", "l-1"), doc.arr("W", "l")
    s_in, s_out = shape.format(r"n_{\ell-1}"), shape.format(r"n_{\ell}")
    return {
        "index": [
            "z_{i,s} = " + t(calc.z_def, names=_OWN),
            *doc.together(
                r"\frac{\partial z_{i,s}}{\partial W_{q,r}} = " + t(calc.dz_dW, names=_OWN),
                r"\frac{\partial z_{i,s}}{\partial b_{q}} = "
                + t(calc.dz_db, names=_OWN)
                + r", \qquad \frac{\partial z_{i,s}}{\partial a_{r,s}} = "
                + t(calc.dz_da, names=_OWN),
            ),
        ],
        "sums": [
            r"\frac{\partial L}{\partial a^{(\ell-1)}_{r,s}} = " + t(calc.dL_da, names=_OWN),
            *doc.together(
                r"\frac{\partial L}{\partial W^{(\ell)}_{q,r}} = " + t(calc.dL_dW, names=_OWN),
                r"\frac{\partial L}{\partial b^{(\ell)}_{q}} = " + t(calc.dL_db, names=_OWN),
            ),
        ],
        "box": [
            (Z, t(z, batch=True)),
            (doc.grad(A), t(back, batch=True)),
            (doc.grad(W), t(dW, batch=True) + doc.decay(W)),
            (doc.grad(b), t(db, batch=True)),
        ],
        "shapes": [
            rf"{A} \in \mathbb{{R}}^{{{s_in}}}",
            rf"{Z}, {D} \in \mathbb{{R}}^{{{s_out}}}",
            rf"{W} \in \mathbb{{R}}^{{n_{{\ell}} \times n_{{\ell-1}}}}",
            rf"{b} \in \mathbb{{R}}^{{n_{{\ell}}}}",
        ],
        "z_dot": doc.display(r"\dot z_{i,s} = ", tcalc.z_dot, names=_OWN),
        "back_r": doc.display(
            doc.R(r"\frac{\partial L}{\partial a^{(\ell-1)}_{r,s}}"),
            tcalc.back_r,
            names=_OWN,
            stack=True,
        ),
        "dW_r": doc.display(
            doc.R(r"\frac{\partial L}{\partial W^{(\ell)}_{q,r}}"),
            tcalc.dW_r + (L2_WEIGHT * sp.Symbol(r"\dot{W}^{(\ell)}_{q,r}") if doc.l2 else 0),
            names=_OWN,
            stack=True,
        ),
        "db_r": doc.display(
            doc.R(r"\frac{\partial L}{\partial b^{(\ell)}_{q}}"),
            tcalc.db_r,
            names=_OWN,
            stack=True,
        ),
        "send": rf"\left({doc.arr('W', 'm')}\right){doc.t} {doc.arr('delta', 'm')}",
        "grads": [
            (
                w,
                rf"\sum_{{s}} {delta}_s \left({a_in}_s\right){doc.t}{doc.decay(w)}",
            ),
            (doc.arr("b", "l"), rf"\sum_{{s}} {doc.arr('delta', 'l')}_s"),
        ],
    }
