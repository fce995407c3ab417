"""Derivation -> the context of the LaTeX template: every formula printed from SymPy.

The template holds prose and layout; each equation's TeX comes from the derivation
object through symbp.documents.latex, so the document shows what SymPy actually derived.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import sympy as sp

from symbp.derivation.derive import Derivation, at_layer, general_batch, unit_loss
from symbp.derivation.kinds import kind_module
from symbp.derivation.network import Network, derive_network
from symbp.derivation.nodes import NodeDerivation
from symbp.documents.latex import (
    CAPITAL_DELTA,
    LINE_WIDTH,
    PLAIN,
    Display,
    Notation,
    tex,
    tex_lines,
    width,
)
from symbp.documents.shown import shown, uses_normal, uses_sigmoid
from symbp.documents.summary import PARAM_TEX, summary_context
from symbp.errors import OutputError
from symbp.ir.bindings import Kind
from symbp.ir.labels import (
    SECTION_LEVELS,
    activation_label,
    layer_label,
    network_numbering,
    tex_label,
)
from symbp.ir.naming import Role, array
from symbp.options import STYLES
from symbp.symbolic.calculus import A as A_SCALAR
from symbp.symbolic.calculus import ActivationDerivation, reading_kept
from symbp.symbolic.cse import common_subexpressions
from symbp.symbolic.logits import LogitsError
from symbp.symbolic.output import YHAT_VAR, is_softplus_log

INDEX_STEPS = ("z_def", "dz_dW", "dz_db", "dz_da", "dL_dW", "dL_db", "dL_da")

LOSS_NAMES = {
    "mse": "mean squared error",
    "bce": "binary cross-entropy",
    "cross_entropy": "cross-entropy",
    "expr": "custom loss",
}


# The packages the body needs in a paper's preamble (the standalone document loads them
# too); the body lists them at its top, ready to copy. No TikZ: the graph is a picture.
PACKAGES = ("amsmath", "amssymb", "booktabs", "tabularx")

# Heading commands, outermost first: the document's sections start at one of the first two.
_HEADINGS = ("section", "subsection", "subsubsection")


def headings(level: str = "section") -> dict[str, str]:
    """The commands of the document's two heading levels. "section" is the standalone
    document's; "subsection" makes a body one section of a paper (an appendix, say), the
    paper giving the \\section and the body its subsections."""
    if level not in SECTION_LEVELS:
        raise OutputError(
            f"unknown section level {level!r}", fix=f"choose one of {', '.join(SECTION_LEVELS)}"
        )
    top = _HEADINGS.index(level)
    return {"section": _HEADINGS[top], "subsection": _HEADINGS[top + 1]}


def _escape(text: str) -> str:
    """Plain text safe inside LaTeX (user-given names, expressions)."""
    out = []
    for ch in text:
        if ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch == "\\":
            out.append(r"\textbackslash{}")
        elif ch == "^":
            out.append(r"\^{}")
        elif ch == "~":
            out.append(r"\~{}")
        else:
            out.append(ch)
    return "".join(out)


def _activation_entry(act: ActivationDerivation, eq: dict[str, int]) -> dict[str, Any]:
    """f, f' as SymPy returned it, and the form the code uses."""
    x = sp.Symbol("x", real=True)
    f, raw = shown(act.f), shown(act.raw)  # as defined, but for GELU's Phi and the pieces
    return {
        "normal": uses_normal(f) or uses_normal(raw),
        "logistic": uses_sigmoid(f) or uses_sigmoid(raw),
        "label": activation_label(act.name),
        "number": eq[activation_label(act.name)],
        "name": _escape(act.name),
        "raw_name": act.name,
        "f": tex(f),
        "raw": tex(raw),
        "simplified": tex(shown(act.simplified)),
        # what the code evaluates, written in z as the sentence says
        "in_z": tex(act.backward_form.xreplace({x: sp.Symbol("z", real=True)})),
        "in_a": tex(shown(act.in_a)) if act.in_a is not None else "",
        "needs": act.needs,
        "method": act.method,
        "uses_x": act.backward_form.has(x),
        **_kept_entry(act, x),
        "check": tex(sp.Eq(act.in_a.subs(A_SCALAR, act.f), act.simplified, evaluate=False))
        if act.in_a is not None and act.needs == "a"
        else "",
    }


