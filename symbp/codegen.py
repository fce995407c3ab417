"""Derivation -> the context of the NumPy module template: names, shapes and code strings.

All math is printed here by symbp.printing; the template only lays the strings out.
"""

from __future__ import annotations

import re
from typing import Any

import sympy as sp

from symbp.derive import Derivation, LayerDerivation, at_layer
from symbp.labels import derivation_numbering, layer_label
from symbp.output import SCALE, LogSumExp, UnitSum
from symbp.printing import NumPyPrinter, _indicator, _rectified
from symbp.stable import through_sigmoid
from symbp.tangent import LayerTangent

HE_INIT = ("relu", "leaky_relu", "elu")


def _init_std(layer: LayerDerivation) -> tuple[str, str]:
    """Initial weight scale: He for rectifiers, Glorot (normal) otherwise."""
    if layer.activation in HE_INIT:
        return f"np.sqrt(2 / {layer.n_in})", "He"
    return f"np.sqrt(2 / ({layer.n_in} + {layer.n_out}))", "Glorot"


def _names(d: Derivation, printer_row: bool) -> dict[str, str]:
    """Derivation symbols -> code names (G<l>: dL/dA^(l), printed as the product it is)."""
    names = {"c": "scale", "Y": "Y", "lambda": repr(float(d.arch.l2))}
    probe = NumPyPrinter(printer_row)
    for layer in d.layers:
        if layer.back is not None:
            names[f"G{layer.index - 1}"] = f"({probe.doprint(layer.back)})"
    return names


def _fresh(expr: sp.Basic) -> bool:
    """True when printing expr yields a new array of the layer's full shape.

    Only such an array may be updated in place: a sum over units (shape (1, n)) may not.
    """
    if isinstance(expr, sp.Symbol):
        return expr.name.startswith("G")  # G<l> is printed as a matrix product
    if not (isinstance(expr, (sp.Add, sp.Function)) or isinstance(expr, sp.Pow) and expr.exp > 0):
        return False
    reduced = {u: sp.Dummy() for u in expr.atoms(UnitSum, LogSumExp)}
    names = {s.name for s in expr.xreplace(reduced).free_symbols if isinstance(s, sp.Symbol)}
    return any(re.fullmatch(r"(A|Z|G)\d+|Y", n) for n in names)


def _bare(text: str) -> str:
    """Drop one pair of enclosing parentheses."""
    return text[1:-1] if text.startswith("(") and text.endswith(")") else text


def in_place(target: str, expr: sp.Basic, printer: NumPyPrinter) -> list[str]:
    """Lines computing target = expr with one new array, then in-place updates.

    A product G * f1 * f2 becomes `t = G; t *= f1; t *= f2`, and a sum of a matrix
    product and a bias becomes `t = A @ W.T; t += b`: fewer temporaries, same value.
    """
    if isinstance(expr, sp.MatAdd):
        first = next((a for a in expr.args if isinstance(a, sp.MatMul) and not _broadcast(a)), None)
        if first is not None:
            rest = [a for a in expr.args if a is not first]
            return [f"{target} = {printer.doprint(first)}"] + [
                f"{target} += {printer.doprint(a)}" for a in rest
            ]
    if isinstance(expr, sp.Mul):
        first = next((f for f in expr.args if _fresh(f)), None)
        if first is not None:
            lines = [f"{target} = {_bare(printer.doprint(first))}"]
            # Numbers and the scale c fold into one scalar multiplication.
            scalar = sp.Mul(*[f for f in expr.args if not f.free_symbols - {SCALE}])
            arrays = [f for f in expr.args if f is not first and f.free_symbols - {SCALE}]
            for factor in [*arrays, *([scalar] if scalar != 1 else [])]:
                mask = _indicator(factor)
                text = printer.doprint(mask if mask is not None else factor)
                lines.append(f"{target} *= {text}")
            return lines
    return [f"{target} = {printer.doprint(expr)}"]


def _broadcast(mat: sp.MatMul) -> bool:
    return any(isinstance(a, sp.OneMatrix) for a in mat.args)


def _activation_code(layer: LayerDerivation, printer: NumPyPrinter) -> str:
    """a = f(z); when z lives in the reused name Z, tanh, ReLU and sigmoid overwrite it."""
    z = sp.Symbol(f"Z{layer.index}", real=True)
    code = printer.doprint(through_sigmoid(layer.a))
    if printer.doprint(z) != "Z":
        return code
    if layer.a == sp.tanh(z):
        return "np.tanh(Z, out=Z)"
    if isinstance(layer.a, sp.Piecewise) and _rectified(layer.a) == z:
        return "np.maximum(Z, 0, out=Z)"
    if layer.a == 1 / (1 + sp.exp(-z)):
        printer.used.add("_sigmoid")
        return "_sigmoid(Z, out=Z)"
    return code


def _forward_steps(d: Derivation, printer: NumPyPrinter, eq: dict[str, int]) -> list[dict]:
    steps = []
    for layer in d.layers:
        l = layer.index
        if layer.act is None:
            printer.used.add("_softmax")
            a_code = f"_softmax({printer.doprint(sp.Symbol(f'Z{l}'))})"
        else:
            a_code = _activation_code(layer, printer)
        steps.append(
            {
                "index": l,
                "z_lines": in_place(printer.doprint(sp.Symbol(f"Z{l}")), layer.z, printer),
                "a": a_code,
                "eq_z": eq[layer_label("z", l)],
                "eq_a": eq[layer_label("a", l)],
                "activation": layer.activation,
                "sizes": f"{layer.n_in} -> {layer.n_out}",
            }
        )
    return steps


