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
from symbp.documents.latex import COLUMN_WIDTH, DELTA, Notation, line_width, tex, width
from symbp.documents.shown import shown
from symbp.ir.labels import activation_label
from symbp.symbolic.calculus import A as A_SCALAR
from symbp.symbolic.calculus import ActivationDerivation

# A formula wider than this (glyphs, symbp.documents.latex.width) is not written in the box, which
# fits a column of a two-column paper; the box names the equation that holds it instead.
BOX_WIDTH = 42
# A formula wider than this leaves no room for its references on the same line.
SHORT = 30

_GENERIC = r"\ell"
PARAM_TEX = {
    "W": "W",
    "b": "b",
    "gamma": r"\gamma",
    "beta": r"\beta",
    "E": "E",
    "P": "P",
    **{f"{letter}{part}": f"{letter}_{part}" for letter in "Wb" for part in "qkvo"},
    **{f"{letter}{part}": f"{letter}_{{{part}}}" for letter in "Wb" for part in ("ih", "hh")},
}


def _row(
    tag: str, math: str, refs: list[str], where: str = "", wide: bool = False
) -> dict[str, Any]:
    """One line of the box: its tag (BP1), the formula, the layers it holds for, the labels
    (keys of the document's numbering) of the equations it summarises. What it holds for
    and the references go on a line of their own when the row is `wide`."""
    return {"tag": tag, "math": math, "where": where, "refs": refs, "wide": wide}


def _narrow() -> bool:
    """Whether the document's lines are a column of a two-column paper (a body), where a
    line of the box leaves no room for what it holds for and its references."""
    return line_width() <= COLUMN_WIDTH


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
        return _row("BP1", f"{lhs} = {T(delta)}", ["eq:output-delta"], wide=wide)
    generic = rf"\kappa \thinspace J{n.t} \nabla_{{a}} \mathcal{{E}}"
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


def _bp2(
    net: Network, d_acts: dict[str, ActivationDerivation], n: Notation, sends: dict
) -> list[dict]:
    """The recursion, from the graph: delta^(l) = g^(l) (.) f'_l(z^(l)), g^(l) the sum over
    the layers m that read a^(l) of what each sends back, one row per kind of reader (its
    box's backward line); then each hidden activation's f'_l."""
    hidden = [nd for nd in net.nodes if not nd.is_output]
    if not hidden:
        return []
    delta, g = n.v(DELTA), n.v("g")
    f_prime = rf"f_\ell'\left({n.v('z')}^{{(\ell)}}\right)"
    rows = [
        _row("BP2", rf"{delta}^{{(\ell)}} = {g}^{{(\ell)}} \odot {f_prime}", ["eq:backprop"]),
        _row(
            "", rf"{g}^{{(\ell)}} = \sum_{{m \in \mathcal{{C}}(\ell)}} s^{{(m)}}", ["eq:backprop"]
        ),
    ]
    readers = dict.fromkeys(
        c.kind for nd in hidden for c in net.graph.consumers.get(nd.node.a.key, ())
    )
    for kind in readers:
        rows.append(
            _row(
                "",
                f"s^{{(m)}} = {sends[kind]}",
                [f"eq:{kind}-box"],
                rf"\text{{{kind} }} m",
                wide=_narrow(),
            )
        )
    for name, act in d_acts.items():
        layers = [nd.node.index for nd in hidden if nd.act is act]
        if not layers:
            continue
        shown, fits = _derivative(act, n)
        named = r"f_\ell' \text{ of } \mathtt{" + name.replace("_", r"\_") + "}"
        math = rf"f_\ell' = {shown}" if fits else named
        refs = [] if act.passes_through else [activation_label(name)]  # f' = 1: no equation
        rows.append(_row("", math, refs, _layers_text(layers)))
    return rows


def _gradients(net: Network, grads: dict) -> list[dict]:
    """BP3 and BP4: each kind's parameter gradients, as its box gives them, with the layers
    of that kind."""
    rows = []
    for kind, formulas in grads.items():
        layers = [nd.node.index for nd in net.nodes if nd.node.kind == kind and nd.node.params]
        if not layers:
            continue
        for k, (param, rhs) in enumerate(formulas):
            where = rf"\text{{{kind}}}, {_layers_text(layers)}" if k == len(formulas) - 1 else ""
            wide = bool(where) and _narrow()
            math = rf"\partial L / \partial {param} = {rhs}"  # on one line in the box
            rows.append(_row("", math, [f"eq:{kind}-box"], where, wide=wide))
    if rows:
        rows[0]["tag"] = "BP3, BP4"
    return rows


def summary_context(
    d: Derivation, net: Network, T: Callable[[sp.Basic], str], n: Notation, kinds: list[dict]
) -> dict[str, Any]:
    """The box's rows, top to bottom (BP1, BP2 and the derivatives it reads, BP3, BP4),
    from the network's graph and each kind's document section (`kinds`: what each kind
    sends back and its parameters' gradients)."""
    sends = {k["kind"]: k["send"] for k in kinds}
    grads = {k["kind"]: k["grads"] for k in kinds if k.get("grads")}
    rows = [_bp1(net.nodes[-1], T, n), *_bp2(net, d.activations, n, sends)]
    # two boxes, so that neither outgrows a page or a column
    return {"rows": rows, "grad_rows": _gradients(net, grads)}
