"""Derivation -> the context of the NumPy module template: names, shapes and code strings.

All math is printed here by symbp.printing; the template only lays the strings out.
"""

from __future__ import annotations

import re
from typing import Any

import sympy as sp

from symbp.derive import Derivation, LayerDerivation, at_layer
from symbp.errors import DerivationError
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


def _first_fresh(expr: sp.Basic) -> sp.Basic | None:
    """The factor of a product that in_place computes first (as a new array), if any."""
    if not isinstance(expr, sp.Mul):
        return None
    return next((f for f in expr.args if _fresh(f)), None)


def _constant(expr: sp.Basic) -> bool:
    """True when expr reads no array (only numbers and scalars such as c): a constant
    error term or loss, which the code must still give the shape of the layer's output."""
    names = {s.name for s in expr.free_symbols if isinstance(s, sp.Symbol)}
    return not any(re.fullmatch(r"(A|Z|G|RG|Ad|Zd|delta)\d+|Y", n) for n in names)


def _array_code(expr: sp.Basic, like: str, printer: NumPyPrinter) -> str:
    """expr as code, shaped like the array `like` when it is a constant."""
    text = printer.doprint(expr)
    return f"np.full_like({like}, {text})" if _constant(expr) else text


def _bare(text: str) -> str:
    """Drop one pair of parentheses enclosing the whole text: "(a - b)" but not "(a)*(b)"."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and i < len(text) - 1:
            return text  # the first "(" closes before the end
    return text[1:-1]


def in_place(
    target: str,
    expr: sp.Basic,
    printer: NumPyPrinter,
    out: str | None = None,
    products: dict[str, sp.MatrixExpr] | None = None,
) -> list[str]:
    """Lines computing target = expr with one new array, then in-place updates.

    A product G * f1 * f2 becomes `t = G; t *= f1; t *= f2`, and a sum of a matrix
    product and a bias becomes `t = A @ W.T; t += b`: fewer temporaries, same value.
    With `out` (code naming a buffer, or None at run time), the new array is written into
    it: a matrix product by np.matmul, a sum over samples by a product with `ones` (row
    layout) or .sum (column), a - y by np.subtract. `products` gives the matrix product
    each G<l> stands for.
    """
    if isinstance(expr, sp.MatAdd):
        matmuls = [a for a in expr.args if isinstance(a, sp.MatMul) and not _broadcast(a)]
        # A product of two matrices first (it can go into `out`), scaled terms (lambda W) after.
        matmuls.sort(key=lambda a: any(not isinstance(f, sp.MatrixExpr) for f in a.args))
        first = matmuls[0] if matmuls else None
        if first is not None:
            rest = [a for a in expr.args if a is not first]
            return [f"{target} = {_product(first, printer, out)}"] + [
                f"{target} += {printer.doprint(a)}" for a in rest
            ]
    if isinstance(expr, sp.MatMul):
        return [f"{target} = {_product(expr, printer, out)}"]
    if isinstance(expr, sp.Mul):
        first = _first_fresh(expr)
        if first is not None:
            made = (products or {}).get(str(first)) if isinstance(first, sp.Symbol) else None
            text = _product(made, printer, out) if made is not None else _new(first, printer, out)
            lines = [f"{target} = {_bare(text)}"]
            # Numbers and the scale c fold into one scalar multiplication.
            scalar = sp.Mul(*[f for f in expr.args if not f.free_symbols - {SCALE}])
            arrays = [f for f in expr.args if f is not first and f.free_symbols - {SCALE}]
            for factor in [*arrays, *([scalar] if scalar != 1 else [])]:
                mask = _indicator(factor)
                text = printer.doprint(mask if mask is not None else factor)
                lines.append(f"{target} *= {text}")
            return lines
    return [f"{target} = {_new(expr, printer, out)}"]


def _new(expr: sp.Basic, printer: NumPyPrinter, out: str | None) -> str:
    """expr as code; a difference or sum of two arrays (a - y) is written into `out`."""
    terms = sp.Add.make_args(expr)
    if out is None or len(terms) != 2 or not _fresh(expr) or expr.has(sp.exp):
        # (1 - exp(u) is printed as -expm1(u), which keeps its digits: no np.subtract)
        return printer.doprint(expr)
    signs = [t.could_extract_minus_sign() for t in terms]
    if all(signs):
        return printer.doprint(expr)
    first, second = terms if not signs[0] else terms[::-1]
    if second.could_extract_minus_sign():
        return f"np.subtract({printer.doprint(first)}, {printer.doprint(-second)}, out={out})"
    return f"np.add({printer.doprint(first)}, {printer.doprint(second)}, out={out})"


def _product(mat: sp.MatMul, printer: NumPyPrinter, out: str | None) -> str:
    """A matrix product (or a sum over samples) as code; into `out` when there is one."""
    text = printer.doprint(mat)
    scalars = [a for a in mat.args if not isinstance(a, sp.MatrixExpr)]
    mats = [a for a in mat.args if isinstance(a, sp.MatrixExpr)]
    if out is None or scalars or len(mats) != 2:
        return text
    left, right = mats
    if isinstance(right, sp.OneMatrix) and right.shape[1] == 1:
        # The sum over samples, delta^T 1. In row layout it runs down the columns of
        # delta, which NumPy's sum does slowly and BLAS's matrix-vector product fast.
        if isinstance(left, sp.Transpose):
            return f"np.matmul(ones, {printer.doprint(left.arg)}, out={out})"
        return f"{printer.attr(left)}.sum(axis=1, keepdims=True, out={out})"
    if any(isinstance(m, sp.OneMatrix) for m in mats):
        return text
    return f"np.matmul({printer.doprint(left)}, {printer.doprint(right)}, out={out})"


def _broadcast(mat: sp.MatMul) -> bool:
    return any(isinstance(a, sp.OneMatrix) for a in mat.args)


class Workspace:
    """The arrays make_workspace(batch) preallocates: key -> shape (code text), in use order.

    Each buffer appears in loss_and_grads as `ws.get("key")`: the array when the caller
    passed a workspace, None otherwise, in which case NumPy allocates as usual.
    """

    def __init__(self, row: bool) -> None:
        self.row = row
        self.shapes: dict[str, str] = {}

    def per_sample(self, key: str, units: int) -> str:
        """A buffer holding `units` values for each sample of the batch."""
        return self._add(key, f"(batch, {units})" if self.row else f"({units}, batch)")

    def weights(self, layer: LayerDerivation) -> str:
        return self._add(f"dW{layer.index}", f"({layer.n_out}, {layer.n_in})")

    def bias(self, layer: LayerDerivation) -> str:
        shape = f"({layer.n_out},)" if self.row else f"({layer.n_out}, 1)"
        return self._add(f"db{layer.index}", shape)

    def used(self, *steps: list[dict]) -> dict[str, str]:
        """The buffers the printed lines of these steps read (others are left out)."""
        read = set(re.findall(r'ws\.get\("([^"]+)"\)', repr(steps)))
        return {key: shape for key, shape in self.shapes.items() if key in read}

    def _add(self, key: str, shape: str) -> str:
        if self.shapes.setdefault(key, shape) != shape:
            raise DerivationError(
                f"workspace buffer {key} wanted as {self.shapes[key]} and {shape}"
            )
        return f'ws.get("{key}")'


def _is_sigmoid_of_z(layer: LayerDerivation) -> bool:
    return bool(layer.a == 1 / (1 + sp.exp(-sp.Symbol(f"Z{layer.index}", real=True))))


def _activation_code(layer: LayerDerivation, printer: NumPyPrinter) -> tuple[str, bool]:
    """a = f(z), and whether it overwrites z: when z lives in the reused name Z,
    tanh, ReLU and sigmoid write in place (and the identity is z itself)."""
    z = sp.Symbol(f"Z{layer.index}", real=True)
    # A constant activation (x**0, pi, ...) still gives every unit of every sample a value.
    code = _array_code(through_sigmoid(layer.a), printer.doprint(z), printer)
    if printer.doprint(z) != "Z":
        return code, False
    if layer.a == z:
        return code, True
    if layer.a == sp.tanh(z):
        return "np.tanh(Z, out=Z)", True
    if isinstance(layer.a, sp.Piecewise) and _rectified(layer.a) == z:
        return "np.maximum(Z, 0, out=Z)", True
    if _is_sigmoid_of_z(layer):
        printer.used.add("_sigmoid")
        return "_sigmoid(Z, out=Z)", True
    return code, False


def _forward_steps(
    d: Derivation, printer: NumPyPrinter, eq: dict[str, int], ws: Workspace, lse: str
) -> list[dict]:
    """Each layer's lines; `lse` names the log-sum-exp the output softmax also returns
    for the loss in loss_and_grads ("" when the loss does not read it)."""
    steps = []
    for layer in d.layers:
        l = layer.index
        if layer.act is None:
            printer.used.add("_softmax")
            a_code, overwrites = f"_softmax({printer.doprint(sp.Symbol(f'Z{l}'))})", False
        else:
            a_code, overwrites = _activation_code(layer, printer)
        z_name = printer.doprint(sp.Symbol(f"Z{l}"))
        # z goes into the buffer of a when f overwrites it, else into its own buffer.
        out = ws.per_sample(f"A{l}" if overwrites else f"Z{l}", layer.n_out)
        a_ws, a_target_ws = a_code, f"A{l}"
        helper = "_softmax" if layer.act is None else "_sigmoid" if _is_sigmoid_of_z(layer) else ""
        if not overwrites and helper:
            # _softmax(Z<l>) and _sigmoid(Z<l>) take the buffer for a as `out`.
            extra = ", lse=True" if lse and layer.is_output else ""
            a_ws = f"{helper}({z_name}, out={ws.per_sample(f'A{l}', layer.n_out)}{extra})"
            if extra:
                a_target_ws = f"A{l}, {lse}"
        steps.append(
            {
                "index": l,
                "z_lines": in_place(z_name, layer.z, printer),
                "z_lines_ws": in_place(z_name, layer.z, printer, out),
                "a": a_code,
                "a_ws": a_ws,
                "a_target_ws": a_target_ws,
                "eq_z": eq[layer_label("z", l)],
                "eq_a": eq[layer_label("a", l)],
                "activation": layer.activation,
                "sizes": f"{layer.n_in} -> {layer.n_out}",
            }
        )
    return steps


def _delta_lines(
    l: int,
    delta: sp.Expr,
    printer: NumPyPrinter,
    out: str | None = None,
    products: dict[str, sp.MatrixExpr] | None = None,
) -> list[str]:
    """delta<l> = delta, in place; a constant output error (a loss linear in yhat, or one
    that does not depend on it) still gets the shape of A<l>."""
    if _constant(delta):
        return [f"delta{l} = np.full_like(A{l}, {printer.doprint(delta)})"]
    return in_place(f"delta{l}", delta, printer, out, products)


def _backward_steps(
    d: Derivation, printer: NumPyPrinter, eq: dict[str, int], ws: Workspace
) -> list[dict]:
    products = {f"G{layer.index - 1}": layer.back for layer in d.layers if layer.back is not None}
    steps = []
    for layer in reversed(d.layers):
        l = layer.index
        delta = through_sigmoid(layer.delta)
        # delta<l> is written while only delta<l+1> is alive, so error terms two layers
        # apart share a buffer when their widths match: two buffers per width in all.
        parity = "odd" if l % 2 else "even"
        out = ws.per_sample(f"delta_{parity}_{layer.n_out}", layer.n_out)
        plain = _delta_lines(l, delta, printer)
        read = set(re.findall(r"\bdelta\d+\b", " ".join(plain)))
        if not read <= {f"delta{l}", f"delta{l + 1}"}:
            raise DerivationError(f"delta{l} reads {sorted(read)}: its buffer cannot be shared")
        steps.append(
            {
                "index": l,
                "is_output": layer.is_output,
                "delta_lines": plain,
                "delta_lines_ws": _delta_lines(l, delta, printer, out, products),
                "dW_lines": in_place(f"dW{l}", layer.dW, printer, ws.weights(layer)),
                "db_lines": in_place(f"db{l}", layer.db, printer, ws.bias(layer)),
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
            "a_dot": _array_code(through_sigmoid(t.a_dot), f"Zd{t.index}", printer),
        }
        for t in tangents
    ]
    backward = [
        {
            "index": t.index,
            "r_delta": _array_code(through_sigmoid(t.r_delta), f"A{t.index}", printer),
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


def _loss_expr(d: Derivation) -> sp.Expr:
    return through_sigmoid(at_layer(d.output.loss_array, len(d.layers)))


def _loss_reuse(d: Derivation, printer: NumPyPrinter) -> dict[str, str]:
    """The loss as loss_and_grads computes it, reading what the step computes anyway.

    - After a softmax, log sum_k exp(z_k) is a by-product of the softmax (the same max,
      exp and sum): the forward pass returns it as lse<L>.
    - When the first array in_place computes for delta<L> (the A - Y of c (A - Y), or
      any other sum) occurs in the loss, as with mse, it is computed once, into delta<L>'s
      buffer, and the loss reads it there before the other factors multiply in.
    Returns the loss code, "lse" (the name, or "") and "common" (the shared array, or "").
    """
    output = d.layers[-1]
    L = output.index
    loss = _loss_expr(d)
    reuse = {"lse": "", "common": ""}
    if output.act is None:
        sums = {u: sp.Symbol(f"lse{L}") for u in loss.atoms(LogSumExp) if str(u.args[0]) == f"Z{L}"}
        if sums:
            loss = loss.xreplace(sums)
            reuse["lse"] = f"lse{L}"
    first = _first_fresh(through_sigmoid(output.delta))
    if isinstance(first, sp.Add) and loss.has(first):
        reuse["common"] = printer.doprint(first)
        loss = loss.xreplace({first: sp.Symbol(f"delta{L}")})
    return {**reuse, "loss": _array_code(loss, "Y", printer)}


def _sizes_text(sizes: tuple[int, ...]) -> str:
    """'784-512-10', or for a deep network '1-1-1-...-1 (1001 sizes)': one short line."""
    if len(sizes) <= 12:
        return "-".join(map(str, sizes))
    head, tail = "-".join(map(str, sizes[:3])), "-".join(map(str, sizes[-2:]))
    return f"{head}-...-{tail} ({len(sizes)} sizes)"


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
    ws = Workspace(row)
    loss_ws = _loss_reuse(d, printer)
    forward = _forward_steps(d, printer, eq, ws, loss_ws["lse"])
    backward = _backward_steps(d, printer, eq, ws)
    loss_code = _array_code(_loss_expr(d), "Y", printer)
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
        "sizes_text": _sizes_text(arch.layer_sizes),
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
        "loss_ws": loss_ws,
        "loss_from_logits": d.output.loss_from_logits,
        "keep_z": sorted(keep_z),
        "n_layers": L,
        "sample_axis": 0 if row else 1,
        "unit_axis": 1 if row else 0,
        "helpers": sorted(printer.used),
        "workspace": ws.used(forward, backward),
        "uses_ones": "np.matmul(ones," in repr(backward),
        "eq_loss": eq["eq:loss"],
    }
