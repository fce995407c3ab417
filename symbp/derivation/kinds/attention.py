"""attention: multi-head self-attention over the positions of a sequence.

With A the layer's input (one row per position) and d_h = d / heads:
Q = A Wq^T + 1 bq^T (K, V alike); for each sample and head h, S_h = Q_h K_h^T / sqrt(d_h)
(-inf above the diagonal when causal), P_h = softmax of each row of S_h, O_h = P_h V_h; the
output Z = O Wo^T + 1 bo^T, O the heads side by side (torch.nn.MultiheadAttention with
batch_first, in_proj_weight = cat(Wq, Wk, Wv), out_proj.weight = Wo).

SymPy derives (attention_calculus, on small explicit instances, each checked): from O = P V,
dL/dV = P^T dO and dL/dP = dO V^T; from the row softmax, dL/dS_ij = P_ij (dP_ij - sum_k dP_ik
P_ik), whose rows sum to zero; sum_k dP_ik P_ik = sum_c dO_ic O_ic (the identity FlashAttention
uses, O(T d_h) per row; the code takes the left side from dP, which it forms anyway: see
backward_steps); from S = Q K^T / sqrt(d_h), dL/dQ = dS K / sqrt(d_h),
dL/dK = dS^T Q / sqrt(d_h). The four projections are dense layers (symbp.symbolic.indexed's
calculus, renamed). The causal mask needs no backward step: P is 0 where it applies, and so
are dS and every tangent there.

Cost rule for P: the forward pass keeps the probabilities (heads T^2 per sample) for the
backward pass rather than recomputing them from Q and K, which would cost a second T^2 d
product per sample; at the sizes symbp allows (heads T^2 <= 16,000,000) keeping them wins.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sympy as sp

from symbp.derivation.context import Context, Cost, node_symbols
from symbp.derivation.derive import L2_WEIGHT, _per_sample
from symbp.derivation.kinds.dense import _general_tangents, _leaf, _pre_activation
from symbp.errors import DerivationError
from symbp.ir.attention_ops import (
    HeadMix,
    HeadMixT,
    HeadOuter,
    HeadRowSum,
    HeadSoftmax,
    attention_geometry,
)
from symbp.ir.bindings import Family, Kind
from symbp.ir.graph import Node, Tensor
from symbp.ir.naming import ArrayMatrix, Role, array, matrix
from symbp.symbolic import memo
from symbp.symbolic.indexed import MAT_A, MAT_DELTA, MAT_W, N_BATCH, N_IN, N_OUT, layer_calculus

Z_IN_ONE_PRODUCT = False
KEYS = ("heads", "causal", "bias")

# ------------------------------------------------------------------ SymPy's derivation


@dataclass(frozen=True)
class AttentionCalculus:
    """SymPy's local derivatives of one head, each checked on an explicit instance."""

    softmax_vjp: sp.Expr  # dL/ds_j of p = softmax(s) against g, in p and g
    row_sum: sp.Expr  # sum_j of softmax_vjp with sum_j p_j = 1: 0
    identity: sp.Expr  # sum_k dP_ik P_ik - sum_c dO_ic O_ic with O = P V, dP = dO V^T: 0

    def __repr__(self) -> str:
        return f"AttentionCalculus(dL/ds_j = {self.softmax_vjp})"


