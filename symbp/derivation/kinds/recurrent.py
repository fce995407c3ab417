"""rnn, lstm, gru: a recurrent layer over the positions of a sequence (PyTorch's
nn.RNN / nn.LSTM / nn.GRU with batch_first, one layer, zero initial states).

With A the layer's input (one row per position) and G the cell's gates (1; 4: i, f, g, o;
3: r, z, n), the layer computes U = A W_ih^T + 1 b_ih^T for every step at once (one product,
(n T, G h)), then for t = 1..T v_t = h_(t-1) W_hh^T + b_hh and the cell's step (SymPy
statements, symbp.symbolic.cells) on (u_t, v_t, the carries of t-1). Its output z is every
step's h, or with `return: last` h_T alone.

Backpropagation through time: the cell's backward step (reverse mode over its statements,
SymPy's local partials) gives, per step, dL/du_t and dL/dv_t from dL/dh_t (what the layers
above send, plus dL/dv_(t+1) W_hh from the step after) and the other carries' errors. The
shared weights' gradients are sums over t, each one product over all rows after the loop:
dL/dW_ih = dU^T A, dL/db_ih = dU^T 1, dL/dW_hh = dV^T H_(-1) (h_(t-1) in row t, zero for t
= 1), dL/db_hh = dV^T 1; the input gets dU W_ih. These are the dense layer's calculus
(symbp.symbolic.indexed) with U, V in the place of z.

Cost rule: each step keeps what its backward step, tangent and R-step read (Cell.kept: the
gates' values, c and tanh(c) for an lstm), (n T, blocks h), so the backward loop multiplies
nothing but dV_t W_hh.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from symbp.derivation.context import Context, Cost, node_symbols
from symbp.derivation.derive import L2_WEIGHT, _per_sample
from symbp.derivation.kinds.dense import _pre_activation
from symbp.ir.bindings import Family, Kind
from symbp.ir.graph import Node
from symbp.ir.naming import PARAMETER_ROLES, Role, array, matrix
from symbp.ir.recurrent_ops import (
    GateErrors,
    HiddenGateErrors,
    PreviousOutputs,
    RecurrentBackward,
    RecurrentForward,
    RecurrentOutput,
    RecurrentRBackward,
    RecurrentTangent,
    recurrent_geometry,
)
from symbp.symbolic import memo
from symbp.symbolic.cells import Cell, cell
from symbp.symbolic.indexed import MAT_A, MAT_DELTA, MAT_W, N_BATCH, layer_calculus

Z_IN_ONE_PRODUCT = False
KEYS = ("units", "return", "bias", "nonlinearity")


def cell_of(node: Node) -> Cell:
    """The node's cell: rnn_tanh, rnn_relu, lstm or gru."""
    kind = node.kind
    return cell(f"rnn_{node.layer.nonlinearity}" if kind == "rnn" else kind)


def _sizes(node: Node) -> tuple[int, int, int, int]:
    """T, d (the input's features), h (the units), G (the gates)."""
    T, d = node.inputs[0].shape[0], node.inputs[0].shape[-1]
    return T, d, node.z.shape[-1], cell_of(node).G


def _geometry(node: Node) -> sp.Tuple:
    c = cell_of(node)
    T, _, h, G = _sizes(node)
    last = node.layer.returns == "last"
    return recurrent_geometry(T, h, c.width(), len(c.carries), last, c.summed, G, c.name)


# the per-row arrays of the layer: role -> (what, family, width: "G" (G h), "kept"
# (blocks h), "errors" (G h, or 2 G h unless summed) or "h")
_ARRAYS: dict[Role, tuple[str, Family, str]] = {
    Role.GATES_IN: ("x_t W_ih^T + b_ih, every step", Family.FORWARD, "G"),
    Role.RECURRENT: ("each step's kept values", Family.FORWARD, "kept"),
    Role.D_GATES: ("dL/du and dL/dv of every step", Family.BACKWARD, "errors"),
    Role.D_GATES_IN: ("dL/du of every step", Family.BACKWARD, "G"),
    Role.D_GATES_HIDDEN: ("dL/dv of every step", Family.BACKWARD, "G"),
    Role.PREVIOUS_H: ("h_(t-1) of every step", Family.BACKWARD, "h"),
    Role.GATES_IN_TANGENT: ("tangent of U", Family.TANGENT, "G"),
    Role.RECURRENT_TANGENT: ("tangent of the kept values", Family.TANGENT, "kept"),
    Role.R_GATES: ("R{dL/du} and R{dL/dv}", Family.R, "errors"),
    Role.R_GATES_IN: ("R{dL/du}", Family.R, "G"),
    Role.R_GATES_HIDDEN: ("R{dL/dv}", Family.R, "G"),
    Role.PREVIOUS_H_TANGENT: ("tangent of h_(t-1)", Family.R, "h"),
}


