"""What every kind's derivation reads: the network, its activations and output error, and
the table of array symbols it adds to."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symbp.derivation.nodes import sym
from symbp.frontend.spec import Arch
from symbp.ir.bindings import Bindings, Family, Kind
from symbp.ir.graph import Graph, Node, Tensor
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
        name, units = f"A{tensor.layer}", tensor.size
        return self.bindings.add(name, Kind.SAMPLES, units, what, Family.FORWARD, tensor)

    def samples(
        self, name: str, units: int, what: str, family: Family, tex: str = "", tex_batch: str = ""
    ) -> sp.Symbol:
        return self.bindings.add(name, Kind.SAMPLES, units, what, family, None, tex, tex_batch)

    def units(
        self,
        name: str,
        units: int,
        what: str,
        family: Family,
        tensor: Tensor | None = None,
        tex: str = "",
    ) -> sp.Symbol:
        return self.bindings.add(name, Kind.UNITS, units, what, family, tensor, tex)

    def statistic(self, name: str, what: str, family: Family, tex: str = "") -> sp.Symbol:
        return self.bindings.add(name, Kind.SAMPLE_STAT, 1, what, family, tex=tex)

    def tangent_of(self, tensor: Tensor) -> sp.Basic:
        """a^(k)' (zero for the input, which does not move)."""
        if tensor.layer == 0:
            return sp.S.Zero
        l = tensor.layer
        return self.samples(f"Ad{l}", tensor.size, f"tangent of a{l}", Family.TANGENT)


def param_symbol(ctx: Context, param: Tensor, suffix: str = "") -> sp.Symbol:
    """gamma3, beta3 as per-unit arrays; with suffix "d", their direction (gammad3)."""
    name = f"{param.symbol}{suffix}{param.layer}"
    what = f"direction of {param.key}" if suffix else f"parameter {param.key}"
    family = Family.DIRECTION if suffix else Family.PARAMETER
    letter = {"gamma": r"\gamma", "beta": r"\beta"}.get(param.symbol, param.symbol)
    dot = "\\dot " if suffix else ""
    tex = rf"{dot}{letter}^{{({param.layer})}}"
    return ctx.units(name, param.size, what, family, param, tex)


def node_symbols(ctx: Context, node: Node) -> dict[str, sp.Symbol]:
    """The symbols every kind shares: z, a, delta, G (incoming dL/da), and their tangents."""
    l, n = node.index, node.z.size
    F = Family
    return {
        "Z": ctx.samples(f"Z{l}", n, f"pre-activation of layer {l}", F.FORWARD),
        "A": ctx.activation_symbol(node.a),
        "delta": ctx.samples(f"delta{l}", n, f"error term of layer {l}", F.BACKWARD),
        "G": ctx.samples(
            f"G{l}", n, f"dL/da of layer {l}", F.BACKWARD, rf"g^{{({l})}}", rf"G^{{({l})}}"
        ),
        "Zd": ctx.samples(f"Zd{l}", n, f"tangent of z{l}", F.TANGENT),
        "Ad": ctx.samples(f"Ad{l}", n, f"tangent of a{l}", F.TANGENT),
        "Rdelta": ctx.samples(f"Rdelta{l}", n, f"R of delta{l}", F.R),
        "RG": ctx.samples(f"RG{l}", n, f"R of G{l}", F.R, rf"\mathcal{{R}}\{{g^{{({l})}}\}}"),
    }


__all__ = ["Context", "node_symbols", "param_symbol", "sym"]