@functools.lru_cache(maxsize=1)
def attention_calculus() -> AttentionCalculus:
    """Differentiate the head's equations with SymPy on explicit 3-position instances and
    check the forms the code evaluates (a wrong form raises DerivationError)."""
    T, dh = 3, 2
    s = sp.symbols("s1:4", real=True)
    g = sp.symbols("g1:4", real=True)
    p_sym = sp.symbols("p1:4", positive=True)
    total = sum(sp.exp(v) for v in s)
    probs = [sp.exp(v) / total for v in s]
    # dL/ds_j = sum_i g_i dp_i/ds_j, by sympy.diff of the softmax
    raw = [sum(g[i] * sp.diff(probs[i], s[j]) for i in range(T)) for j in range(T)]
    form = [p_sym[j] * (g[j] - sum(g[i] * p_sym[i] for i in range(T))) for j in range(T)]
    at = dict(zip(p_sym, probs, strict=True))
    if any(sp.simplify(r - f.subs(at)) != 0 for r, f in zip(raw, form, strict=True)):
        raise DerivationError("the softmax's vector-Jacobian product came out otherwise")
    row_sum = sp.expand(sum(form).subs(p_sym[-1], 1 - sum(p_sym[:-1])))
    if row_sum != 0:
        raise DerivationError(f"a row of dS sums to {row_sum}, not 0")
    # O = P V, dP = dO V^T (sympy.diff of sum dO O against P), and the identity
    P = sp.Matrix(T, T, lambda i, j: sp.Symbol(f"P{i}{j}"))
    V = sp.Matrix(T, dh, lambda i, j: sp.Symbol(f"V{i}{j}"))
    dO = sp.Matrix(T, dh, lambda i, j: sp.Symbol(f"G{i}{j}"))
    O = P * V
    loss = sum(dO[i, c] * O[i, c] for i in range(T) for c in range(dh))
    dP = sp.Matrix(T, T, lambda i, j: sp.diff(loss, P[i, j]))
    dV = sp.Matrix(T, dh, lambda i, j: sp.diff(loss, V[i, j]))
    if (dP - dO * V.T).expand() != sp.zeros(T, T) or (dV - P.T * dO).expand() != sp.zeros(T, dh):
        raise DerivationError("dL/dP or dL/dV of O = P V came out otherwise")
    identity = sp.expand(
        sum(dP[0, k] * P[0, k] for k in range(T)) - sum(dO[0, c] * O[0, c] for c in range(dh))
    )
    if identity != 0:
        raise DerivationError(f"rowsum(dP P) - rowsum(dO O) came out as {identity}")
    # S = c Q K^T: dL/dQ = c dS K, dL/dK = c dS^T Q
    c = sp.Symbol("c", positive=True)
    Q = sp.Matrix(T, dh, lambda i, j: sp.Symbol(f"Q{i}{j}"))
    K = sp.Matrix(T, dh, lambda i, j: sp.Symbol(f"K{i}{j}"))
    dS = sp.Matrix(T, T, lambda i, j: sp.Symbol(f"D{i}{j}"))
    S = c * Q * K.T
    loss = sum(dS[i, j] * S[i, j] for i in range(T) for j in range(T))
    dQ = sp.Matrix(T, dh, lambda i, j: sp.diff(loss, Q[i, j]))
    dK = sp.Matrix(T, dh, lambda i, j: sp.diff(loss, K[i, j]))
    if (dQ - c * dS * K).expand() != sp.zeros(T, dh) or (dK - c * dS.T * Q).expand() != sp.zeros(
        T, dh
    ):
        raise DerivationError("dL/dQ or dL/dK of S = c Q K^T came out otherwise")
    return AttentionCalculus(form[0], row_sum, identity)


# ------------------------------------------------------------------ the node's arrays


def _geometry(node: Node) -> sp.Tuple:
    T, d = node.z.shape
    return attention_geometry(T, d, node.layer.heads, node.layer.causal)