def _arr(ctx: Context, node: Node, role: Role) -> sp.Symbol:
    what, family, width = _ARRAYS[role]
    c = cell_of(node)
    T, _, h, G = _sizes(node)
    units = {"G": G * h, "kept": c.width() * h, "errors": G * h * (1 if c.summed else 2),
             "h": h}[width]  # fmt: skip
    if c.summed and role in (Role.D_GATES_HIDDEN, Role.R_GATES_HIDDEN):
        role = {Role.D_GATES_HIDDEN: Role.D_GATES_IN, Role.R_GATES_HIDDEN: Role.R_GATES_IN}[role]
        what = _ARRAYS[role][0]
    return ctx.samples(array(role, node.index), units, f"{what} of layer {node.index}",
                       family, rows=T)  # fmt: skip


def _rows(ctx: Context, node: Node, role: Role) -> sp.MatrixExpr:
    """A per-row array as a matrix in the column convention of the dense calculus."""
    symbol = _arr(ctx, node, role)
    info = ctx.bindings.info(symbol)
    assert info is not None
    units = info.units
    return matrix(symbol.role, node.index, N_BATCH, units).T


def _input_rows(ctx: Context, node: Node, tangent: bool = False) -> Any:
    """A^(l-1) (or its tangent, 0 for the network's input) in the column convention."""
    x = node.inputs[0]
    ctx.activation_symbol(x)
    if tangent:
        if x.layer == 0:
            return sp.ZeroMatrix(x.shape[-1], N_BATCH)
        ctx.tangent_of(x)
        return matrix(Role.TANGENT_A, x.layer, N_BATCH, x.shape[-1]).T
    return matrix(Role.ACTIVATION, x.layer, N_BATCH, x.shape[-1]).T


def _param(ctx: Context, node: Node, symbol: str, direction: bool = False) -> Any:
    """W_ih ... b_hh as matrices, bound as the code holds them (0 for an absent bias)."""
    found = [p for p in node.params if p.symbol == symbol]
    T, d, h, G = _sizes(node)
    if not found:
        return sp.ZeroMatrix(G * h, 1)
    p = found[0]
    weight = len(p.shape) == 2
    rows, cols = p.shape if weight else (G * h, 1)
    role = PARAMETER_ROLES[symbol]
    if direction:
        assert role.direction is not None
        role = role.direction
    family = Family.DIRECTION if direction else Family.PARAMETER
    what = f"{'direction of ' if direction else ''}{symbol} of layer {node.index}"
    ctx.bindings.add(array(role, p.layer), Kind.MATRIX if weight else Kind.UNITS, G * h, what,
                     family, p)  # fmt: skip
    return matrix(role, p.layer, rows, cols)


def _op_arg(m: Any) -> sp.Basic:
    """A parameter as an argument of a loop's helper: its matrix, or 0 when absent."""
    return sp.S.Zero if isinstance(m, sp.ZeroMatrix) else m


def forward(ctx: Context, node: Node) -> tuple:
    """U = A W_ih^T + b_ih (all steps in one product); the loop's kept rows; z = each step's
    h (or the last's)."""
    g = _geometry(node)
    U, kept = _arr(ctx, node, Role.GATES_IN), _arr(ctx, node, Role.RECURRENT)
    W, b = _param(ctx, node, "Wih"), _param(ctx, node, "bih")
    Whh, bhh = _param(ctx, node, "Whh"), _param(ctx, node, "bhh")
    s = node_symbols(ctx, node)
    return (
        (U, _per_sample(_pre_activation(sp.Tuple(W, _input_rows(ctx, node), b)), ctx.row)),
        (kept, RecurrentForward(U, Whh, _op_arg(bhh), g)),
        (s[Role.PRE_ACTIVATION], RecurrentOutput(kept, g)),
    )


