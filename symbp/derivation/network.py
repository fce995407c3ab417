"""The derivation over the graph: one NodeDerivation per layer, of every kind.

For layer l: its kind's module gives the forward statements, the gradients of its parameters and
what it sends back to each tensor it reads (symbp.derivation.kinds); the activation and the error
term are the same for every kind: delta = G * f'(z) with G = dL/da^(l) the sum of what the consumers
of a^(l) send back, or, for the last layer, the output error derived from the loss
(symbp.symbolic.output).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symbp.derivation.context import Context, node_symbols
from symbp.derivation.derive import Derivation, at_layer, fprime_at
from symbp.derivation.kinds import kind_module
from symbp.derivation.nodes import NodeDerivation
from symbp.derivation.tangent import elementwise_tangents
from symbp.ir.bindings import Bindings, Family, Kind
from symbp.ir.graph import Graph, build_graph
from symbp.ir.naming import Role, array
from symbp.symbolic.calculus import reading_kept
from symbp.symbolic.indexed import N_UNITS
from symbp.symbolic.output import softmax_vjp


@dataclass(frozen=True)
class Network:
    """The graph, every node's equations, and what each array symbol is."""

    graph: Graph
    nodes: tuple[NodeDerivation, ...]
    bindings: Bindings

    def __repr__(self) -> str:
        return f"Network({self.graph.arch.name}: {len(self.nodes)} nodes)"


def derive_network(d: Derivation, graph: Graph | None = None) -> Network:
    """Every node's equations for the derivation's architecture."""
    graph = graph or build_graph(d.arch)
    ctx = Context(graph, d.activations, d.output, Bindings())
    output = graph.output.z
    ctx.bindings.add(
        "Y", Kind.SAMPLES, output.row_size, "the targets", Family.DATA, rows=output.rows
    )
    nodes = tuple(_node(ctx, d, node) for node in graph.nodes)
    return Network(graph, nodes, ctx.bindings)


def _node(ctx: Context, d: Derivation, node) -> NodeDerivation:
    l, name = node.index, node.layer.activation
    act = d.activations.get(name)
    is_output = node is ctx.graph.output
    module = kind_module(node.kind)
    forward = module.forward(ctx, node)
    grads, backs = module.backward(ctx, node)
    tangent, r_grads, r_backs = module.tangents(ctx, node)
    s = node_symbols(ctx, node)
    if is_output:
        units = sp.Integer(node.z.row_size)
        delta = at_layer(d.output.delta_array, l).xreplace({N_UNITS: units})
    elif act is None:  # a hidden softmax: its Jacobian against G, not an elementwise f'
        delta = at_layer(softmax_vjp(), l).xreplace({array(Role.ERROR_IN): s[Role.ERROR_IN]})
    else:
        delta = s[Role.ERROR_IN] * fprime_at(act, l)
    a = sp.Symbol("softmax") if act is None else act.f.xreplace({_x(): s[Role.PRE_ACTIVATION]})
    a_dot, r_delta = elementwise_tangents(delta, act, is_output, l)
    # z is kept when the error term, a' or R{delta} reads it (a softmax's a' takes 1 - a
    # from the logits) or f' is evaluated in z.
    reads_z = any(e.has(s[Role.PRE_ACTIVATION]) for e in (delta, a_dot, r_delta))
    stores_z = reads_z or (act is not None and act.needs == "z")
    if act is not None and act.kept is not None:
        kept = _kept(
            ctx, node, act.kept.xreplace({_x(): s[Role.PRE_ACTIVATION]}), (a, delta, a_dot, r_delta)
        )
        if kept is not None:
            statement, (a, delta, a_dot, r_delta) = kept
            forward = (*forward, statement)
    return NodeDerivation(
        node=node,
        act=act,
        is_output=is_output,
        forward=forward,
        a=a,
        delta=delta,
        grads=grads,
        backs=backs,
        tangent=tangent,
        a_dot=a_dot,
        r_delta=r_delta,
        r_grads=r_grads,
        r_backs=r_backs,
        stores_z=stores_z,
        eval_forward=_eval_forward(ctx, module, node, forward),
        state_updates=tuple(getattr(module, "state_updates", lambda c, n: ())(ctx, node)),
        backward_steps=tuple(getattr(module, "backward_steps", lambda c, n: ())(ctx, node)),
        r_steps=tuple(getattr(module, "r_steps", lambda c, n: ())(ctx, node)),
    )


def _eval_forward(ctx: Context, module, node, forward: tuple) -> tuple | None:
    """The kind's evaluation-mode forward statements (with the kept intermediate the
    training forward has), or None when they are the training ones."""
    if not hasattr(module, "eval_forward"):
        return None
    steps = module.eval_forward(ctx, node)
    kept = forward[len(steps) :]  # an activation's kept intermediate comes last
    steps = (*steps, *kept)
    return None if steps == forward else steps


def _kept(
    ctx: Context, node, value: sp.Expr, exprs: tuple[sp.Expr, ...]
) -> tuple[tuple[sp.Symbol, sp.Expr], tuple[sp.Expr, ...]] | None:
    """T<l> = value, computed by the forward pass after z (the activation's kept intermediate,
    symbp.symbolic.calculus.kept_intermediate), and a, delta, a', R{delta} reading T<l> instead of
    evaluating value again; each in the form the printer evaluates (through_sigmoid). A form is
    used only when it equals the one it replaces and is finite wherever that one is; None when
    none reads T<l>."""
    l = node.index
    t = array(Role.KEPT, l)
    out = [reading_kept(expr, value, t) for expr in exprs]
    if not any(e.has(t) for e in out):
        return None
    what = f"{node.layer.activation}'s intermediate {value}, kept for f' in layer {l}"
    tex, tex_batch = rf"t^{{({l})}}", rf"T^{{({l})}}"
    ctx.samples(t, node.z.row_size, what, Family.FORWARD, tex, tex_batch, rows=node.z.rows)
    return (t, value), tuple(out)


def _x() -> sp.Symbol:
    from symbp.symbolic.activations import X

    return X
