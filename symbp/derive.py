"""arch -> Derivation: the SymPy intermediate representation both renderers consume.

Work done once: the general layer calculus (symbp.indexed), one derivative per
distinct activation (symbp.calculus) and the output error (symbp.output). Each
layer then only renames matrices, so deriving is linear in depth and independent
of the layer widths.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from symbp import memo
from symbp.activations import X, elementwise_expr
from symbp.calculus import A as A_SCALAR
from symbp.calculus import ActivationDerivation, derive_activation
from symbp.errors import SpecError
from symbp.expr import parse_expression
from symbp.indexed import (
    MAT_A,
    MAT_DELTA,
    MAT_W,
    N_BATCH,
    N_UNITS,
    LayerCalculus,
    layer_calculus,
)
from symbp.output import ARR_A, ARR_Y, ARR_Z, Y_VAR, YHAT_VAR, OutputDerivation, derive_output
from symbp.spec import Arch

L2_WEIGHT = sp.Symbol("lambda", positive=True)  # the file's l2 coefficient

UNIT_LOSSES = {
    "mse": (YHAT_VAR - Y_VAR) ** 2 / 2,
    "bce": -(Y_VAR * sp.log(YHAT_VAR) + (1 - Y_VAR) * sp.log(1 - YHAT_VAR)),
    "cross_entropy": -Y_VAR * sp.log(YHAT_VAR),
}


def unit_loss(arch: Arch) -> sp.Expr:
    """The per-unit loss e(yhat, y) the file declares."""
    if arch.loss.kind == "expr":
        assert arch.loss.expr is not None
        return parse_expression(arch.loss.expr, {"yhat": YHAT_VAR, "y": Y_VAR})
    return UNIT_LOSSES[arch.loss.kind]


@dataclass(frozen=True)
class LayerDerivation:
    """One layer's equations, specialised from the general calculus (matrices by layout)."""

    index: int
    n_in: int
    n_out: int
    activation: str
    act: ActivationDerivation | None  # None: softmax
    is_output: bool
    z: sp.MatrixExpr  # the pre-activation
    a: sp.Expr  # the activation, elementwise in symbol Z<l> (softmax: Softmax marker)
    delta: sp.Expr  # whole-array formula in G<l> (incoming dL/da), A<l>, Z<l>, Y, c; UnitSum
    #                 (a sum over the units of each sample) appears in softmax output errors
    dW: sp.MatrixExpr
    db: sp.MatrixExpr
    back: sp.MatrixExpr | None  # dL/dA^(l-1): what layer l sends to layer l-1
    stores_z: bool  # the backward pass needs Z<l> (its derivative is not in a)

    def __repr__(self) -> str:
        return (
            f"LayerDerivation({self.index}: {self.n_in}->{self.n_out} {self.activation}, "
            f"delta={self.delta}, dW={self.dW}, db={self.db})"
        )


@dataclass(frozen=True)
class Derivation:
    """Everything SymPy derived for one architecture."""

    arch: Arch
    calculus: LayerCalculus
    activations: dict[str, ActivationDerivation]
    output: OutputDerivation
    layers: tuple[LayerDerivation, ...]

    @functools.cached_property
    def tangents(self) -> tuple:
        """Forward-mode and R-operator equations per layer (symbp.tangent), derived on demand."""
        from symbp.tangent import layer_tangents

        return layer_tangents(self)

    def _repr_latex_(self) -> str:
        """Jupyter: the per-layer recursion and gradients as display math."""
        from symbp.latex import tex

        lines = []
        for layer in self.layers:
            l = layer.index
            lines.append(rf"\delta^{{({l})}} &= {tex(layer.delta)}")
            lines.append(
                rf"\frac{{\partial L}}{{\partial W^{{({l})}}}} &= {tex(layer.dW, batch=True)}"
            )
        return "$$\\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}$$"

    def _repr_markdown_(self) -> str:
        """Jupyter: the whole Markdown derivation document."""
        from symbp.pipeline import render_markdown

        return render_markdown(self)

    def __repr__(self) -> str:
        acts = ", ".join(f"{k}: {v.backward_form}" for k, v in self.activations.items())
        return (
            f"Derivation({self.arch.name}: sizes {self.arch.layer_sizes}, "
            f"delta^(L) = {self.output.delta_array}, activations {{{acts}}})"
        )