def backward_steps(ctx: Context, node: Node) -> tuple:
    """The reverse loop's dL/du, dL/dv of every step; h_(t-1) of every row."""
    g = _geometry(node)
    kept, errors = _arr(ctx, node, Role.RECURRENT), _arr(ctx, node, Role.D_GATES)
    du, dv = _arr(ctx, node, Role.D_GATES_IN), _arr(ctx, node, Role.D_GATES_HIDDEN)
    delta = node_symbols(ctx, node)[Role.ERROR]
    steps = [
        (errors, RecurrentBackward(kept, _param(ctx, node, "Whh"), delta, g)),
        (du, GateErrors(errors, g)),
    ]
    if dv != du:
        steps.append((dv, HiddenGateErrors(errors, g)))
    steps.append((_arr(ctx, node, Role.PREVIOUS_H), PreviousOutputs(kept, g)))
    return tuple(steps)


def _dense(form: str, W: Any, A: Any, Delta: Any) -> sp.MatrixExpr:
    """One of the dense layer's derived forms (dW, db, da) with these matrices (da and db
    read no A: any matrix will do there)."""
    calc = layer_calculus()
    names = {MAT_W: W, MAT_A: A, MAT_DELTA: Delta}
    return memo.doit(getattr(calc, form).xreplace(names))


def _pairs(ctx: Context, node: Node) -> list[tuple[str, str, Any, Any, Role]]:
    """(weight, bias, what W multiplies, its tangent, the error of its product)."""
    return [
        ("Wih", "bih", _input_rows(ctx, node), _input_rows(ctx, node, True), Role.D_GATES_IN),
        ("Whh", "bhh", _rows(ctx, node, Role.PREVIOUS_H),
         _rows(ctx, node, Role.PREVIOUS_H_TANGENT), Role.D_GATES_HIDDEN),
    ]  # fmt: skip


_R_ROLES = {Role.D_GATES_IN: Role.R_GATES_IN, Role.D_GATES_HIDDEN: Role.R_GATES_HIDDEN}


def _gradients(ctx: Context, node: Node, moved: bool) -> list:
    """Each weight's and bias's gradient: the dense calculus with dU (dV) as the error of
    W_ih (W_hh) and A (H_(-1)) as what it multiplies (+ lambda W); with `moved`, its R, the
    product rule on that bilinear form: R{dW} = R{Delta}^T A + Delta^T A' (+ lambda W')."""
    out = []
    for w, b, A, Ad, role in _pairs(ctx, node):
        Delta, W = _rows(ctx, node, role), _param(ctx, node, w)
        tensor = next(p for p in node.params if p.symbol == w)
        error, decay = Delta, W
        if moved:
            error, decay = _rows(ctx, node, _R_ROLES[role]), _param(ctx, node, w, True)
        dW = _dense("dW_matrix", W, A, error)
        if moved and not isinstance(Ad, sp.ZeroMatrix):
            dW = dW + _dense("dW_matrix", W, Ad, Delta)
        if ctx.decays(tensor, node):
            dW = dW + L2_WEIGHT * decay
        out.append((tensor, dW))
        bias = next((p for p in node.params if p.symbol == b), None)
        if bias is not None:
            out.append((bias, _dense("db_matrix", W, A, error)))
    return out


def backward(ctx: Context, node: Node) -> tuple[tuple, tuple]:
    """dL/dW_ih = dU^T A, dL/dW_hh = dV^T H_(-1) (+ lambda W), the biases' sums; the input
    gets dU W_ih."""
    grads = _gradients(ctx, node, moved=False)
    backs: tuple = ()
    if node.inputs[0].layer > 0:
        W, Delta = _param(ctx, node, "Wih"), _rows(ctx, node, Role.D_GATES_IN)
        backs = ((node.inputs[0], _per_sample(_dense("da_matrix", W, W, Delta), ctx.row)),)
    return tuple(grads), backs


