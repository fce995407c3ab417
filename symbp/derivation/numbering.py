"""Equation numbers of a network's document, shared by the document and the code that cites it.

The .tex numbers its `equation` environments with LaTeX's own counter in document order,
so the numbers computed here are the ones a reader sees. The order is: the general part,
each layer kind's section (its index derivation, then its box), the activations, the
output layer, forward mode (general, then each kind), and last the layer-by-layer
appendix that `--layers` adds. The code cites only equations before the appendix, so the
numbers it cites are the same whether the appendix is printed or not.
"""

from __future__ import annotations

from symbp.derivation.kinds import kind_module
from symbp.ir.labels import activation_label, layer_label, node_equations

GENERAL = ("eq:forward-a", "eq:loss", "eq:delta-def", "eq:backprop")
OUTPUT = ("eq:output-dl", "eq:output-jacobian", "eq:output-delta")
TANGENT = ("eq:tangent-a", "eq:r-delta")
SOFTMAX_HIDDEN = "eq:softmax-hidden"  # a hidden layer's softmax: its Jacobian against g


def hidden_softmax(net) -> tuple[int, ...]:
    """The hidden layers whose activation is a softmax (not elementwise: no f')."""
    return tuple(nd.node.index for nd in net.nodes if nd.act is None and not nd.is_output)


def kinds_of(net) -> list[str]:
    """The network's layer kinds, in the order they first appear."""
    return list(dict.fromkeys(nd.node.kind for nd in net.nodes))


def network_numbering(d, net) -> dict[str, int]:
    """label -> equation number, in document order."""
    kinds = kinds_of(net)
    labels = [*GENERAL]
    for kind in kinds:
        labels += kind_module(kind).document_labels(kind)
    labels += [SOFTMAX_HIDDEN] if hidden_softmax(net) else []
    labels += [activation_label(a) for a, act in d.activations.items() if not act.passes_through]
    labels += [*OUTPUT[:2], *(["eq:output-lse"] if d.output.logits is not None else [])]
    labels += [OUTPUT[2], *(["eq:loss-logits"] if d.output.loss_from_logits else [])]
    labels += [*TANGENT]
    for kind in kinds:
        labels += kind_module(kind).tangent_labels(kind)
    for nd in net.nodes:  # the appendix (--layers): after every equation the code cites
        labels += [layer_label(kind, nd.node.index) for kind in node_equations(nd.node)]
    for nd in net.nodes:
        labels += [layer_label("a-dot", nd.node.index), layer_label("r-delta", nd.node.index)]
    return {label: k for k, label in enumerate(labels, start=1)}


def cited_label(net, step: str, layer: int) -> str:
    """The equation the code cites for a step of a layer: its kind's box for z and the
    parameters' gradients, a = f(z) for the activation, and the output error or the
    recursion for delta. Never an appendix equation, so the number does not depend on
    the document's options."""
    nd = net.nodes[layer - 1]
    if step == "a":
        return "eq:forward-a"
    if step == "delta" and layer in hidden_softmax(net):
        return SOFTMAX_HIDDEN
    if step == "delta":
        return "eq:output-delta" if nd.is_output else "eq:backprop"
    return f"eq:{nd.node.kind}-box"
