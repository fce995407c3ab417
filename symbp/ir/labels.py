"""Equation labels and numbers shared by the document and the code that cites it.

Numbers are computed here in document order: the .tex numbers its `equation`
environments with LaTeX's own counter, one per display, in the same order, so a comment
such as "eq. (12)" in the NumPy module is the number a reader sees in the standalone PDF.
The labels written into the .tex are namespaced by the network (eq:<name>:delta-2), so
two networks' bodies can go into one paper.
"""

from __future__ import annotations

BEFORE_ACTIVATIONS = (
    "eq:forward-z",
    "eq:forward-a",
    "eq:loss",
    "eq:delta-def",
    "eq:chain",
    "eq:recursion",
    "eq:grad-W",
    "eq:grad-b",
    "eq:batch-z",
    "eq:batch-delta",
    "eq:batch-dW",
    "eq:batch-db",
)
OUTPUT = ("eq:output-dl", "eq:output-jacobian", "eq:output-delta")
TANGENT = ("eq:tangent-z", "eq:tangent-a", "eq:r-delta", "eq:r-grads")
GENERAL = (*BEFORE_ACTIVATIONS, *OUTPUT, *TANGENT)

PER_LAYER = ("z", "a", "delta", "dW", "db")

# The top heading levels a body can have (--section-level): the standalone document's
# sections, or subsections for a network that is one section of a paper.
SECTION_LEVELS = ("section", "subsection")


def layer_label(kind: str, layer: int) -> str:
    """The label of one specialised equation, e.g. eq:delta-2."""
    return f"eq:{kind}-{layer}"


def tex_label(network: str, key: str) -> str:
    """The label written into the .tex: eq:delta-2 of network seed_net -> eq:seed-net:delta-2.

    Network names are identifiers, so mapping `_` to `-` (which names never hold) keeps
    distinct networks apart and the label free of characters packages treat specially."""
    return f"eq:{network.replace('_', '-')}:{key.removeprefix('eq:')}"


def activation_label(name: str) -> str:
    """The label of an activation's derivative, e.g. eq:act-sigmoid."""
    return f"eq:act-{name.replace('_', '-')}"


# The derivation of each non-dense kind, when the network has one.
KIND_STEPS = {
    "add": ("eq:add",),
    "layernorm": ("eq:layernorm-z", "eq:layernorm-vjp", "eq:layernorm-tangent"),
    "batchnorm": ("eq:batchnorm-z", "eq:batchnorm-vjp", "eq:batchnorm-tangent"),
    "conv2d": ("eq:conv2d-z", "eq:conv2d-dW", "eq:conv2d-dx"),
    "maxpool2d": ("eq:maxpool2d",),
    "avgpool2d": ("eq:avgpool2d",),
}


def node_equations(node) -> tuple[str, ...]:
    """The per-layer equation kinds of a graph node: z, a, delta and one gradient per
    parameter (dW, db, dgamma, dbeta)."""
    return ("z", "a", "delta", *(f"d{p.symbol}" for p in node.params))


def network_numbering(d, net) -> dict[str, int]:
    """label -> equation number for a network of any kinds, in document order."""
    kinds = dict.fromkeys(n.node.kind for n in net.nodes if n.node.kind in KIND_STEPS)
    labels = [*BEFORE_ACTIVATIONS, *(label for k in kinds for label in KIND_STEPS[k])]
    labels += [activation_label(a) for a in d.activations]
    labels += [*OUTPUT, *(["eq:loss-logits"] if d.output.loss_from_logits else []), *TANGENT]
    for nd in net.nodes:
        labels += [layer_label("a-dot", nd.node.index), layer_label("r-delta", nd.node.index)]
    for nd in net.nodes:
        labels += [layer_label(kind, nd.node.index) for kind in node_equations(nd.node)]
    return {label: k for k, label in enumerate(labels, start=1)}