def tangents(ctx: Context, node: Node) -> tuple[tuple, tuple, tuple]:
    """U' = A W_ih'^T + A' W_ih^T + b_ih'; the tangents' loop; z' its h's. The R-operator:
    each gradient's product rule on its bilinear form (R{dW} = R{Delta}^T A + Delta^T A')."""
    g, row = _geometry(node), ctx.row
    Ud, kept, kept_d = (_arr(ctx, node, r) for r in (
        Role.GATES_IN_TANGENT, Role.RECURRENT, Role.RECURRENT_TANGENT))  # fmt: skip
    W, Wd, bd = (
        _param(ctx, node, "Wih"),
        _param(ctx, node, "Wih", True),
        _param(ctx, node, "bih", True),
    )
    A, Ad = _input_rows(ctx, node), _input_rows(ctx, node, True)
    u_dot = Wd * A + bd * sp.OneMatrix(1, N_BATCH) if not isinstance(bd, sp.ZeroMatrix) else Wd * A
    if not isinstance(Ad, sp.ZeroMatrix):
        u_dot = u_dot + W * Ad
    Whh, Whhd = _param(ctx, node, "Whh"), _param(ctx, node, "Whh", True)
    s = node_symbols(ctx, node)
    tangent = (
        (Ud, _per_sample(u_dot, row)),
        (kept_d, RecurrentTangent(kept, Ud, Whh, Whhd, _op_arg(_param(ctx, node, "bhh", True)), g)),
        (s[Role.TANGENT_Z], RecurrentOutput(kept_d, g)),
    )
    r_grads = _gradients(ctx, node, moved=True)
    r_backs: tuple = ()
    if node.inputs[0].layer > 0:
        Delta, RDelta = _rows(ctx, node, Role.D_GATES_IN), _rows(ctx, node, Role.R_GATES_IN)
        back = _dense("da_matrix", W, W, RDelta) + _dense("da_matrix", Wd, Wd, Delta)
        r_backs = ((node.inputs[0], _per_sample(back, row)),)
    return tangent, tuple(r_grads), r_backs


def r_steps(ctx: Context, node: Node) -> tuple:
    """The R-operator's reverse loop: R{dL/du}, R{dL/dv} of every step; h'_(t-1)."""
    g = _geometry(node)
    kept, kept_d = _arr(ctx, node, Role.RECURRENT), _arr(ctx, node, Role.RECURRENT_TANGENT)
    errors = _arr(ctx, node, Role.R_GATES)
    rdu, rdv = _arr(ctx, node, Role.R_GATES_IN), _arr(ctx, node, Role.R_GATES_HIDDEN)
    s = node_symbols(ctx, node)
    Whh, Whhd = _param(ctx, node, "Whh"), _param(ctx, node, "Whh", True)
    steps = [
        (errors, RecurrentRBackward(kept, kept_d, Whh, Whhd, s[Role.ERROR], s[Role.R_ERROR], g)),
        (rdu, GateErrors(errors, g)),
    ]
    if rdv != rdu:
        steps.append((rdv, HiddenGateErrors(errors, g)))
    steps.append((_arr(ctx, node, Role.PREVIOUS_H_TANGENT), PreviousOutputs(kept_d, g)))
    return tuple(steps)


def cost(node: Node) -> Cost:
    """Multiply-adds per sample: U (T d G h) and the loop's T h G h forward; backward dW_ih
    and dW_hh (T (d + h) G h), the loop's dv W_hh (T h G h) and dU W_ih (T d G h) unless
    the layer reads the network's input."""
    T, d, h, G = _sizes(node)
    into = T * d * G * h if node.inputs[0].layer > 0 else 0
    return Cost(T * (d + h) * G * h, T * (d + 2 * h) * G * h + into)


# ------------------------------------------------------------------ the document

FRAGMENT = "recurrent"


def notation(kind: str, doc: Any) -> list[tuple[str, str]]:
    rows = [
        (r"$p_{\cdot,t}, q_{\cdot,t}$",
         r"a recurrent layer's gate inputs at step $t$: row $t$ of $A W_{ih}^{\mathsf{T}} + "
         r"\mathbf{1} b_{ih}^{\mathsf{T}}$ and $h_{t-1} W_{hh}^{\mathsf{T}} + b_{hh}$, one "
         r"block of $n_\ell$ per gate"),
        (r"$\bar x_t$", r"$\partial L / \partial x_t$ for a recurrent step's value $x_t$"),
    ]  # fmt: skip
    if kind == "lstm":
        rows.append((r"$\nu_t, \eta_t$",
                     r"an lstm's candidate $g$ (PyTorch's letter) and $\tanh(c_t)$"))  # fmt: skip
    if kind == "gru":
        rows.append((r"$\zeta_t, \nu_t$",
                     r"a gru's update gate $z$ and candidate $n$ (PyTorch's letters)"))  # fmt: skip
    return rows