def _kept_entry(act: ActivationDerivation, x: sp.Symbol) -> dict[str, str]:
    """t = the kept intermediate and f' reading t, both in z (empty when nothing is kept)."""
    if act.kept is None:
        return {"kept": "", "shared": ""}
    z, t = sp.Symbol("z", real=True), sp.Symbol("t", real=True)
    shared = reading_kept(act.backward_form, act.kept, t)  # as the code evaluates it
    return {"kept": tex(act.kept.xreplace({x: z})), "shared": tex(shared.xreplace({x: z}))}


def _output_entry(d: Derivation) -> dict[str, Any]:
    out = d.output
    L = len(d.arch.layers)
    return {
        # The prediction named by its LaTeX, \hat{y}, which SymPy's ordering puts before y:
        # the loss reads (yhat - y)^2 as users write it, not (-y + yhat)^2.
        "unit_loss": tex(unit_loss(d.arch).subs(YHAT_VAR, sp.Symbol(r"\hat{y}", real=True))),
        "dl_da": tex(shown(out.dl_da)),
        "jacobian": tex(out.jacobian),
        "delta_raw": tex(out.delta_raw),
        "delta": tex(shown(out.delta)),
        "delta_array": tex(at_layer(out.delta_array, L)),
        "assumption": out.assumption or "",
        "loss_value": tex(at_layer(out.loss_array, L)),
        "from_logits": out.loss_from_logits,
        "softmax": d.arch.layers[-1].activation == "softmax",
        "logits": _logits_entry(out.logits),
        # log of a softplus output, evaluated as z + log(log1p(e^z)/e^z) for z < 0
        "log_softplus": any(
            isinstance(lg.args[0], sp.log) and is_softplus_log(lg.args[0])
            for lg in out.loss_array.atoms(sp.log)
        ),
    }


def _logits_entry(logits: LogitsError | None) -> dict[str, str] | None:
    """The steps of a softmax output error taken from the logits (symbp.symbolic.logits)."""
    if logits is None:
        return None
    return {
        "lse_rule": tex(logits.lse_rule),
        "others_rule": tex(logits.others_rule),
        "d_z": tex(logits.d_z),
        "d_lse": tex(logits.d_lse),
        "d_others": tex(logits.d_others),
        "delta": tex(logits.delta_indexed),
    }


def _tangent_entry(d: Derivation, net: Network, eq: dict[str, int], T: _Tex) -> dict[str, Any]:
    """Forward-mode and R-operator equations, general (index form) and per layer."""
    from symbp.derivation.tangent import tangent_calculus

    calc = tangent_calculus()
    n = T.notation
    return {
        "z_dot": tex(calc.z_dot, notation=n),
        "dW_r": tex(calc.dW_r, names=_OWN_LAYER, notation=n),
        "db_r": tex(calc.db_r, names=_OWN_LAYER, notation=n),
        "back_r": tex(calc.back_r, names=NEXT_LAYER, notation=n),
        "layers": _tangent_layers(net, eq, T),
    }


# The general layer's indexed arrays, with the layer each belongs to: the gradients read
# a^(l-1) and delta^(l); the recursion reads layer l+1's W and delta (summed over n_(l+1)).
_OWN_LAYER = {
    "a": r"a^{(\ell-1)}",
    "delta": r"\delta^{(\ell)}",
    "ad": r"\dot{a}^{(\ell-1)}",
    "Rdelta": r"\mathcal{R}\delta^{(\ell)}",
}
NEXT_LAYER = {
    "W": r"W^{(\ell+1)}",
    "delta": r"\delta^{(\ell+1)}",
    "Wd": r"\dot{W}^{(\ell+1)}",
    "Rdelta": r"\mathcal{R}\delta^{(\ell+1)}",
    "n_out": r"n_{\ell+1}",
}
_STEP_NAMES = {"dL_dW": _OWN_LAYER, "dL_db": _OWN_LAYER, "dL_da": NEXT_LAYER}


def _general_entry(d: Derivation, n: Notation) -> dict[str, str]:
    calc = d.calculus
    entry = {
        name: tex(getattr(calc, name), names=_STEP_NAMES.get(name), notation=n)
        for name in INDEX_STEPS
    }
    batch = general_batch(calc, d.arch.layout == "row")
    entry.update(
        {f"batch_{key}": tex(value, batch=True, notation=n) for key, value in batch.items()}
    )
    return entry


