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

from symbp.derivation.derive import Derivation, at_layer, unit_loss
from symbp.derivation.kinds import kind_module
from symbp.derivation.network import Network, derive_network
from symbp.derivation.nodes import NodeDerivation
from symbp.derivation.numbering import hidden_softmax, kinds_of, network_numbering
from symbp.documents.latex import (
    CAPITAL_DELTA,
    COLUMN_WIDTH,
    PLAIN,
    WHERE_PREFIX,
    Display,
    Notation,
    definition_lines,
    line_width,
    tex,
    tex_lines,
    width,
)
from symbp.documents.shown import second_derivative_shown, shown, uses_normal, uses_sigmoid
from symbp.documents.summary import PARAM_TEX, summary_context
from symbp.errors import OutputError
from symbp.frontend.kind_keys import KINDS
from symbp.ir.bindings import Kind
from symbp.ir.labels import (
    SECTION_LEVELS,
    activation_label,
    layer_label,
    section_label,
    tex_label,
)
from symbp.ir.naming import Role, array
from symbp.ir.reductions import LogSumExp
from symbp.options import STYLES
from symbp.symbolic.calculus import A as A_SCALAR
from symbp.symbolic.calculus import ActivationDerivation, reading_kept
from symbp.symbolic.cse import common_subexpressions
from symbp.symbolic.indexed import N_UNITS, J, K, sum_terms
from symbp.symbolic.logits import LogitsError
from symbp.symbolic.output import (
    YHAT_VAR,
    is_softplus_log,
    softmax_jacobian,
    softmax_vjp,
    softmax_vjp_indexed,
)

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


def _broken(head: str, expr: sp.Expr) -> Display:
    """head + expr as a display line, broken into lines when long."""
    return Display(head, tuple(tex_lines(expr, False, {}, frozenset(), line_width() - 10)))


HEAD_WIDTH = 6  # the glyphs of a head such as "f'(x) = "


def _side_by_side(items: list[tuple[str, sp.Expr]], T: _Tex | None = None) -> list[Any]:
    """Displays head + expr, those that fit a line each packed side by side (", \\qquad"
    between them) while the line has room; long ones broken on lines of their own (with T,
    their repeated subexpressions named xi_k below them, as every long display's)."""
    out: list[Any] = []
    used = line_width()
    for head, expr in items:
        size = width(expr) + HEAD_WIDTH
        if size > line_width() - 10:
            out.append(_broken(head, expr) if T is None else T.display(expr, head=head))
            used = line_width()
        elif out and isinstance(out[-1], str) and used + size + 4 <= line_width() - 10:
            out[-1] += rf", \qquad {head}{tex(expr)}"
            used += size + 4
        else:
            out.append(f"{head}{tex(expr)}")
            used = size
    return out


def _activation_entry(
    act: ActivationDerivation, eq: dict[str, int], T: _Tex | None = None
) -> dict[str, Any]:
    """f, f' as SymPy returned it, and the form the code uses."""
    x = sp.Symbol("x", real=True)
    f, raw = shown(act.f), shown(act.raw)  # as defined, but for GELU's Phi and the pieces
    entry = {
        "normal": uses_normal(f) or uses_normal(raw),
        "logistic": uses_sigmoid(f) or uses_sigmoid(raw),
        "label": activation_label(act.name),
        "number": eq[activation_label(act.name)],
        "name": _escape(act.name),
        "raw_name": act.name,
        "f": _broken("f(x) = ", f),
        "raw": _broken("f'(x) = ", raw),
        "simplified": tex(shown(act.simplified)),
        # what the code evaluates, written in z as the sentence says
        "in_z": tex(act.backward_form.xreplace({x: sp.Symbol("z", real=True)})),
        "in_a": tex(shown(act.in_a)) if act.in_a is not None else "",
        "needs": act.needs,
        "method": act.method,
        "second": _broken("f''(x) = ", second_derivative_shown(act.f, x)),
        "uses_x": act.backward_form.has(x),
        **_kept_entry(act, x),
        "check": tex(sp.Eq(act.in_a.subs(A_SCALAR, act.f), act.simplified, evaluate=False))
        if act.in_a is not None and act.needs == "a"
        else "",
    }
    entry["lines"] = [
        *_side_by_side(
            [("f(x) = ", f), ("f'(x) = ", raw), ("f''(x) = ", second_derivative_shown(act.f, x))],
            T,
        ),
        *entry["kept_lines"],
    ]
    return entry