def document_labels(kind: str) -> tuple[str, ...]:
    return (f"eq:{kind}-forward", f"eq:{kind}-vjp", f"eq:{kind}-box")


def tangent_labels(kind: str) -> tuple[str, ...]:
    return (f"eq:{kind}-tangent",)


_GREEK = {"sigmoid": r"\sigma", "tanh": r"\tanh", "relu": r"\operatorname{relu}"}


# The document's letters for a cell's values where the cell's own (PyTorch's) letter already
# means something in the document: g^(l), z^(l), n, k and v have their meanings there.
_LETTERS = {
    "lstm": {"g": r"\nu", "k": r"\eta"},
    "gru": {"z": r"\zeta", "n": r"\nu"},
}


def _letter(c: Cell, x: sp.Symbol) -> str:
    return _LETTERS.get(c.name, {}).get(x.name, x.name)


def _names(c: Cell, shift: int = 0) -> dict[sp.Symbol, str]:
    """LaTeX of the cell's symbols at step t (+ shift): x_t, x_(t-1), p_(g,t), q_(g,t) (the
    gate inputs u and v of the code), bar x_t."""
    from symbp.symbolic.cells import adjoint, dot, incoming

    t = {0: "t", 1: "t+1"}[shift]
    before = {0: "t-1", 1: "t"}[shift]
    names: dict[sp.Symbol, str] = {}
    for st in c.statements:
        names[st.target] = f"{_letter(c, st.target)}_{{{t}}}"
    for x, y in zip(c.previous, c.carries, strict=True):
        names[x] = f"{_letter(c, y)}_{{{before}}}"
    for g, u, v in zip(c.gates, c.u, c.v, strict=True):
        gate = f"{_letter(c, sp.Symbol(g))}," if c.G > 1 else ""
        names[u], names[v] = f"p_{{{gate}{t}}}", f"q_{{{gate}{t}}}"
    for x in list(names):
        names[adjoint(x)] = rf"\bar {names[x]}"
        names[dot(x)] = rf"\dot {names[x]}"
    for y in c.carries:
        names[incoming(y)] = rf"\bar {_letter(c, y)}_{{{t}}}"
    return names


class _Indicator(sp.Function):
    """[condition]: 1 where it holds, else 0 (a rectifier's derivative in the document)."""

    def _latex(self, printer: Any) -> str:
        return rf"\left[{printer._print(self.args[0])}\right]"


def _indicators(expr: sp.Expr) -> sp.Expr:
    """Each Piecewise((1, c), (0, True)) written as the indicator [c]."""
    return expr.replace(
        lambda e: isinstance(e, sp.Piecewise) and len(e.args) == 2
        and e.args[0].expr == 1 and e.args[1].expr == 0 and e.args[1].cond == sp.true,
        lambda e: _Indicator(e.args[0].cond),
    )  # fmt: skip


def _tex(expr: sp.Expr, names: dict) -> str:
    return sp.latex(_indicators(expr), symbol_names=names, mul_symbol=r" \odot ")


def _cell_lines(c: Cell) -> dict[str, list[str]]:
    """The step, its backward step and its tangent step, in LaTeX (from SymPy's statements
    and derivatives); the recursion in time: the incoming errors of step t's carries."""
    from symbp.symbolic.cells import adjoint

    at, after = _names(c), _names(c, 1)
    forward = [
        f"{at[st.target]} = "
        + (rf"{_GREEK[st.activation]}\left({_tex(st.arg, at)}\right)" if st.activation
           else _tex(st.arg, at))
        for st in c.statements
    ]  # fmt: skip
    back = dict(c.adjoints)
    recursion = []
    for x, y in zip(c.previous, c.carries, strict=True):
        parts = [r"\delta_t"] if y == c.carries[0] else []
        if y == c.carries[0]:
            parts.append(r"\bar q_{t+1} W_{hh}^{(\ell)}")
        if back[adjoint(x)] != 0:
            parts.append(_tex(back[adjoint(x)], after))
        recursion.append(rf"\bar {_letter(c, y)}_{{t}} = " + " + ".join(parts))
    # the step's own errors: not the carries' (the recursion above), not a bar v equal to
    # its bar u, not the previous carries' (the recursion's terms at t + 1)
    hidden = {adjoint(v) for v in c.v} if c.summed else set()
    skipped = {*hidden, *(adjoint(x) for x in (*c.carries, *c.previous))}
    steps = [f"{at[s]} = {_tex(e, at)}" for s, e in c.adjoints if e != 0 and s not in skipped]
    tangent = [f"{at[s]} = {_tex(e, at)}" for s, e in c.tangents]
    return {"forward": forward, "recursion": recursion, "vjp": steps, "tangent": tangent}


