"""The document's summary: the four backpropagation equations of this network in one box.

Each row is printed from what the document derives further on (the output layer's error
term, each activation's derivative, the gradients) and names the numbered equations it
summarises; the box itself is unnumbered, so the numbers the code cites do not move.
BP1-BP4 follow Nielsen's naming: the output error, the recursion, the gradients of the
weights and of the biases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sympy as sp

from symbp.derivation.derive import Derivation
from symbp.derivation.network import Network
from symbp.derivation.nodes import NodeDerivation
from symbp.documents.latex import DELTA, Notation, tex, width
from symbp.documents.shown import shown
from symbp.ir.labels import activation_label, layer_label
from symbp.symbolic.calculus import A as A_SCALAR
from symbp.symbolic.calculus import ActivationDerivation

# A formula wider than this (glyphs, symbp.documents.latex.width) is not written in the box, which
# fits a column of a two-column paper; the box names the equation that holds it instead.
BOX_WIDTH = 42
# A formula wider than this leaves no room for its references on the same line.
SHORT = 30

_GENERIC = r"\ell"
# The equation of a kind's own section that holds its parameters' gradients.
KIND_GRADIENTS = {"conv2d": "eq:conv2d-dW"}
PARAM_TEX = {"W": "W", "b": "b", "gamma": r"\gamma", "beta": r"\beta"}


def _row(
    tag: str, math: str, refs: list[str], where: str = "", span: bool = False, wide: bool = False
) -> dict[str, Any]:
    """One line of the box: its tag (BP1), the formula, the layers it holds for, the labels
    (keys of the document's numbering) of the equations it summarises (`span`: the first and
    the last of a range). What it holds for and the references go on a line of their own when
    there is `where` or the formula is `wide`."""
    return {"tag": tag, "math": math, "where": where, "refs": refs, "span": span, "wide": wide}


def _layers_text(indices: list[int]) -> str:
    """The layers a line holds for: l = 1, 2, 5, with runs of four or more as 1, ..., 4."""
    runs: list[list[int]] = []
    for k in indices:
        if runs and k == runs[-1][-1] + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    parts = [
        f"{run[0]}, \\dots, {run[-1]}" if len(run) > 3 else ", ".join(map(str, run)) for run in runs
    ]
    return r"\ell = " + ", ".join(parts)


def _bp1(out: NodeDerivation, T: Callable[[sp.Basic], str], n: Notation) -> dict[str, Any]:
    """The network's output error, as the output layer's block prints it (per sample)."""
    L = out.node.index
    lhs = f"{n.v(DELTA)}^{{({L})}}"
    delta = shown(out.delta)
    if width(delta) <= BOX_WIDTH:
        wide = width(delta) > SHORT
        return _row("BP1", f"{lhs} = {T(delta)}", [layer_label("delta", L)], wide=wide)
    generic = rf"c \thinspace J{n.t} \nabla_{{a}} \mathcal{{E}}"
    return _row("BP1", f"{lhs} = {generic}", ["eq:output-delta"])


def _derivative(act: ActivationDerivation, n: Notation) -> tuple[str, bool]:
    """(f'_l in the layer's own a^(l) or z^(l), whether it fits the box)."""
    if act.in_a is not None:
        name = A_SCALAR.name
        names = {name: f"{n.v('a')}^{{({_GENERIC})}}"}
        in_a = shown(act.in_a)
        return tex(in_a, names=names, arrays=frozenset({name}), notation=n), width(
            in_a
        ) <= BOX_WIDTH
    x, z = sp.Symbol("x", real=True), sp.Symbol("z_layer", real=True)
    form = shown(act.simplified.xreplace({x: z}))  # the form a reader knows (x phi + Phi)
    names = {z.name: f"{n.v('z')}^{{({_GENERIC})}}"}
    return tex(form, names=names, arrays=frozenset({z.name}), notation=n), width(form) <= BOX_WIDTH


def _bp2(net: Network, d_acts: dict[str, ActivationDerivation], n: Notation) -> list[dict]:
    """The recursion: delta^(l) = g^(l) (.) f'_l(z^(l)), g^(l) = (W^(l+1))^T delta^(l+1) when
    layer l+1 is dense and reads a^(l) alone; and each hidden activation's f'_l."""
    hidden = [nd for nd in net.nodes if not nd.is_output]
    if not hidden:
        return []
    delta, W, g = n.v(DELTA), n.v("W"), n.v("g")
    back = rf"\left({W}^{{(\ell+1)}}\right){n.t} {delta}^{{(\ell+1)}}"
    f_prime = rf"f_\ell'\left({n.v('z')}^{{(\ell)}}\right)"
    dense_chain = all(
        [c.index for c in net.graph.consumers.get(nd.node.a.key, ())] == [nd.node.index + 1]
        and net.nodes[nd.node.index].node.kind == "dense"
        for nd in hidden
    )
    if dense_chain:
        rows = [_row("BP2", rf"{delta}^{{(\ell)}} = \left({back}\right) \odot {f_prime}", [])]
        rows[0]["refs"] = ["eq:recursion"]
        rows[0]["where"] = _layers_text([nd.node.index for nd in hidden])
    else:
        first, last = hidden[0].node.index, hidden[-1].node.index
        refs = [layer_label("delta", first), layer_label("delta", last)]
        rows = [
            _row("BP2", rf"{delta}^{{(\ell)}} = {g}^{{(\ell)}} \odot {f_prime}", refs, span=True),
            _row("", rf"{g}^{{(\ell)}} = {back}", ["eq:recursion"], r"\ell + 1 \text{ dense}"),
        ]
    for name, act in d_acts.items():
        layers = [nd.node.index for nd in hidden if nd.act is act]
        if not layers:
            continue
        shown, fits = _derivative(act, n)
        # an activation's name is an identifier: only its underscores need escaping
        named = r"f_\ell' \text{ of } \mathtt{" + name.replace("_", r"\_") + "}"
        math = rf"f_\ell' = {shown}" if fits else named
        rows.append(_row("", math, [activation_label(name)], _layers_text(layers)))
    return rows


def _gradients(net: Network, n: Notation, l2: bool) -> list[dict]:
    """BP3 and BP4 for the dense layers (summed over the samples s), and a reference to the
    gradients of every other kind with parameters."""
    delta, a = n.v(DELTA), n.v("a")
    rows = []
    dense_W = [nd.node.index for nd in net.nodes if nd.node.kind == "dense"]
    dense_b = [
        nd.node.index
        for nd in net.nodes
        if nd.node.kind == "dense" and any(p.symbol == "b" for p in nd.node.params)
    ]
    penalty = rf" + \lambda {n.v('W')}^{{(\ell)}}" if l2 else ""
    if dense_W:
        dW = (
            rf"\frac{{\partial L}}{{\partial {n.v('W')}^{{(\ell)}}}} = \sum_{{s}} "
            rf"{delta}^{{(\ell)}}_s \left({a}^{{(\ell-1)}}_s\right){n.t}{penalty}"
        )
        rows.append(_row("BP3", dW, ["eq:grad-W"], _layers_text(dense_W)))
    if dense_b:
        b = n.v("b")
        db = rf"\frac{{\partial L}}{{\partial {b}^{{(\ell)}}}} = \sum_{{s}} {delta}^{{(\ell)}}_s"
        rows.append(_row("BP4", db, ["eq:grad-b"], _layers_text(dense_b)))
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for nd in net.nodes:
        if nd.node.kind != "dense" and nd.node.params:
            key = (nd.node.kind, tuple(p.symbol for p in nd.node.params))
            groups.setdefault(key, []).append(nd.node.index)
    for (kind, params), layers in groups.items():
        lhs = r",\ ".join(
            rf"\frac{{\partial L}}{{\partial {n.v(PARAM_TEX[p])}^{{(\ell)}}}}" for p in params
        )
        where = rf"\text{{{kind}}}, {_layers_text(layers)}"
        if kind in KIND_GRADIENTS:
            rows.append(_row("", lhs, [KIND_GRADIENTS[kind]], where))
        else:  # each layer's block: the first and the last layer's equations
            refs = [
                layer_label(f"d{params[0]}", layers[0]),
                layer_label(f"d{params[-1]}", layers[-1]),
            ]
            rows.append(_row("", lhs, refs, where, span=True))
    if rows and not any(row["tag"] == "BP3" for row in rows):
        rows[0]["tag"] = "BP3, BP4"
    return rows


def summary_context(
    d: Derivation, net: Network, T: Callable[[sp.Basic], str], n: Notation
) -> dict[str, Any]:
    """The box's rows, top to bottom (BP1, BP2 and the derivatives it reads, BP3, BP4)."""
    rows = [_bp1(net.nodes[-1], T, n), *_bp2(net, d.activations, n)]
    rows += _gradients(net, n, bool(d.arch.l2))
    return {"rows": rows}