def _kept_entry(act: ActivationDerivation, x: sp.Symbol) -> dict[str, Any]:
    """t = the kept intermediate and f' reading t, both in z (empty when nothing is kept)."""
    if act.kept is None:
        return {"kept": "", "shared": "", "kept_lines": []}
    z, t = sp.Symbol("z", real=True), sp.Symbol("tau", real=True)  # t is the step
    shared = reading_kept(act.backward_form, act.kept, t)  # as the code evaluates it
    kept, shared = act.kept.xreplace({x: z}), shared.xreplace({x: z})
    return {
        "kept": tex(kept),
        "shared": tex(shared),
        # too wide for running text: the two forms as the last rows of the display
        "kept_lines": (
            [_broken(r"\tau = ", kept), _broken("f'(z) = ", shared)]
            if width(kept) + width(shared) > INLINE_WIDTH
            else []
        ),
    }


INLINE_WIDTH = 40  # the glyphs of the two kept forms above which they are displayed


def _softmax_hidden(net: Network) -> dict[str, Any] | None:
    """A hidden softmax's section: SymPy's Jacobian, its sum against g (the error term, by
    units and for the layer) and the Jacobian times z' (the tangent); None without one."""
    layers = hidden_softmax(net)
    if not layers:
        return None
    general = sp.Symbol(r"n_\ell", positive=True, integer=True)
    zd = sp.IndexedBase(r"\dot{z}")
    a_dot = sum_terms(softmax_jacobian().xreplace({K: J, J: K}) * zd[J], J, N_UNITS)
    layer_names = {"A": r"a^{(\ell)}", "G": r"g^{(\ell)}"}
    jacobian = r"\frac{\partial a_k}{\partial z_j} = " + tex(softmax_jacobian())
    summed = r"\delta_j = \sum_{k} g_k \frac{\partial a_k}{\partial z_j}"
    value = "= " + tex(softmax_vjp_indexed().xreplace({N_UNITS: general}))
    layer = r"\delta^{(\ell)} = " + tex(softmax_vjp(), names=layer_names)
    wide = line_width() > COLUMN_WIDTH  # a page-wide line holds two of them, a column one
    return {
        "layers": ", ".join(map(str, layers)),
        "lines": [rf"{jacobian}, \qquad {summed} {value}", layer]
        if wide
        else [jacobian, summed, value, layer],
        "a_dot": tex(a_dot.xreplace({N_UNITS: general})),
        "sequences": any(nd.node.z.sequence for nd in net.nodes if nd.node.index in layers),
    }


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
        # which stable forms the loss uses: log(1 + e^u), log sum_k e^(z_k)
        "softplus": any(is_softplus_log(lg) for lg in out.loss_array.atoms(sp.log)),
        "lse": out.loss_array.has(LogSumExp),
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


