"""Derivation -> the context of the LaTeX template: every formula printed from SymPy.

The template holds prose and layout; each equation's TeX comes from the derivation
object through symbp.latex, so the document shows what SymPy actually derived.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from symbp.calculus import A as A_SCALAR
from symbp.calculus import ActivationDerivation
from symbp.complexity import backward_forward_ratio, layer_costs
from symbp.derive import Derivation, LayerDerivation, at_layer, general_batch, unit_loss
from symbp.labels import activation_label, derivation_numbering, layer_label
from symbp.latex import tex
from symbp.output import YHAT_VAR

INDEX_STEPS = ("z_def", "dz_dW", "dz_db", "dz_da", "dL_dW", "dL_db", "dL_da")

LOSS_NAMES = {
    "mse": "mean squared error",
    "bce": "binary cross-entropy",
    "cross_entropy": "cross-entropy",
    "expr": "custom loss",
}


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
    return {
        "label": activation_label(act.name),
        "number": eq[activation_label(act.name)],
        "name": _escape(act.name),
        "raw_name": act.name,
        "f": tex(act.f),
        "raw": tex(act.raw),
        "simplified": tex(act.simplified),
        "in_a": tex(act.in_a) if act.in_a is not None else "",
        "needs": act.needs,
        "method": act.method,
        "uses_x": act.backward_form.has(x),
        "check": tex(sp.Eq(act.in_a.subs(A_SCALAR, act.f), act.simplified, evaluate=False))
        if act.in_a is not None and act.needs == "a"
        else "",
    }


def _layer_entry(d: Derivation, layer: LayerDerivation, eq: dict[str, int]) -> dict[str, Any]:
    l = layer.index
    row = d.arch.layout == "row"
    if layer.act is None:
        a_tex = rf"\operatorname{{softmax}}\left(z^{{({l})}}\right)"
    else:
        a_tex = tex(layer.a)
    return {
        "index": l,
        "n_in": layer.n_in,
        "n_out": layer.n_out,
        "activation": _escape(layer.activation),
        "raw_activation": layer.activation,
        "is_output": layer.is_output,
        "a": a_tex,
        "delta": tex(layer.delta),
        "dW": tex(layer.dW, batch=True),
        "db": tex(layer.db, batch=True),
        "z_batch": tex(layer.z, batch=True),
        "W_shape": f"{layer.n_out} \\times {layer.n_in}",
        "A_shape": f"n \\times {layer.n_out}" if row else f"{layer.n_out} \\times n",
        "stores": "z" if layer.stores_z else "a",
        "eq": {kind: eq[layer_label(kind, l)] for kind in ("z", "a", "delta", "dW", "db")},
    }


def _output_entry(d: Derivation) -> dict[str, Any]:
    out = d.output
    L = len(d.layers)
    return {
        "unit_loss": tex(unit_loss(d.arch).subs(YHAT_VAR, sp.Symbol("yhat"))),
        "dl_da": tex(out.dl_da),
        "jacobian": tex(out.jacobian),
        "delta_raw": tex(out.delta_raw),
        "delta": tex(out.delta),
        "delta_array": tex(at_layer(out.delta_array, L)),
        "assumption": out.assumption or "",
        "loss_value": tex(at_layer(out.loss_array, L)),
        "from_logits": out.loss_from_logits,
        "softmax": d.layers[-1].act is None,
    }


def _tangent_entry(d: Derivation, eq: dict[str, int]) -> dict[str, Any]:
    """Forward-mode and R-operator equations, general (index form) and per layer."""
    from symbp.tangent import tangent_calculus

    calc = tangent_calculus()
    layers = [
        {
            "index": t.index,
            "a_dot": tex(t.a_dot),
            "r_delta": tex(t.r_delta),
            "eq_a_dot": eq[layer_label("a-dot", t.index)],
            "eq_r_delta": eq[layer_label("r-delta", t.index)],
        }
        for t in d.tangents
    ]
    return {
        "z_dot": tex(calc.z_dot),
        "dW_r": tex(calc.dW_r),
        "db_r": tex(calc.db_r),
        "back_r": tex(calc.back_r),
        "layers": layers,
    }


def _general_entry(d: Derivation) -> dict[str, str]:
    calc = d.calculus
    entry = {name: tex(getattr(calc, name)) for name in INDEX_STEPS}
    batch = general_batch(calc, d.arch.layout == "row")
    entry.update({f"batch_{key}": tex(value, batch=True) for key, value in batch.items()})
    return entry


def _graph(n_layers: int) -> dict[str, Any]:
    """Box positions (mm) of the computation graph x -> z1 -> a1 -> ... -> L."""
    shown = list(range(1, n_layers + 1)) if n_layers <= 3 else [1, 2, None, n_layers]
    nodes: list[dict[str, Any]] = [{"x": 0, "text": "x", "param": ""}]
    x = 0
    for layer in shown:
        x += 17
        if layer is None:
            nodes.append({"x": x, "text": r"\cdots", "param": "", "dots": True})
            continue
        nodes.append(
            {"x": x, "text": f"z^{{({layer})}}", "param": f"W^{{({layer})}}, b^{{({layer})}}"}
        )
        x += 17
        nodes.append({"x": x, "text": f"a^{{({layer})}}", "param": ""})
    x += 17
    nodes.append({"x": x, "text": "L", "param": "y"})
    for node in nodes:
        node.setdefault("dots", False)
    text = " -> ".join(n["text"].replace("^{(", "(").replace(")}", ")") for n in nodes)
    return {"nodes": nodes, "width": x + 12, "text": text.replace("\\cdots", "...")}


def _complexity(sizes: tuple[int, ...]) -> dict[str, Any]:
    costs = layer_costs(sizes)
    return {
        "rows": costs,
        "params": sum(c.params for c in costs),
        "forward": sum(c.forward for c in costs),
        "backward": sum(c.backward for c in costs),
        "ratio": f"{backward_forward_ratio(sizes):.3f}",
    }


def document_context(d: Derivation) -> dict[str, Any]:
    """Everything derivation.tex.j2 needs."""
    arch = d.arch
    eq = derivation_numbering(d)
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
        "n_layers": len(d.layers),
        "eq": eq,
        "general": _general_entry(d),
        "activations": [_activation_entry(a, eq) for a in d.activations.values()],
        "output": _output_entry(d),
        "layers": [_layer_entry(d, layer, eq) for layer in d.layers],
        "tangent": _tangent_entry(d, eq),
        "graph": _graph(len(d.layers)),
        "graph_text": _graph(len(d.layers))["text"],
        "complexity": _complexity(arch.layer_sizes),
    }