def layer_symbols(l: int, sizes: tuple[int, ...], row: bool) -> dict[str, sp.Expr]:
    """Layer l's matrices; in row layout per-sample arrays are stored transposed."""
    n_in, n_out = sizes[l - 1], sizes[l]
    shape_a = (N_BATCH, n_in) if row else (n_in, N_BATCH)
    shape_d = (N_BATCH, n_out) if row else (n_out, N_BATCH)
    a_prev = sp.MatrixSymbol(f"A{l - 1}", *shape_a)
    delta = sp.MatrixSymbol(f"delta{l}", *shape_d)
    return {
        "W": sp.MatrixSymbol(f"W{l}", n_out, n_in),
        "b": sp.MatrixSymbol(f"b{l}", n_out, 1),
        "A": a_prev.T if row else a_prev,
        "Delta": delta.T if row else delta,
    }


def _per_sample(expr: sp.MatrixExpr, row: bool) -> sp.MatrixExpr:
    """Row layout stores (n, units) arrays: transpose a per-sample result."""
    return memo.doit(sp.transpose(expr)) if row else expr


def _pre_activation(wab: sp.Tuple) -> sp.MatrixExpr:
    """z = W a + b 1^T from (W, a, b)."""
    w, a, b = wab.args
    return w * a + b * sp.OneMatrix(1, N_BATCH)


def _specialise(calc: LayerCalculus, l: int, sizes: tuple[int, ...], row: bool) -> dict:
    """The general matrix results with layer l's matrices put in."""
    sym = layer_symbols(l, sizes, row)
    names = {MAT_W: sym["W"], MAT_A: sym["A"], MAT_DELTA: sym["Delta"]}
    z = memo.renamed(_pre_activation, sp.Tuple(sym["W"], sym["A"], sym["b"]))
    return {
        "z": _per_sample(z, row),
        "dW": memo.doit(calc.dW_matrix.xreplace(names)),
        "db": memo.doit(calc.db_matrix.xreplace(names)),
        "back": _per_sample(calc.da_matrix.xreplace(names), row) if l > 1 else None,
        "W": sym["W"],
    }


def _activations(arch: Arch) -> dict[str, ActivationDerivation]:
    """Derive each distinct elementwise activation of the network once."""
    custom = {name: parse_expression(text, {"x": X}) for name, text in arch.activations}
    derived: dict[str, ActivationDerivation] = {}
    for layer in arch.layers:
        name = layer.activation
        if name != "softmax" and name not in derived:
            derived[name] = derive_activation(name, elementwise_expr(name, custom))
    return derived


def at_layer(expr: sp.Expr, l: int) -> sp.Expr:
    """Whole-array symbols A, Z of the output formulas -> this layer's A<l>, Z<l>."""
    return expr.xreplace(
        {ARR_A: sp.Symbol(f"A{l}", real=True), ARR_Z: sp.Symbol(f"Z{l}", real=True)}
    )


def fprime_at(act: ActivationDerivation, l: int) -> sp.Expr:
    """f'(z^(l)) as the code evaluates it: in A<l> when proven, else in Z<l>."""
    return act.backward_form.xreplace(
        {A_SCALAR: sp.Symbol(f"A{l}", real=True), X: sp.Symbol(f"Z{l}", real=True)}
    )


def _hidden_delta(act: ActivationDerivation, l: int) -> sp.Expr:
    """delta^(l) = G^(l) * f'(z^(l)), G^(l) = dL/da^(l) arriving from layer l + 1."""
    return sp.Symbol(f"G{l}", real=True) * fprime_at(act, l)


def _layer(
    arch: Arch, calc: LayerCalculus, acts: dict, out: OutputDerivation, l: int
) -> LayerDerivation:
    sizes = arch.layer_sizes
    name = arch.layers[l - 1].activation
    act = acts.get(name)
    is_output = l == len(arch.layers)
    mats = _specialise(calc, l, sizes, arch.layout == "row")
    if is_output:
        # The output error is derived for K units; the layer has sizes[l] of them.
        delta = at_layer(out.delta_array, l).xreplace({N_UNITS: sp.Integer(sizes[l])})
    else:
        assert act is not None
        delta = _hidden_delta(act, l)
    activation = (
        sp.Symbol("softmax") if act is None else act.f.xreplace({X: sp.Symbol(f"Z{l}", real=True)})
    )
    dW = mats["dW"]
    if arch.l2:
        dW = dW + L2_WEIGHT * mats["W"]
    return LayerDerivation(
        index=l,
        n_in=sizes[l - 1],
        n_out=sizes[l],
        activation=name,
        act=act,
        is_output=is_output,
        z=mats["z"],
        a=activation,
        delta=delta,
        dW=dW,
        db=mats["db"],
        back=mats["back"],
        # z is stored when the error term reads it or f' is evaluated in z (jvp and hvp
        # need f'(z) even where the loss makes the output error constant).
        stores_z=delta.has(sp.Symbol(f"Z{l}", real=True)) or (act is not None and act.needs == "z"),
    )


