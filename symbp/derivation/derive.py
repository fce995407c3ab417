"""arch -> Derivation: the SymPy intermediate representation both renderers consume.

Work done once: the general layer calculus (symbp.symbolic.indexed), one derivative per
distinct activation (symbp.symbolic.calculus) and the output error (symbp.symbolic.output). Each
layer then only renames matrices, so deriving is linear in depth and independent
of the layer widths.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symbp.errors import SpecError
from symbp.frontend.expr import parse_expression
from symbp.frontend.spec import Arch
from symbp.ir.naming import Role, array
from symbp.parallel import ordered_map
from symbp.symbolic import memo
from symbp.symbolic.activations import X, elementwise_expr
from symbp.symbolic.calculus import A as A_SCALAR
from symbp.symbolic.calculus import ActivationDerivation, derive_activation
from symbp.symbolic.indexed import (
    LayerCalculus,
    layer_calculus,
)
from symbp.symbolic.output import (
    ARR_A,
    ARR_Y,
    ARR_Z,
    Y_VAR,
    YHAT_VAR,
    OutputDerivation,
    derive_output,
)

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
class Derivation:
    """Everything SymPy derived for one architecture."""

    arch: Arch
    calculus: LayerCalculus
    activations: dict[str, ActivationDerivation]
    output: OutputDerivation

    def __repr__(self) -> str:
        acts = ", ".join(f"{k}: {v.backward_form}" for k, v in self.activations.items())
        return (
            f"Derivation({self.arch.name}: sizes {self.arch.layer_sizes}, "
            f"delta^(L) = {self.output.delta_array}, activations {{{acts}}})"
        )


def _per_sample(expr: sp.MatrixExpr, row: bool) -> sp.MatrixExpr:
    """Row layout stores (n, units) arrays: transpose a per-sample result."""
    return memo.doit(sp.transpose(expr)) if row else expr


def _activations(arch: Arch) -> dict[str, ActivationDerivation]:
    """Derive each distinct elementwise activation of the network once (in parallel worker
    processes when there are several: each is independent SymPy work, symbp.parallel)."""
    custom = {name: parse_expression(text, {"x": X}) for name, text in arch.activations}
    names = list(dict.fromkeys(l.activation for l in arch.layers if l.activation != "softmax"))
    work = [(name, elementwise_expr(name, custom)) for name in names]
    return dict(zip(names, ordered_map(_derive_one, work), strict=True))


def _derive_one(item: tuple[str, sp.Expr]) -> ActivationDerivation:
    return derive_activation(*item)


def at_layer(expr: sp.Expr, l: int) -> sp.Expr:
    """Whole-array symbols A, Z of the output formulas -> this layer's A<l>, Z<l>."""
    return expr.xreplace({ARR_A: array(Role.ACTIVATION, l), ARR_Z: array(Role.PRE_ACTIVATION, l)})


def fprime_at(act: ActivationDerivation, l: int) -> sp.Expr:
    """f'(z^(l)) as the code evaluates it: in A<l> when proven, else in Z<l>."""
    return act.backward_form.xreplace(
        {A_SCALAR: array(Role.ACTIVATION, l), X: array(Role.PRE_ACTIVATION, l)}
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


def derive(arch: Arch) -> Derivation:
    """SymPy's derivation of backpropagation for `arch` (an Arch, or a path to arch.yaml)."""
    if not isinstance(arch, Arch):
        from symbp.frontend.spec import load_arch

        arch = load_arch(arch)
    calc = layer_calculus()
    acts = _activations(arch)
    out_name = arch.layers[-1].activation
    out = derive_output(
        unit_loss(arch), acts.get(out_name), probability_target=arch.loss.kind == "cross_entropy"
    )
    _check_defined(arch, out)
    return Derivation(arch=arch, calculus=calc, activations=acts, output=out)


__all__ = ["Derivation", "derive", "unit_loss", "ARR_Y"]
