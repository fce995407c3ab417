"""What every kind's derivation reads: the network, its activations and output error, and
the table of array symbols it adds to."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symbp.derivation.nodes import sym
from symbp.frontend.spec import Arch
from symbp.ir.bindings import Bindings, Family, Kind
from symbp.ir.graph import Graph, Node, Tensor
from symbp.ir.naming import PARAMETER_ROLES, ArraySymbol, Role, array
from symbp.symbolic.calculus import ActivationDerivation
from symbp.symbolic.output import OutputDerivation


@dataclass(frozen=True)
class Cost:
    """Multiply-adds per sample of a node's matrix products (elementwise work, a few
    operations per entry, is not counted), forward and backward (the parameters' gradients
    and what is sent back to the tensors read)."""

    forward: int
    backward: int


@dataclass
class Context:
    graph: Graph
    acts: dict[str, ActivationDerivation]
    output: OutputDerivation
    bindings: Bindings

    @property
    def arch(self) -> Arch:
        return self.graph.arch

    @property
    def row(self) -> bool:
        return self.arch.layout == "row"

    def activation_symbol(self, tensor: Tensor) -> sp.Symbol:
        """A<k> for a^(k), bound as a per-sample array."""
        what = "the input" if tensor.layer == 0 else f"activation of layer {tensor.layer}"
        symbol = array(Role.ACTIVATION, tensor.layer)
        return self.bindings.add(
            symbol, Kind.SAMPLES, tensor.row_size, what, Family.FORWARD, tensor, rows=tensor.rows
        )

    def samples(
        self,
        symbol: ArraySymbol | str,
        units: int,
        what: str,
        family: Family,
        tex: str = "",
        tex_batch: str = "",
        *,
        rows: int,
    ) -> sp.Symbol:
        """A per-sample array of `units` entries a row, `rows` rows a sample (T for a
        sequence's positions, else 1)."""
        return self.bindings.add(
            symbol, Kind.SAMPLES, units, what, family, None, tex, tex_batch, rows
        )

    def units(
        self,
        symbol: ArraySymbol | str,
        units: int,
        what: str,
        family: Family,
        tensor: Tensor | None = None,
        tex: str = "",
    ) -> sp.Symbol:
        return self.bindings.add(symbol, Kind.UNITS, units, what, family, tensor, tex)

    def statistic(
        self, symbol: ArraySymbol | str, what: str, family: Family, tex: str = ""
    ) -> sp.Symbol:
        return self.bindings.add(symbol, Kind.SAMPLE_STAT, 1, what, family, tex=tex)

    def decays(self, param: Tensor, node: Node) -> bool:
        """Whether this node's gradient of `param` carries the file's l2 term: an l2 is set,
        the parameter is decayed (its kind's registry entry says: weights and kernels), and
        this is the first node that reads it (a parameter read by several nodes is decayed
        once)."""
        first = self.graph.parameter_consumers[param][0]
        return bool(self.arch.l2) and param.decayed and first is node

    def tangent_of(self, tensor: Tensor) -> sp.Basic:
        """a^(k)' (zero for the input, which does not move)."""
        if tensor.layer == 0:
            return sp.S.Zero
        l = tensor.layer
        return self.samples(
            array(Role.TANGENT_A, l),
            tensor.row_size,
            f"tangent of a{l}",
            Family.TANGENT,
            rows=tensor.rows,
        )


def param_symbol(ctx: Context, param: Tensor, direction: bool = False) -> sp.Symbol:
    """gamma3, beta3 as per-unit arrays; with direction, their direction (gammad3)."""
    role = PARAMETER_ROLES[param.symbol]
    symbol = array(role.direction if direction and role.direction else role, param.layer)
    what = f"direction of {param.key}" if direction else f"parameter {param.key}"
    family = Family.DIRECTION if direction else Family.PARAMETER
    letter = {"gamma": r"\gamma", "beta": r"\beta"}.get(param.symbol, param.symbol)
    dot = "\\dot " if direction else ""
    tex = rf"{dot}{letter}^{{({param.layer})}}"
    return ctx.units(symbol, param.size, what, family, param, tex)


def node_symbols(ctx: Context, node: Node) -> dict[Role, sp.Symbol]:
    """The symbols every kind shares: z, a, delta, G (incoming dL/da), and their tangents."""
    l, n, rows = node.index, node.z.row_size, node.z.rows
    F = Family
    g_tex, g_batch = rf"g^{{({l})}}", rf"G^{{({l})}}"
    return {
        Role.PRE_ACTIVATION: ctx.samples(
            array(Role.PRE_ACTIVATION, l), n, f"pre-activation of layer {l}", F.FORWARD, rows=rows
        ),
        Role.ACTIVATION: ctx.activation_symbol(node.a),
        Role.ERROR: ctx.samples(
            array(Role.ERROR, l), n, f"error term of layer {l}", F.BACKWARD, rows=rows
        ),
        Role.ERROR_IN: ctx.samples(
            array(Role.ERROR_IN, l), n, f"dL/da of layer {l}", F.BACKWARD, g_tex, g_batch, rows=rows
        ),
        Role.TANGENT_Z: ctx.samples(
            array(Role.TANGENT_Z, l), n, f"tangent of z{l}", F.TANGENT, rows=rows
        ),
        Role.TANGENT_A: ctx.samples(
            array(Role.TANGENT_A, l), n, f"tangent of a{l}", F.TANGENT, rows=rows
        ),
        Role.R_ERROR: ctx.samples(array(Role.R_ERROR, l), n, f"R of delta{l}", F.R, rows=rows),
        Role.R_ERROR_IN: ctx.samples(
            array(Role.R_ERROR_IN, l),
            n,
            f"R of G{l}",
            F.R,
            rf"\mathcal{{R}}\{{g^{{({l})}}\}}",
            rows=rows,
        ),
    }


__all__ = ["Context", "node_symbols", "param_symbol", "sym"]