class _Tex:
    """LaTeX of the network's expressions, with the names its kinds give their arrays."""

    def __init__(self, net: Network, notation: Notation = PLAIN) -> None:
        self.notation = notation
        self.named = 0  # subexpressions named xi_1, xi_2, ... so far
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
        if width(expr) > line_width():
            expr, named = _named_repeats(expr)
            # xi_k, numbered through the whole document: each name has one meaning
            first = self.named + 1
            self.named += len(named)
            symbols = {u.name: rf"\xi_{{{k}}}" for k, (u, _) in enumerate(named, first)}
            names = {**names, **symbols}
            items: list[tuple[str, float]] = []
            for k, (_, v) in enumerate(named, first):
                if width(v) + WHERE_PREFIX > line_width() - 10:  # a row of its own, broken
                    rows = definition_lines(
                        rf"\xi_{{{k}}}", v, batch, names, self.arrays, notation=self.notation
                    )
                    items += [(row, line_width()) for row in rows]
                else:
                    text = rf"\xi_{{{k}}} = {tex(v, batch, names, self.arrays, self.notation)}"
                    items.append((text, width(v)))
            where = _packed(items)
        lines = tex_lines(expr, batch, names, self.arrays, line_width() - 10, self.notation)
        return Display(head, tuple(lines), tuple(where))


NAMED_WIDTH = 9  # a repeated subexpression at least this wide is named once (u_1 = ...)


def _packed(items: list[tuple[str, float]]) -> list[str]:
    """Definitions u_k = ... packed onto rows of about a line each (", " between them)."""
    rows: list[str] = []
    used: float = line_width()
    for text, size in items:
        if rows and used + size + 6 <= line_width() - 10:
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
        backs = [b for c in net.graph.consumers.get(node.a.key, ()) for t, b in
                 net.nodes[c.index - 1].backs if t is node.a]  # fmt: skip
        g_head = rf"{G}^{{({l})}} = \frac{{\partial L}}{{\partial {A}^{{({l})}}}} = "
        if len(backs) == 1:  # one reader: its formula broken into lines as any display
            delta.insert(0, T.display(backs[0], batch=True, head=g_head))
        else:
            delta.insert(0, g_head + " + ".join(T(b, batch=True) for b in backs))
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
                "tex": f"{n.v(PARAM_TEX[p.symbol])}^{{({p.layer})}}",
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


def _tangent_layers(net: Network, T: _Tex) -> list[dict]:
    """Each layer's a-dot and R{delta} (the appendix); `dirac` when R{delta} holds Dirac's
    delta (the derivative of a kink's step), which the code takes as zero."""
    out = []
    for nd in net.nodes:
        l = nd.node.index
        out.append(
            {
                "a_dot": T.display(nd.a_dot, head=rf"\dot a^{{({l})}} = "),
                "r_delta": T.display(
                    nd.r_delta, head=rf"\mathcal{{R}}\lbrace \delta^{{({l})}}\rbrace = "
                ),
                "label_a_dot": layer_label("a-dot", l),
                "label_r_delta": layer_label("r-delta", l),
                "dirac": nd.r_delta.has(sp.DiracDelta),
            }
        )
    return out