def document_section(kind: str, doc: Any) -> dict:
    """The step's equations, the recursion in time, its local derivatives (SymPy's), the
    box with the shared weights' gradients as sums over t."""
    cells = [cell(f"rnn_{layer.nonlinearity}") if kind == "rnn" else cell(kind)
             for layer in doc.layers]  # fmt: skip
    distinct = list(dict.fromkeys(cells))
    c = distinct[0]
    lines = _cell_lines(c)
    if len(distinct) > 1:  # rnn layers of both nonlinearities: each one's lines, named
        parts = [_cell_lines(other) for other in distinct]
        for key in ("forward", "vjp", "tangent"):
            lines[key] = [
                rf"{line} \quad \text{{({other.name[4:]})}}"
                for other, part in zip(distinct, parts, strict=True)
                for line in part[key]
            ]
    A, D = doc.arr("A", "l-1"), doc.arr("Delta", "l")
    t = doc.t
    W_ih, W_hh = r"W_{ih}^{(\ell)}", r"W_{hh}^{(\ell)}"
    last = any(layer.returns == "last" for layer in doc.layers)
    gates = f"{c.G} " if c.G > 1 else ""
    u_bar = r"\bar p_{t}"
    v_bar = r"\bar q_{t}"
    return {
        "gates": ", ".join(c.gates),
        "G": c.G,
        "summed": c.summed,
        "relu": any(x.name == "rnn_relu" for x in cells),
        "tanh": any(x.name == "rnn_tanh" for x in cells),
        "last": last,
        "forward": [
            *doc.together(
                rf"p_t = a_t \left({W_ih}\right){t} + b_{{ih}}^{{(\ell)}}",
                rf"q_t = h_{{t-1}} \left({W_hh}\right){t} + b_{{hh}}^{{(\ell)}}",
            ),
            *lines["forward"],
        ],
        "recursion": lines["recursion"],
        "vjp": lines["vjp"],
        "tangent": lines["tangent"],
        "box": [
            (doc.grad(W_ih), rf"\sum_{{t=1}}^{{T}} {u_bar}{t} a_t" + doc.decay(W_ih)),
            (
                doc.grad(W_hh),
                rf"\sum_{{t=2}}^{{T}} {v_bar}{t} h_{{t-1}}" + doc.decay(W_hh),
            ),
            (doc.grad(r"b_{ih}^{(\ell)}"), rf"\sum_{{t=1}}^{{T}} {u_bar}"),
            (doc.grad(r"b_{hh}^{(\ell)}"), rf"\sum_{{t=1}}^{{T}} {v_bar}"),
            (doc.grad(A), rf"\bar P {W_ih}"),
        ],
        "shapes": [
            rf"{A} \in \mathbb{{R}}^{{n \times n_{{\ell-1}}}}",
            rf"{D} \in \mathbb{{R}}^{{{'B' if last else 'n'} \times n_\ell}}",
            rf"{W_ih} \in \mathbb{{R}}^{{{gates}n_\ell \times n_{{\ell-1}}}}",
            rf"{W_hh} \in \mathbb{{R}}^{{{gates}n_\ell \times n_\ell}}",
            rf"p_t, q_t, \bar p_t, \bar q_t \in \mathbb{{R}}^{{B \times {gates}n_\ell}}",
        ],
        "send": r"\bar P W_{ih}^{(m)}",
        "grads": [
            (W_ih, rf"\sum_t {u_bar}{t} a_t"),
            (r"b_{ih}^{(\ell)}", rf"\sum_t {u_bar}"),
        ],
    }