def _scale(node: Node) -> sp.Expr:
    """1 / sqrt(d_h)."""
    return 1 / sp.sqrt(sp.Integer(node.z.shape[1] // node.layer.heads))


_PARTS = "qkvo"
_PER_SAMPLE = {
    # role: (what, family, wide: one entry per score rather than per feature)
    Role.QUERY: ("queries", Family.FORWARD, False),
    Role.KEY: ("keys", Family.FORWARD, False),
    Role.VALUE: ("values", Family.FORWARD, False),
    Role.PROBS: ("attention probabilities", Family.FORWARD, True),
    Role.MIXED: ("the heads' outputs", Family.FORWARD, False),
    Role.D_MIXED: ("dL/dO", Family.BACKWARD, False),
    Role.D_PROBS: ("dL/dP", Family.BACKWARD, True),
    Role.D_SCORES: ("dL/dS", Family.BACKWARD, True),
    Role.D_QUERY: ("dL/dQ", Family.BACKWARD, False),
    Role.D_KEY: ("dL/dK", Family.BACKWARD, False),
    Role.D_VALUE: ("dL/dV", Family.BACKWARD, False),
    Role.QUERY_TANGENT: ("tangent of Q", Family.TANGENT, False),
    Role.KEY_TANGENT: ("tangent of K", Family.TANGENT, False),
    Role.VALUE_TANGENT: ("tangent of V", Family.TANGENT, False),
    Role.SCORES_TANGENT: ("tangent of S", Family.TANGENT, True),
    Role.PROBS_TANGENT: ("tangent of P", Family.TANGENT, True),
    Role.MIXED_TANGENT: ("tangent of O", Family.TANGENT, False),
    Role.R_MIXED: ("R{dL/dO}", Family.R, False),
    Role.R_PROBS: ("R{dL/dP}", Family.R, True),
    Role.R_SCORES: ("R{dL/dS}", Family.R, True),
    Role.R_QUERY: ("R{dL/dQ}", Family.R, False),
    Role.R_KEY: ("R{dL/dK}", Family.R, False),
    Role.R_VALUE: ("R{dL/dV}", Family.R, False),
}


def _arr(ctx: Context, node: Node, role: Role) -> sp.Symbol:
    """One of the layer's per-row arrays, bound: d entries a row, or heads T for scores."""
    what, family, wide = _PER_SAMPLE[role]
    T, d = node.z.shape
    units = node.layer.heads * T if wide else d
    what = f"{what} of layer {node.index}"
    return ctx.samples(array(role, node.index), units, what, family, rows=T)


def _stored(ctx: Context, role: Role, layer: int, units: int) -> sp.MatrixExpr:
    """A per-row array as a matrix in the column convention of the dense calculus."""
    if ctx.row:
        return matrix(role, layer, N_BATCH, units).T
    return matrix(role, layer, units, N_BATCH)


def _param(ctx: Context, node: Node, symbol: str, direction: bool = False) -> Any:
    """Wq<l> ... bo<l> as matrices (0 for a missing bias), bound as the code holds them."""
    found = [p for p in node.params if p.symbol == symbol]
    d = node.z.shape[1]
    if not found:  # the four weights always exist: a bias the layer does not have
        return sp.ZeroMatrix(d, 1)
    p = found[0]
    weight = len(p.shape) == 2
    rows, cols = p.shape if weight else (d, 1)
    role = Role(symbol)
    if direction:
        assert role.direction is not None
        role = role.direction
    family = Family.DIRECTION if direction else Family.PARAMETER
    what = f"{'direction of ' if direction else ''}{symbol} of layer {node.index}"
    kind = Kind.MATRIX if weight else Kind.UNITS
    ctx.bindings.add(array(role, p.layer), kind, d, what, family, p)
    return matrix(role, p.layer, rows, cols)


@dataclass(frozen=True)
class _Projection:
    """One dense projection of the layer: its weight and bias, the matrix it reads, the
    error of its output, and their tangents and R's (column convention)."""

    param: tuple[Tensor, Tensor | None]  # W, b
    W: Any
    b: Any
    A: sp.MatrixExpr
    Delta: sp.MatrixExpr
    Wd: Any
    bd: Any
    Ad: Any
    Rdelta: sp.MatrixExpr
    from_input: bool


def _projection(ctx: Context, node: Node, part: str) -> _Projection:
    d, l = node.z.shape[1], node.index
    x = node.inputs[0]
    out_role = {"q": Role.D_QUERY, "k": Role.D_KEY, "v": Role.D_VALUE}.get(part)
    r_role = {"q": Role.R_QUERY, "k": Role.R_KEY, "v": Role.R_VALUE}.get(part)
    if part == "o":  # reads the heads' outputs O, writes z: its error is delta
        A = _stored(ctx, Role.MIXED, l, d)
        Ad = _stored(ctx, Role.MIXED_TANGENT, l, d)
        Delta = _stored(ctx, Role.ERROR, l, d)
        Rdelta = _stored(ctx, Role.R_ERROR, l, d)
        from_input = False
    else:
        assert out_role is not None and r_role is not None
        A = _stored(ctx, Role.ACTIVATION, x.layer, d)
        from_input = x.layer == 0
        Ad = sp.ZeroMatrix(d, N_BATCH) if from_input else _stored(ctx, Role.TANGENT_A, x.layer, d)
        Delta = _stored(ctx, out_role, l, d)
        Rdelta = _stored(ctx, r_role, l, d)
    W_t = next(p for p in node.params if p.symbol == f"W{part}")
    b_t = next((p for p in node.params if p.symbol == f"b{part}"), None)
    return _Projection(
        (W_t, b_t),
        _param(ctx, node, f"W{part}"),
        _param(ctx, node, f"b{part}"),
        A,
        Delta,
        _param(ctx, node, f"W{part}", True),
        _param(ctx, node, f"b{part}", True),
        Ad,
        Rdelta,
        from_input,
    )


def _output(pr: _Projection, row: bool) -> sp.MatrixExpr:
    """W A + b 1^T, stored per row."""
    return _per_sample(_pre_activation(sp.Tuple(pr.W, pr.A, pr.b)), row)


def _calculus_names(pr: _Projection) -> dict:
    return {MAT_W: pr.W, MAT_A: pr.A, MAT_DELTA: pr.Delta}


def _tangent_form(pr: _Projection, row: bool, form: str, d: int) -> sp.MatrixExpr:
    """A form of the dense tangent calculus (z', R{dW}, R{db}, R{back}) for the projection."""
    general, forms = _general_tangents(row, not isinstance(pr.b, sp.ZeroMatrix), pr.from_input)
    own = {"W": pr.W, "b": pr.b, "A": pr.A, "Delta": pr.Delta, "Wd": pr.Wd, "bd": pr.bd,
           "Ad": pr.Ad, "Rdelta": pr.Rdelta}  # fmt: skip
    rename = {
        _leaf(general[k]): _leaf(own[k])
        for k in general
        if isinstance(_leaf(general[k]), ArrayMatrix) and isinstance(_leaf(own[k]), ArrayMatrix)
    }
    rename.update({N_IN: d, N_OUT: d})
    return forms[form].xreplace(rename)


# ------------------------------------------------------------------ the kind's contract


def forward(ctx: Context, node: Node) -> tuple:
    """Q, K, V; the probabilities P (kept: see the cost rule above); the heads' outputs O;
    z = O Wo^T + bo."""
    attention_calculus()
    g, c = _geometry(node), _scale(node)
    ctx.activation_symbol(node.inputs[0])
    q, k, v, o = (_projection(ctx, node, part) for part in _PARTS)
    Q, K, V = (_arr(ctx, node, r) for r in (Role.QUERY, Role.KEY, Role.VALUE))
    P, O = _arr(ctx, node, Role.PROBS), _arr(ctx, node, Role.MIXED)
    s = node_symbols(ctx, node)
    return (
        (Q, _output(q, ctx.row)),
        (K, _output(k, ctx.row)),
        (V, _output(v, ctx.row)),
        (P, HeadSoftmax(c * HeadOuter(Q, K, g), g)),
        (O, HeadMix(P, V, g)),
        (s[Role.PRE_ACTIVATION], _output(o, ctx.row)),
    )


def backward_steps(ctx: Context, node: Node) -> tuple:
    """dO = delta Wo; dV = P^T dO; dP = dO V^T; dS = P (dP - rowsum(dP P)) / sqrt(d_h) (the
    softmax's VJP); dQ = dS K, dK = dS^T Q (the 1/sqrt(d_h) is in dS).

    The row sum is taken from dP itself, which the step forms anyway, not as rowsum(dO O):
    the two are equal (attention_calculus proves it), but at large scores they round
    differently and dP - rowsum then no longer cancels where it must (a single position:
    dS = 0 exactly), which the fuzzer found at inputs x1000."""
    g, c = _geometry(node), _scale(node)
    o = _projection(ctx, node, "o")
    Q, K, V, P = (_arr(ctx, node, r) for r in (Role.QUERY, Role.KEY, Role.VALUE, Role.PROBS))
    backs = (Role.D_MIXED, Role.D_PROBS, Role.D_SCORES, Role.D_QUERY, Role.D_KEY, Role.D_VALUE)
    dO, dP, dS, dQ, dK, dV = (_arr(ctx, node, r) for r in backs)
    calc = layer_calculus()
    back_o = _per_sample(calc.da_matrix.xreplace(_calculus_names(o)), ctx.row)
    return (
        (dO, back_o),
        (dV, HeadMixT(P, dO, g)),
        (dP, HeadOuter(dO, V, g)),
        (dS, c * P * (dP - HeadRowSum(P * dP, g))),
        (dQ, HeadMix(dS, K, g)),
        (dK, HeadMixT(dS, Q, g)),
    )


def _grads(ctx: Context, node: Node, pr: _Projection) -> list:
    calc = layer_calculus()
    names = _calculus_names(pr)
    W, b = pr.param
    dW = memo.doit(calc.dW_matrix.xreplace(names))
    if ctx.decays(W, node):
        dW = dW + L2_WEIGHT * pr.W
    out = [(W, dW)]
    if b is not None:
        out.append((b, memo.doit(calc.db_matrix.xreplace(names))))
    return out


def backward(ctx: Context, node: Node) -> tuple[tuple, tuple]:
    """The four projections' gradients; to the input, dQ Wq + dK Wk + dV Wv."""
    calc = layer_calculus()
    grads, back = [], []
    for part in _PARTS:
        pr = _projection(ctx, node, part)
        grads += _grads(ctx, node, pr)
        if part != "o":
            back.append(_per_sample(calc.da_matrix.xreplace(_calculus_names(pr)), ctx.row))
    backs = ((node.inputs[0], sp.Add(*back)),) if node.inputs[0].layer > 0 else ()
    return tuple(grads), backs


def tangents(ctx: Context, node: Node) -> tuple[tuple, tuple, tuple]:
    """Q', K', V' (the dense tangents); S' = (Q' K^T + Q K'^T) / sqrt(d_h); P' = P (S' -
    rowsum(P S')); O' = P' V + P V'; z' = the output projection's tangent. The R-operator:
    each projection's R{dW}, R{db} and R{back} (the dense forms), with r_steps' R{dQ}..."""
    g, c, d, row = _geometry(node), _scale(node), node.z.shape[1], ctx.row
    prs = {part: _projection(ctx, node, part) for part in _PARTS}
    Q, K, V, P = (_arr(ctx, node, r) for r in (Role.QUERY, Role.KEY, Role.VALUE, Role.PROBS))
    Qd, Kd, Vd, Sd, Pd, Od = (_arr(ctx, node, r) for r in (
        Role.QUERY_TANGENT, Role.KEY_TANGENT, Role.VALUE_TANGENT, Role.SCORES_TANGENT,
        Role.PROBS_TANGENT, Role.MIXED_TANGENT))  # fmt: skip
    s = node_symbols(ctx, node)
    tangent = (
        (Qd, _per_sample(_tangent_form(prs["q"], row, "z_dot_matrix", d), row)),
        (Kd, _per_sample(_tangent_form(prs["k"], row, "z_dot_matrix", d), row)),
        (Vd, _per_sample(_tangent_form(prs["v"], row, "z_dot_matrix", d), row)),
        (Sd, c * (HeadOuter(Qd, K, g) + HeadOuter(Q, Kd, g))),
        (Pd, P * (Sd - HeadRowSum(P * Sd, g))),
        (Od, HeadMix(Pd, V, g) + HeadMix(P, Vd, g)),
        (s[Role.TANGENT_Z], _per_sample(_tangent_form(prs["o"], row, "z_dot_matrix", d), row)),
    )
    r_grads, r_back = [], []
    for part, pr in prs.items():
        W, b = pr.param
        dW_r = _tangent_form(pr, row, "dW_r_matrix", d)
        if ctx.decays(W, node):
            dW_r = dW_r + L2_WEIGHT * pr.Wd
        r_grads.append((W, dW_r))
        if b is not None:
            r_grads.append((b, _tangent_form(pr, row, "db_r_matrix", d)))
        if part != "o":
            r_back.append(_per_sample(_tangent_form(pr, row, "back_r_matrix", d), row))
    r_backs = ((node.inputs[0], sp.Add(*r_back)),) if node.inputs[0].layer > 0 else ()
    return tangent, tuple(r_grads), r_backs


def r_steps(ctx: Context, node: Node) -> tuple:
    """R{dO} (the output projection's R{back}); R{dV} = P'^T dO + P^T R{dO}; R{dP} = R{dO}
    V^T + dO V'^T; R{dS} by the product rule on dS; R{dQ} = R{dS} K + dS K', R{dK} =
    R{dS}^T Q + dS^T Q'."""
    g, c, d, row = _geometry(node), _scale(node), node.z.shape[1], ctx.row
    o = _projection(ctx, node, "o")
    Q, K, V, P = (_arr(ctx, node, r) for r in (Role.QUERY, Role.KEY, Role.VALUE, Role.PROBS))
    tangent = (Role.QUERY_TANGENT, Role.KEY_TANGENT, Role.VALUE_TANGENT, Role.PROBS_TANGENT)
    Qd, Kd, Vd, Pd = (_arr(ctx, node, r) for r in tangent)
    dO, dP, dS = (_arr(ctx, node, r) for r in (Role.D_MIXED, Role.D_PROBS, Role.D_SCORES))
    rs = (Role.R_MIXED, Role.R_PROBS, Role.R_SCORES, Role.R_QUERY, Role.R_KEY, Role.R_VALUE)
    RdO, RdP, RdS, RdQ, RdK, RdV = (_arr(ctx, node, r) for r in rs)
    r_dS = c * (Pd * (dP - HeadRowSum(P * dP, g)) + P * (RdP - HeadRowSum(RdP * P + dP * Pd, g)))
    return (
        (RdO, _per_sample(_tangent_form(o, row, "back_r_matrix", d), row)),
        (RdV, HeadMixT(Pd, dO, g) + HeadMixT(P, RdO, g)),
        (RdP, HeadOuter(RdO, V, g) + HeadOuter(dO, Vd, g)),
        (RdS, r_dS),
        (RdQ, HeadMix(RdS, K, g) + HeadMix(dS, Kd, g)),
        (RdK, HeadMixT(RdS, Q, g) + HeadMixT(dS, Qd, g)),
    )


def cost(node: Node) -> Cost:
    """Multiply-adds per sample: the four projections (4 T d^2) and the two T^2 d products
    forward; backward, the projections' weight gradients and inputs (8 T d^2, 6 when it
    reads the network's input) and four T^2 d products."""
    T, d = node.z.shape
    projections, heads = T * d * d, T * T * d
    back = 8 if node.inputs[0].layer > 0 else 5
    return Cost(4 * projections + 2 * heads, back * projections + 4 * heads)


FRAGMENT = "attention"


def notation(kind: str, doc: Any) -> list[tuple[str, str]]:
    return [
        (r"$Q, K, V, O$; $S_h, P_h$; $d_h$",
         "an attention layer's queries, keys, values, heads' outputs ($n \\times d$); one "
         "sample's scores and probabilities of head $h$ ($T \\times T$); $d / \\text{heads}$"),
        (r"$X_h$", "columns $h d_h$ to $(h+1) d_h - 1$ of $X$, one sample's rows"),
    ]  # fmt: skip


def document_labels(kind: str) -> tuple[str, ...]:
    return ("eq:attention-forward", "eq:attention-vjp", "eq:attention-box")


def tangent_labels(kind: str) -> tuple[str, ...]:
    return ("eq:attention-tangent",)


def _d(of: str) -> str:
    return rf"\frac{{\partial L}}{{\partial {of}}}"


def _vjp_lines(doc: Any) -> list[str]:
    """The head's derivatives as attention_calculus derives and checks them (two to a line
    on a page-wide line, one in a column)."""
    T = r"^{\mathsf{T}}"
    return [
        *doc.together(rf"{_d('V_h')} = P_h{T} {_d('O_h')}", rf"{_d('P_h')} = {_d('O_h')} V_h{T}"),
        rf"{_d('(S_h)_{ij}')} = (P_h)_{{ij}} \Bigl({_d('(P_h)_{ij}')}"
        rf" - \sum_k {_d('(P_h)_{ik}')} (P_h)_{{ik}}\Bigr)",
        *doc.together(
            rf"\sum_k {_d('(P_h)_{ik}')} (P_h)_{{ik}} = \sum_c {_d('(O_h)_{ic}')} (O_h)_{{ic}}",
            rf"\sum_j {_d('(S_h)_{ij}')} = 0",
        ),
        *doc.together(
            rf"{_d('Q_h')} = {_d('S_h')} \frac{{K_h}}{{\sqrt{{d_h}}}}",
            rf"{_d('K_h')} = \Bigl({_d('S_h')}\Bigr){T} \frac{{Q_h}}{{\sqrt{{d_h}}}}",
        ),
    ]


def document_section(kind: str, doc: Any) -> dict:
    """The head's equations, SymPy's checked derivatives, and the box (row layout)."""
    attention_calculus()
    Z, A, D = doc.arr("Z", "l"), doc.arr("A", "l-1"), doc.arr("Delta", "l")
    W = {p: f"W_{p}^{{(\\ell)}}" for p in _PARTS}
    b = {p: f"b_{p}^{{(\\ell)}}" for p in _PARTS}
    ones = r"\mathbf{1}"
    t = doc.t
    return {
        "forward": [
            rf"Q = {A} \left({W['q']}\right){t} + {ones} \left({b['q']}\right){t}"
            r" \quad (K, V \text{ alike})",
            *doc.together(
                r"S_h = Q_h K_h^{\mathsf{T}} / \sqrt{d_h}", r"P_h = \operatorname{softmax}(S_h)"
            ),
            *doc.together(
                "O_h = P_h V_h",
                rf"{Z} = O \left({W['o']}\right){t} + {ones} \left({b['o']}\right){t}",
            ),
        ],
        "vjp": _vjp_lines(doc),
        "tangent": doc.together(
            r"\dot P_h = P_h \odot \left(\dot S_h - \operatorname{rowsum}(P_h \odot \dot S_h)"
            r"\right)",
            r"\dot O_h = \dot P_h V_h + P_h \dot V_h",
        ),
        "box": [
            (r"\frac{\partial L}{\partial O}", rf"{D} {W['o']}"),
            (doc.grad(W["o"]), rf"\left({D}\right){t} O" + doc.decay(W["o"])),
            (doc.grad(b["o"]), rf"\left({D}\right){t} {ones}"),
            (
                doc.grad(W["q"]),
                rf"\left(\frac{{\partial L}}{{\partial Q}}\right){t} {A}"
                + doc.decay(W["q"])
                + r" \quad (k, v \text{ alike})",
            ),
            (
                doc.grad(b["q"]),
                rf"\left(\frac{{\partial L}}{{\partial Q}}\right){t} {ones}"
                + r" \quad (k, v \text{ alike})",
            ),
            (
                doc.grad(A),
                (
                    rf"\frac{{\partial L}}{{\partial Q}} {W['q']}",
                    rf"+ \frac{{\partial L}}{{\partial K}} {W['k']}",
                    rf"+ \frac{{\partial L}}{{\partial V}} {W['v']}",
                ),
            ),
        ],
        "shapes": [
            rf"{A}, {Z}, {D}, Q, K, V, O \in \mathbb{{R}}^{{n \times d}}",
            r"S_h, P_h \in \mathbb{R}^{T \times T}",
            r"W_p^{(\ell)} \in \mathbb{R}^{d \times d}, \ b_p^{(\ell)} \in \mathbb{R}^{d}",
        ],
        "send": r"\frac{\partial L}{\partial Q} W_q^{(m)} + \frac{\partial L}{\partial K} "
        r"W_k^{(m)} + \frac{\partial L}{\partial V} W_v^{(m)}",
        "grads": [
            (W["q"], rf"\left(\frac{{\partial L}}{{\partial Q}}\right){t} {A}"),
            (b["q"], rf"\left(\frac{{\partial L}}{{\partial Q}}\right){t} {ones}"),
        ],
    }