class KindTools:
    """What a kind's document_section writes its box with: the arrays of the general layer
    in the document's notation, gradients, tangents and the R-operator."""

    _LAYERS = {"l": r"\ell", "l-1": r"\ell-1", "m": "m", "r": "r", "l+1": r"\ell+1"}

    def __init__(self, n: Notation, row: bool, l2: bool) -> None:
        self.n, self.row, self.l2, self.images = n, row, l2, False
        self.sequences = False  # the kind reads a sequence (T rows a sample)
        self.on_sequences: set[str] = set()  # the kinds of the network that read one
        self.layers: tuple = ()  # the network's layers of the kind being written
        self.t = n.t

    def v(self, letter: str) -> str:
        return self.n.v(letter)

    def arr(self, letter: str, layer: str) -> str:
        """e.g. arr("A", "l-1") -> A^{(ell-1)}; arr("delta", "m") -> delta^{(m)}."""
        letter = {"Delta": r"\Delta", "delta": r"\delta"}.get(letter, letter)
        return f"{self.n.v(letter)}^{{({self._LAYERS[layer]})}}"

    def grad(self, of: str) -> str:
        return rf"\frac{{\partial L}}{{\partial {of}}}"

    def dot(self, of: str) -> str:
        return rf"\dot{{{of}}}"

    def R(self, of: str) -> str:
        return rf"\mathcal{{R}}\left\lbrace {of} \right\rbrace"

    def decay(self, of: str) -> str:
        """The L2 penalty's term of a weight's gradient (empty without one)."""
        return rf" + \lambda {of}" if self.l2 else ""

    def tex(self, expr: sp.Basic, batch: bool = False, names: dict | None = None) -> str:
        return tex(expr, batch=batch, names=names, notation=self.n)

    def display(
        self, head: str, expr: sp.Basic, names: dict | None = None, stack: bool = False
    ) -> Display:
        """head + expr broken into lines of a column's width (symbp.documents.latex);
        `stack`: the head (without its "=") on a row of its own, "= ..." below it."""
        lines = tex_lines(expr, False, names, frozenset(), line_width() - 10, self.n)
        if stack and line_width() <= COLUMN_WIDTH:
            return Display(head, ("", "= " + lines[0], *lines[1:]))
        if stack:
            return Display(head + " = ", tuple(lines))
        return Display(head, tuple(lines))

    def together(self, *parts: str) -> list[str]:
        """Short equations on one line of a page-wide display (", \\qquad" between them),
        one per line in a column of a two-column paper."""
        return [r", \qquad ".join(parts)] if line_width() > COLUMN_WIDTH else list(parts)

    def lines(self, head: str, *parts: str) -> Display:
        """head + parts written one under the other (a sum of long terms); on a page-wide
        line, the parts of a stacked display ("" first) follow their head on one line."""
        if parts and parts[0] == "" and line_width() > COLUMN_WIDTH:
            return Display(head + " " + " ".join(parts[1:]), ("",))
        return Display(head, parts)


def _box_rows(pairs: list[tuple[str, Any]], shapes: list[str]) -> list[str]:
    """The rows of a kind's box: lhs &= rhs (a tuple rhs continues on indented rows, or on
    the same row on a page-wide line), then the shapes: one per row in a column of a
    two-column paper, two per row on a page."""
    wide = line_width() > COLUMN_WIDTH
    rows = []
    for lhs, rhs in pairs:
        first, *rest = rhs if isinstance(rhs, tuple) else (rhs,)
        if wide:
            rows.append(f"{lhs} &= {' '.join([first, *rest])}")
        else:
            rows.append(f"{lhs} &= {first}")
            rows += [rf"&\qquad {part}" for part in rest]
    step = 2 if wide else 1
    groups = [r", \ ".join(shapes[k : k + step]) for k in range(0, len(shapes), step)]
    return rows + [rf"&\text{{{'shapes: ' if k == 0 else ''}}} {s}" for k, s in enumerate(groups)]