def _backward_steps(d: Derivation, printer: NumPyPrinter, eq: dict[str, int]) -> list[dict]:
    steps = []
    for layer in reversed(d.layers):
        l = layer.index
        steps.append(
            {
                "index": l,
                "is_output": layer.is_output,
                "delta_lines": in_place(f"delta{l}", through_sigmoid(layer.delta), printer),
                "dW": printer.doprint(layer.dW),
                "db": printer.doprint(layer.db),
                "eq_delta": eq[layer_label("delta", l)],
                "eq_dW": eq[layer_label("dW", l)],
                "eq_db": eq[layer_label("db", l)],
            }
        )
    return steps


def _tangent_steps(
    tangents: tuple[LayerTangent, ...], printer: NumPyPrinter, names: dict[str, str]
) -> tuple[list[dict], list[dict]]:
    """Forward-mode lines (z', a') and R-operator lines (R{delta}, R{dW}, R{db})."""
    for t in tangents:
        if t.back_r is not None:
            names[f"RG{t.index - 1}"] = f"({printer.doprint(t.back_r)})"
    forward = [
        {
            "index": t.index,
            "z_dot": printer.doprint(t.z_dot),
            "a_dot": printer.doprint(through_sigmoid(t.a_dot)),
        }
        for t in tangents
    ]
    backward = [
        {
            "index": t.index,
            "r_delta": printer.doprint(through_sigmoid(t.r_delta)),
            "dW": printer.doprint(t.dW_r),
            "db": printer.doprint(t.db_r),
        }
        for t in reversed(tangents)
    ]
    return forward, backward


def _loads(text: str, pattern: str, direction: str = "") -> list[str]:
    """`name = source` lines for the names matching pattern that the code text reads.

    W<l> come from params, Wd<l>/bd<l> from the direction dict (tangents or vectors),
    Ad<l>/Zd<l> from the tangent pass, delta<l> from the backward pass, A/Z from the cache.
    """
    found = set(re.findall(pattern, text))
    names = sorted(found, key=lambda n: (n.rstrip("0123456789"), int(re.sub(r"^\D+", "", n))))
    return [f"{name} = {_source(name, direction)}" for name in names]


def _source(name: str, direction: str) -> str:
    kind = name.rstrip("0123456789")
    layer = name[len(kind) :]
    if kind in ("Wd", "bd"):
        return f'{direction}["{kind[0]}{layer}"]'
    container = {"W": "params", "Ad": "tan", "Zd": "tan", "delta": "deltas"}.get(kind, "cache")
    return f'{container}["{name}"]'


def _loss_code(d: Derivation, printer: NumPyPrinter) -> str:
    renamed = at_layer(d.output.loss_array, len(d.layers))
    return printer.doprint(through_sigmoid(renamed))


def module_context(d: Derivation) -> dict[str, Any]:
    """Everything module.py.j2 needs, as plain strings, numbers and lists."""
    arch = d.arch
    row = arch.layout == "row"
    eq = derivation_numbering(d)
    L = len(d.layers)
    keep_z = {layer.index for layer in d.layers if layer.stores_z}
    if d.output.loss_from_logits:
        keep_z.add(L)
    names = _names(d, row)
    # A pre-activation the backward pass does not need lives in one reused name, Z.
    names.update({f"Z{layer.index}": "Z" for layer in d.layers if layer.index not in keep_z})
    printer = NumPyPrinter(row, names)
    forward = _forward_steps(d, printer, eq)
    backward = _backward_steps(d, printer, eq)
    loss_code = _loss_code(d, printer)
    layers = []
    for layer in d.layers:
        std, scheme = _init_std(layer)
        layers.append(
            {
                "index": layer.index,
                "n_in": layer.n_in,
                "n_out": layer.n_out,
                "std": std,
                "scheme": scheme,
                "bias_shape": f"({layer.n_out},)" if row else f"({layer.n_out}, 1)",
                "activation": layer.activation,
            }
        )
    tan_forward, tan_backward = _tangent_steps(d.tangents, printer, names)
    tan_text = " ".join(f"{t['z_dot']} {t['a_dot']}" for t in tan_forward)
    hvp_text = " ".join(f"{t['r_delta']} {t['dW']} {t['db']}" for t in tan_backward)
    return {
        "delta_loads": _loads(
            " ".join(line for b in backward for line in b["delta_lines"]), r"\b[AZW]\d+\b"
        ),
        "tangent_forward": tan_forward,
        "tangent_backward": tan_backward,
        "tangent_loads": _loads(tan_text, r"\b(?:[AZW]|Wd|bd)\d+\b", "tangents"),
        "hvp_loads": _loads(hvp_text, r"\b(?:[AZW]|Wd|Ad|Zd|delta)\d+\b", "vectors"),
        "name": arch.name,
        "layer_sizes": arch.layer_sizes,
        "layout": arch.layout,
        "dtype": arch.dtype,
        "reduction": arch.reduction,
        "loss_kind": arch.loss.kind,
        "loss_text": arch.loss.kind if arch.loss.kind != "expr" else f"expr: {arch.loss.expr}",
        "l2": repr(float(arch.l2)) if arch.l2 else "",
        "layers": layers,
        "forward": forward,
        "backward": backward,
        "loss_elementwise": loss_code,
        "loss_from_logits": d.output.loss_from_logits,
        "keep_z": sorted(keep_z),
        "n_layers": L,
        "sample_axis": 0 if row else 1,
        "unit_axis": 1 if row else 0,
        "helpers": sorted(printer.used),
        "eq_loss": eq["eq:loss"],
    }