class _Tex:
    """LaTeX of the network's expressions, with the names its kinds give their arrays."""

    def __init__(self, net: Network, notation: Notation = PLAIN) -> None:
        self.notation = notation
        self.names = net.bindings.tex_names()
        self.batch_names = net.bindings.tex_names(batch=True)
        self.arrays = frozenset(
            name for name, info in net.bindings.table.items() if info.kind == Kind.SAMPLES
        )

    def __call__(self, expr: sp.Basic, batch: bool = False) -> str:
        names = self.batch_names if batch else self.names
        return tex(expr, batch, names, self.arrays, self.notation)

    def display(self, expr: sp.Basic, batch: bool = False, head: str = "") -> Display:
        """head + expr as a display, broken into lines when long (symbp.documents.latex)."""
        if not isinstance(expr, sp.Expr) or isinstance(expr, sp.MatrixExpr):
            return Display(head, (self(expr, batch),))
        names = self.batch_names if batch else self.names
        expr = shown(expr)
        where: list[str] = []
        if width(expr) > LINE_WIDTH:
            expr, named = _named_repeats(expr)
            names = {**names, **{u.name: rf"u_{{{k}}}" for k, (u, _) in enumerate(named, 1)}}
            where = _packed(
                [
                    (rf"u_{{{k}}} = {tex(v, batch, names, self.arrays, self.notation)}", width(v))
                    for k, (_, v) in enumerate(named, 1)
                ]
            )
        lines = tex_lines(expr, batch, names, self.arrays, LINE_WIDTH - 10, self.notation)
        return Display(head, tuple(lines), tuple(where))


NAMED_WIDTH = 9  # a repeated subexpression at least this wide is named once (u_1 = ...)


def _packed(items: list[tuple[str, float]]) -> list[str]:
    """Definitions u_k = ... packed onto rows of about a line each (", " between them)."""
    rows: list[str] = []
    used: float = LINE_WIDTH
    for text, size in items:
        if rows and used + size + 6 <= LINE_WIDTH - 10:
            rows[-1] += rf", \; {text}"
            used += size + 6
        else:
            rows.append(text)
            used = size + 6
    return rows


def _named_repeats(expr: sp.Expr) -> tuple[sp.Expr, list[tuple[sp.Symbol, sp.Expr]]]:
    """expr with each subexpression that occurs more than once and is at least NAMED_WIDTH
    wide replaced by a name u_k (sympy.cse; the others are put back), and the named ones."""
    symbols = (sp.Symbol(f"_u{k}", real=True) for k in itertools.count(1))

    def wide(name: sp.Symbol, value: Any, rest: Callable[[], Any]) -> bool:
        algebra = isinstance(value, sp.Expr) and not isinstance(value, sp.Piecewise)
        return algebra and width(value) >= NAMED_WIDTH and rest().count(name) > 1

    reduced, named = common_subexpressions(expr, symbols, wide)
    renamed = {u: sp.Symbol(f"_u{k}", real=True) for k, (u, _) in enumerate(named, 1)}
    named = [(renamed[u], v.xreplace(renamed)) for u, v in named]
    return reduced.xreplace(renamed), named