_UNDEFINED = (sp.zoo, sp.nan, sp.oo, -sp.oo)


def _check_defined(arch: Arch, out: OutputDerivation) -> None:
    """Refuse a loss that is infinite or undefined for every input (log(0) of a constant
    output activation, say): there is no gradient to derive."""
    if not (out.delta_array.has(*_UNDEFINED) or out.loss_array.has(*_UNDEFINED)):
        return
    last = len(arch.layers) - 1
    where = arch.mark("loss") or arch.mark("loss.expr")
    raise SpecError(
        f"the loss is undefined or infinite for every input: the output activation "
        f"'{arch.layers[last].activation}' makes it {out.loss_array}",
        file=arch.source,
        line=where[0] if where else None,
        column=where[1] if where else None,
        path="loss",
        fix="use an output activation whose values lie in the loss's domain "
        "(for bce and cross_entropy, between 0 and 1 and not constant)",
    )


def _check_printable(acts: dict[str, ActivationDerivation], out: OutputDerivation) -> None:
    """Print the distinct formulas once before any per-layer work, so that a network the
    printer must refuse is refused in milliseconds, not after its last layer."""
    from symbp.printing import NumPyPrinter

    probe = NumPyPrinter(row_layout=False)
    for act in acts.values():
        probe.doprint(act.f)
        probe.doprint(act.backward_form)
    probe.doprint(out.delta_array)
    probe.doprint(out.loss_array)


def unsupported(arch: Arch) -> int | None:
    """The index of the first layer the chain equations do not cover (None: all dense)."""
    for l, layer in enumerate(arch.layers):
        if layer.type != "dense" or not layer.bias:
            return l
    return None


def check_supported(arch: Arch) -> None:
    """The chain code generator covers dense layers with biases; refuse the rest clearly."""
    l = unsupported(arch)
    if l is None:
        return
    layer = arch.layers[l]
    what = f"type {layer.type}" if layer.type != "dense" else "bias: false"
    where = arch.mark(f"layers[{l}]")
    raise SpecError(
        f"layer {l}: {what} is not supported by this version's code generator yet",
        file=arch.source,
        line=where[0] if where else None,
        column=where[1] if where else None,
        path=f"layers[{l}]",
        fix="use dense layers with biases",
    )


def derive(arch: Arch) -> Derivation:
    """SymPy's derivation of backpropagation for `arch` (an Arch, or a path to arch.yaml)."""
    if not isinstance(arch, Arch):
        from symbp.spec import load_arch

        arch = load_arch(arch)
    calc = layer_calculus()
    acts = _activations(arch)
    out_name = arch.layers[-1].activation
    out = derive_output(
        unit_loss(arch), acts.get(out_name), probability_target=arch.loss.kind == "cross_entropy"
    )
    _check_defined(arch, out)
    _check_printable(acts, out)
    # The chain-of-dense-layers equations (read by the chain document and code generator);
    # a graph with other kinds is described by symbp.network alone.
    chain = unsupported(arch) is None
    count = len(arch.layers) if chain else 0
    layers = tuple(_layer(arch, calc, acts, out, l) for l in range(1, count + 1))
    return Derivation(arch=arch, calculus=calc, activations=acts, output=out, layers=layers)


__all__ = ["Derivation", "LayerDerivation", "derive", "unit_loss", "ARR_Y"]


def general_batch(calc: LayerCalculus, row: bool) -> dict[str, sp.MatrixExpr]:
    """The batch equations of a generic layer l in the given layout (for the document)."""
    n_in, n_out, n_next = sp.symbols("n_in n_out n_next", integer=True, positive=True)

    def stored(name: str, units: sp.Expr) -> sp.MatrixExpr:
        mat = (
            sp.MatrixSymbol(name, N_BATCH, units) if row else sp.MatrixSymbol(name, units, N_BATCH)
        )
        return mat.T if row else mat

    w, b = sp.MatrixSymbol("W", n_out, n_in), sp.MatrixSymbol("b", n_out, 1)
    a_prev, delta = stored("A", n_in), stored("Delta", n_out)
    w_next, delta_next = sp.MatrixSymbol("Wnext", n_next, n_out), stored("Deltanext", n_next)
    names = {MAT_W: w, MAT_A: a_prev, MAT_DELTA: delta}
    back = calc.da_matrix.xreplace({MAT_W: w_next, MAT_A: a_prev, MAT_DELTA: delta_next})
    return {
        "z": _per_sample(w * a_prev + b * sp.OneMatrix(1, N_BATCH), row),
        "back": _per_sample(back, row),
        "dW": memo.doit(calc.dW_matrix.xreplace(names)),
        "db": memo.doit(calc.db_matrix.xreplace(names)),
    }