def _kinds(net: Network, tools: KindTools) -> list[dict]:
    """Each kind of the network, as its module lays it out for its document fragment."""
    out = []
    tools.on_sequences = {nd.node.kind for nd in net.nodes if nd.node.inputs[0].sequence}
    for kind in kinds_of(net):
        module = kind_module(kind)
        tools.images = any(nd.node.kind == kind and nd.node.z.image for nd in net.nodes)
        tools.sequences = kind in tools.on_sequences
        tools.layers = tuple(nd.node.layer for nd in net.nodes if nd.node.kind == kind)
        section = module.document_section(kind, tools)
        section["box"] = _box_rows(section["box"], section["shapes"])
        out.append(
            {
                "kind": kind,
                "fragment": module.FRAGMENT,
                "on_images": tools.images,
                "on_sequences": tools.sequences,
                **section,
            }
        )
    return out


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
        params = ", ".join(f"{PARAM_TEX[p.symbol]}^{{({p.layer})}}" for p in node.params)
        nodes.append({"x": x, "text": f"z^{{({layer})}}", "param": params, "dots": False})
        x += 17
        nodes.append({"x": x, "text": f"a^{{({layer})}}", "param": "", "dots": False})
        where[layer] = x + 5
    x += 17
    nodes.append({"x": x, "text": "L", "param": "y", "dots": False})
    skips: list[dict[str, Any]] = []
    for nd in net.nodes:
        # a node reading a second tensor (an add's `from`) draws a skip from it
        if len(nd.node.inputs) > 1 and nd.node.index in where:
            source = nd.node.inputs[1].layer
            if source in where and source != nd.node.index - 1:
                start, end = where[source], where[nd.node.index] - 17
                # a skip that spans an earlier one dips lower, so the curves do not cross
                depth = -6 - 4 * len([k for k in skips if k["x0"] < end and start < k["x1"]])
                skips.append({"x0": start, "x1": end, "mid": (start + end) / 2, "depth": depth})
    text = " -> ".join(n["text"].replace("^{(", "(").replace(")}", ")") for n in nodes)
    text = text.replace("\\cdots", "...")
    for nd in net.nodes:
        if len(nd.node.inputs) > 1:
            text += f"; a({nd.node.inputs[1].layer}) -> z({nd.node.index})"
    width = x + 12
    # The unit is a fraction of the line width, so the figure fits a column of any width:
    # 1 mm on the standalone document's 160 mm line, and a wide graph at most 15/16 of it.
    unit = min(1 / 160, 0.9375 / width)
    bottom = min([0, *(k["depth"] // 2 - 1 for k in skips)])
    return {
        "nodes": nodes,
        "width": width,
        "height": 24 - bottom,
        "bottom": bottom,
        "text": text,
        "skips": skips,
        "unit": f"{unit:.6f}",
    }


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


def _layer_rows(net: Network, n: Notation) -> list[list[str]]:
    """Table 1: each layer's index, kind, input -> output shape, activation, parameters."""
    rows = []
    for nd in net.nodes:
        node = nd.node
        skip = f" (from {node.inputs[1].layer})" if len(node.inputs) > 1 else ""
        kind = node.kind + skip
        none = nd.act is not None and nd.act.passes_through  # f' = 1: no activation
        params = ", ".join(
            f"${n.v(PARAM_TEX[p.symbol])}^{{({p.layer})}}$ (tied)"
            if p.layer != node.index
            else f"${n.v(PARAM_TEX[p.symbol])}^{{({p.layer})}} "
            f"\\in \\mathbb{{R}}^{{{_times(p.shape)}}}$"
            for p in node.params
        )
        rows.append(
            [
                str(node.index),
                kind,
                f"${_times(node.inputs[0].shape)}$ $\\to$ ${_times(node.z.shape)}$",
                "$-$" if none else _escape(node.layer.activation),
                params or "$-$",
            ]
        )
    return rows


def _times(shape: tuple[int, ...]) -> str:
    return r" \times ".join(map(str, shape))


def _notation_rows(d: Derivation, kinds: list[str], tools: KindTools) -> list[list[str]]:
    """The symbols the document uses, each with its one meaning: the general ones, then
    those of the kinds, activations and loss the network has."""
    v, t = tools.v, tools.t
    rows = [
        [f"${v('x')} = {v('a')}^{{(0)}}$, ${v('y')}$", "one input sample and its target"],
        ["$n$, $s$", "the batch size; a sample's index"]
        if not d.arch.positions
        else [
            "$n$, $s$; $B$, $T$",
            "the rows of a batch, one per position, and a row's index; the sequences of the "
            "batch and their positions ($n = B T$)",
        ],
        [r"$\kappa$", "the batch scale, $1/n$ for reduction mean, $1$ for sum"],
        [
            r"$\ell$, $m$, $\mathcal{C}(\ell)$",
            r"a layer; a layer that reads $a^{(\ell)}$; the set of those",
        ],
        [
            f"${v('z')}^{{(\\ell)}}$, ${v('a')}^{{(\\ell)}}$, $n_\\ell$",
            r"layer $\ell$'s pre-activation and activation for one sample, and its size",
        ],
        [
            r"$f_\ell$, $f_\ell'$, $f_\ell''$",
            r"layer $\ell$'s activation function and its derivatives",
        ],
        [
            f"${v(chr(92) + 'delta')}^{{(\\ell)}}$, ${v('g')}^{{(\\ell)}}$",
            r"$\partial L / \partial z^{(\ell)}$ and $\partial L / \partial a^{(\ell)}$",
        ],
        [f"${v('Z')}$, ${v('A')}$, ${v(chr(92) + 'Delta')}$, ${v('G')}$", "the same for the batch"],
        ["$L$, $\\mathcal{E}$", "the loss and its term for one output unit"],
        [
            f"$\\odot$, $M{t}$, $\\mathbf{{1}}$",
            "the elementwise product, the transpose, a column of ones",
        ],
        ["$[i = j]$", "1 when $i = j$, else 0 (Iverson's bracket)"],
    ]
    # each kind's own symbols, in the order the kinds appear; a row two kinds share once
    for kind in kinds:
        tools.sequences = kind in tools.on_sequences
        for symbols, meaning in kind_module(kind).notation(kind, tools):
            if [symbols, meaning] not in rows:
                rows.append([symbols, meaning])
    if d.arch.l2:
        rows.append([r"$\lambda$, $\mathcal{W}$", "the $L_2$ penalty's weight and its weights"])
    rows.append(
        [
            r"$t$, $\dot u$, $\mathcal{R}\lbrace u \rbrace$",
            r"the distance along a direction; $du/dt$ forward; $du/dt$ of a backward quantity",
        ]
    )
    rows.append(
        [
            r"$\theta$, $\nabla^2_\theta L$, $v$",
            "the parameters, the Hessian of the loss, a direction",
        ]
    )
    return rows


def _consumers_text(net: Network) -> tuple[str, bool]:
    """Which layers read each hidden layer's output, from the graph: the sentence under the
    summary box, and whether any is read by more than one."""
    special = []
    for nd in net.nodes[:-1]:
        readers = [c.index for c in net.graph.consumers.get(nd.node.a.key, ())]
        if readers != [nd.node.index + 1]:
            special.append(
                rf"\mathcal{{C}}({nd.node.index}) = "
                rf"\lbrace {', '.join(map(str, readers))} \rbrace"
            )
    if not special:
        return (
            r"Here each layer is read by the next alone: "
            r"$\mathcal{C}(\ell) = \lbrace \ell + 1 \rbrace$.",
            False,
        )
    return (
        r"Here $\mathcal{C}(\ell) = \lbrace \ell + 1 \rbrace$ except "
        + ", ".join(f"${x}$" for x in special)
        + ".",
        True,
    )


def document_context(
    d: Derivation,
    net: Network | None = None,
    style: str = "full",
    notation: Notation = PLAIN,
    show_layers: bool = False,
) -> dict[str, Any]:
    """Everything the document templates need. `style` "paper" leaves out the narration
    about SymPy, storage and overflow and the cost section (the equations and their numbers
    are the same); `notation` sets bold vectors and the transpose's symbol; `show_layers`
    adds the layer-by-layer appendix, numbered after every equation the code cites."""
    if style not in STYLES:
        raise OutputError(
            f"unknown document style {style!r}", fix=f"choose one of {', '.join(STYLES)}"
        )
    arch = d.arch
    net = net or derive_network(d)
    eq = network_numbering(d, net)
    T = _Tex(net, notation)
    graph = _graph(net)
    kinds = kinds_of(net)
    tools = KindTools(notation, arch.layout == "row", bool(arch.l2))
    consumers, branching = _consumers_text(net)
    kind_sections = _kinds(net, tools)
    summary = summary_context(d, net, T, notation, kind_sections)
    summary.update(consumers=consumers, branching=branching)
    sections = {
        "kinds": "Layer kinds",
        "notation": "Notation",
        "tangent": "Forward mode and second order",
        "layers": "Layer by layer",
    }
    # the captioned tables, numbered as LaTeX numbers them (the notation table has no caption)
    tables = {"layer-table": 1, "cost": 2}
    count = {k: sum(nd.node.kind == k for nd in net.nodes) for k in kinds}
    shape = net.nodes[0].node.inputs[0].shape
    if arch.vocab:
        input_text = (
            f"token ids: sequences of $T = {shape[0]}$ tokens from a vocabulary of "
            f"$V = {arch.vocab}$"
        )
    elif len(shape) == 2:
        input_text = f"sequences of $T = {shape[0]}$ positions of {shape[1]} features"
    elif len(shape) > 1:
        input_text = "images of $" + _times(shape) + "$"
    else:
        input_text = f"vectors of {shape[0]}"
    layers = [_node_entry(nd, net, eq, T) for nd in net.nodes] if show_layers else []
    # the appendix's lines (each broken and its repeats named: work only --layers needs)
    tangent_layers = _tangent_layers(net, T) if show_layers else []
    l2_params = ", ".join(
        sorted(
            {
                f"${notation.v(PARAM_TEX[p.symbol])}^{{({p.layer})}}$"
                for nd in net.nodes
                for p in nd.node.params
                if p.decayed
            }
        )
    )
    return {
        "name": _escape(arch.name),
        "raw_name": arch.name,
        "raw_loss_expr": arch.loss.expr or "",
        "loss_expr": _escape(arch.loss.expr or ""),
        "layout": arch.layout,
        "reduction": arch.reduction,
        "loss_name": LOSS_NAMES[arch.loss.kind],
        "l2": repr(float(arch.l2)) if arch.l2 else "",
        "l2_params": l2_params,
        "n_layers": len(net.nodes),
        "kind_counts": ", ".join(f"{c} {k}" for k, c in count.items()),
        "input_text": input_text,
        "has_images": len(shape) == 3,
        "positions": arch.positions,
        "vocab": arch.vocab,
        "mixing": any(KINDS[layer.type].mixes_positions for layer in arch.layers),
        # the layer whose output holds a sample in one row again (a flatten of a sequence)
        "fold": next((n.index for n in net.graph.nodes if n.regroups_rows), 0),
        # a weight read by several layers (a tied LM head): (layer, the owner's parameter)
        "shared": [
            (nd.node.index, f"{notation.v(PARAM_TEX[p.symbol])}^{{({p.layer})}}")
            for nd in net.nodes
            for p in nd.node.params
            if p.layer != nd.node.index
        ],
        "has_softmax_hidden": bool(hidden_softmax(net)),
        "softmax_hidden": _softmax_hidden(net),
        "eq": eq,
        "eqn": eq,  # the same, under a name the Markdown layout's eq macro does not shadow
        # label key -> the label written into the .tex, namespaced by the network
        "tex_label": {key: tex_label(arch.name, key) for key in eq},
        # sections and tables: sec:<network>:<key>, apart from the equations' eq: labels
        "sec_label": {key: section_label(arch.name, key) for key in [*sections, *tables]},
        "sec_title": sections,
        "table_number": tables,
        "packages": PACKAGES,
        "heading": headings("section"),
        "style": style,
        "sym": notation.letters(),
        "summary": summary,
        "layer_rows": _layer_rows(net, notation),
        "notation_rows": _notation_rows(d, kinds, tools),
        "kinds": kind_sections,
        "activations": [
            _activation_entry(a, eq, T) for a in d.activations.values() if not a.passes_through
        ],
        "pass_through": any(a.passes_through for a in d.activations.values()),
        "output": _output_entry(d),
        "show_layers": show_layers,
        "layers": layers,
        "tangent_layers": tangent_layers,
        "dirac": any(t["dirac"] for t in tangent_layers),
        "graph": graph,
        "graph_text": graph["text"],
        "complexity": _complexity(net),
    }