def _node_entry(nd: NodeDerivation, net: Network, eq: dict[str, int], T: _Tex) -> dict:
    """Layer l's equations, in document order: z (and the statistics), a, the error term
    (with what its consumers send back), and each parameter's gradient."""
    node, l, n = nd.node, nd.node.index, T.notation
    # One form for the whole block: the batch's arrays (Z, A, G, Delta), in the file's layout.
    steps = [f"{T(t, batch=True)} = {T(v, batch=True)}" for t, v in nd.forward]
    z = T(array(Role.PRE_ACTIVATION, l), batch=True)
    a_tex = rf"\operatorname{{softmax}}\left({z}\right)" if nd.act is None else T(nd.a, batch=True)
    A, G, head = n.v("A"), n.v("G"), rf"{n.v(CAPITAL_DELTA)}^{{({l})}} = "
    delta: list[Any] = [T.display(nd.delta, batch=True, head=head)]
    if not nd.is_output:
        sent = [T(b, batch=True) for c in net.graph.consumers.get(node.a.key, ()) for t, b in
                net.nodes[c.index - 1].backs if t is node.a]  # fmt: skip
        delta.insert(
            0,
            rf"{G}^{{({l})}} = \frac{{\partial L}}{{\partial {A}^{{({l})}}}} = {' + '.join(sent)}",
        )
    equations = [
        _equation(eq, "z", l, steps),
        _equation(eq, "a", l, [f"{A}^{{({l})}} = {a_tex}"]),
        _equation(eq, "delta", l, delta),
    ]
    for param, grad in nd.grads:
        lhs = rf"\frac{{\partial L}}{{\partial {n.v(PARAM_TEX[param.symbol])}^{{({l})}}}}"
        equations.append(_equation(eq, f"d{param.symbol}", l, [f"{lhs} = {T(grad, batch=True)}"]))
    kind = "" if node.kind == "dense" else f"{node.kind}, "
    return {
        "index": l,
        "kind": node.kind,
        "n_in": r" \times ".join(map(str, node.inputs[0].shape)),
        "n_out": r" \times ".join(map(str, node.z.shape)),
        "n_in_md": "×".join(map(str, node.inputs[0].shape)),
        "n_out_md": "×".join(map(str, node.z.shape)),
        "activation": _escape(node.layer.activation),
        "raw_activation": node.layer.activation,
        "title": rf"{kind}\texttt{{{_escape(node.layer.activation)}}}",
        "title_md": f"{kind}`{node.layer.activation}`",
        "is_output": nd.is_output,
        # each parameter's letter and shape (the summary's table of shapes)
        "params": [
            {
                "tex": f"{n.v(PARAM_TEX[p.symbol])}^{{({l})}}",
                "shape": r" \times ".join(map(str, p.shape)),
                "shape_md": "×".join(map(str, p.shape)),
            }
            for p in node.params
        ],
        "stores": "z" if nd.stores_z else "a",
        "source": node.layer.source or "",
        "equations": equations,
    }


def _equation(eq: dict[str, int], kind: str, l: int, lines: list[str]) -> dict:
    label = layer_label(kind, l)
    return {"label": label, "number": eq[label], "lines": lines}


def _tangent_layers(net: Network, eq: dict[str, int], T: _Tex) -> list[dict]:
    """Each layer's a-dot and R{delta}; `dirac` when R{delta} holds Dirac's delta (the
    derivative of a kink's step), which the code takes as zero."""
    return [
        {
            "index": nd.node.index,
            "a_dot": T.display(nd.a_dot),
            "r_delta": T.display(nd.r_delta),
            "eq_a_dot": eq[layer_label("a-dot", nd.node.index)],
            "eq_r_delta": eq[layer_label("r-delta", nd.node.index)],
            "label_a_dot": layer_label("a-dot", nd.node.index),
            "label_r_delta": layer_label("r-delta", nd.node.index),
            "dirac": nd.r_delta.has(sp.DiracDelta),
        }
        for nd in net.nodes
    ]


def _kind_sections(net: Network, eq: dict[str, int]) -> list[dict]:
    """What SymPy derived for each kind that the network has, as each kind's module lays it
    out for the document (dense, the seed's layer, has the general section instead)."""
    sections = []
    for kind in dict.fromkeys(nd.node.kind for nd in net.nodes):
        section = kind_module(kind).document_section(kind, eq, tex)
        images = any(nd.node.kind == kind and nd.node.z.image for nd in net.nodes)
        if section is not None:
            sections.append({"kind": kind, "on_images": images, **section})
    return sections


def _graph(net: Network) -> dict[str, Any]:
    """Box positions (mm) of x -> z1 -> a1 -> ... -> L, with the skip edges of add layers."""
    count = len(net.nodes)
    shown = list(range(1, count + 1)) if count <= 6 else [1, 2, None, count]
    nodes: list[dict[str, Any]] = [{"x": 0, "text": "x", "param": "", "dots": False}]
    where = {0: 5}
    x = 0
    for layer in shown:
        x += 17
        if layer is None:
            nodes.append({"x": x, "text": r"\cdots", "param": "", "dots": True})
            continue
        node = net.nodes[layer - 1].node
        params = ", ".join(f"{PARAM_TEX[p.symbol]}^{{({layer})}}" for p in node.params)
        nodes.append({"x": x, "text": f"z^{{({layer})}}", "param": params, "dots": False})
        x += 17
        nodes.append({"x": x, "text": f"a^{{({layer})}}", "param": "", "dots": False})
        where[layer] = x + 5
    x += 17
    nodes.append({"x": x, "text": "L", "param": "y", "dots": False})
    skips = []
    for nd in net.nodes:
        if nd.node.kind == "add" and nd.node.index in where:
            source = nd.node.inputs[1].layer
            if source in where and source != nd.node.index - 1:
                start, end = where[source], where[nd.node.index] - 17
                skips.append({"x0": start, "x1": end, "mid": (start + end) / 2})
    text = " -> ".join(n["text"].replace("^{(", "(").replace(")}", ")") for n in nodes)
    text = text.replace("\\cdots", "...")
    for nd in net.nodes:
        if nd.node.kind == "add":
            text += f"; a({nd.node.inputs[1].layer}) -> z({nd.node.index})"
    width = x + 12
    # The unit is a fraction of the line width, so the figure fits a column of any width:
    # 1 mm on the standalone document's 160 mm line, and a wide graph at most 15/16 of it.
    unit = min(1 / 160, 0.9375 / width)
    return {"nodes": nodes, "width": width, "text": text, "skips": skips, "unit": f"{unit:.6f}"}


def _complexity(net: Network) -> dict[str, Any]:
    """Parameters and multiply-adds per sample of each layer's matrix products."""
    rows = []
    for nd in net.nodes:
        node = nd.node
        params = sum(math.prod(p.shape) for p in node.params)
        cost = kind_module(node.kind).cost(node)
        rows.append(
            {
                "index": node.index,
                "params": params,
                "forward": cost.forward,
                "backward": cost.backward,
            }
        )
    forward = sum(r["forward"] for r in rows)
    backward = sum(r["backward"] for r in rows)
    return {
        "rows": rows,
        "params": sum(r["params"] for r in rows),
        "forward": forward,
        "backward": backward,
        "ratio": f"{backward / forward:.3f}" if forward else "n/a",
    }


def document_context(
    d: Derivation,
    net: Network | None = None,
    style: str = "full",
    notation: Notation = PLAIN,
) -> dict[str, Any]:
    """Everything derivation.tex.j2 needs. `style` "paper" leaves out the narration about
    SymPy, storage and overflow and the cost section (the equations and their numbers are
    the same); `notation` sets bold vectors and the transpose's symbol."""
    if style not in STYLES:
        raise OutputError(
            f"unknown document style {style!r}", fix=f"choose one of {', '.join(STYLES)}"
        )
    arch = d.arch
    net = net or derive_network(d)
    eq = network_numbering(d, net)
    T = _Tex(net, notation)
    graph = _graph(net)
    kinds = [nd.node.kind for nd in net.nodes]
    return {
        "name": _escape(arch.name),
        "raw_name": arch.name,
        "raw_loss_expr": arch.loss.expr or "",
        "sizes": "--".join(str(n) for n in arch.layer_sizes),
        "sizes_plain": "-".join(str(n) for n in arch.layer_sizes),
        "layout": arch.layout,
        "dtype": arch.dtype,
        "reduction": arch.reduction,
        "loss_name": LOSS_NAMES[arch.loss.kind],
        "loss_expr": _escape(arch.loss.expr or ""),
        "l2": repr(float(arch.l2)) if arch.l2 else "",
        "n_layers": len(net.nodes),
        "all_dense": all(k == "dense" for k in kinds),
        "has_conv": "conv2d" in kinds,
        "kind_counts": ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds)),
        "eq": eq,
        # label key -> the label written into the .tex, namespaced by the network
        "label": {key: tex_label(arch.name, key) for key in eq},
        "packages": PACKAGES,
        "heading": headings("section"),
        "style": style,
        # the letters the templates write around the printed formulas (bold or not)
        "sym": notation.letters(),
        "summary": summary_context(d, net, T, notation),
        "has_norm": any(k in ("batchnorm", "layernorm") for k in kinds),
        "general": _general_entry(d, notation),
        "kinds": _kind_sections(net, eq),
        "activations": [_activation_entry(a, eq) for a in d.activations.values()],
        "output": _output_entry(d),
        "layers": [_node_entry(nd, net, eq, T) for nd in net.nodes],
        "tangent": _tangent_entry(d, net, eq, T),
        "graph": graph,
        "graph_text": graph["text"],
        "complexity": _complexity(net),
    }
