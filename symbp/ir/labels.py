"""Equation labels and numbers shared by the document and the code that cites it.

Numbers are computed in document order (symbp.derivation.numbering): the .tex numbers its `equation`
environments with LaTeX's own counter, one per display, in the same order, so a comment
such as "eq. (12)" in the NumPy module is the number a reader sees in the standalone PDF.
The labels written into the .tex are namespaced by the network (eq:<name>:delta-2), so
two networks' bodies can go into one paper.
"""

from __future__ import annotations

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


def section_label(network: str, key: str) -> str:
    """The label of a section or table of a network's document: sec:seed-net:kinds."""
    return f"sec:{network.replace('_', '-')}:{key}"


def activation_label(name: str) -> str:
    """The label of an activation's derivative, e.g. eq:act-sigmoid."""
    return f"eq:act-{name.replace('_', '-')}"


def node_equations(node) -> tuple[str, ...]:
    """The per-layer equation kinds of a graph node: z, a, delta and one gradient per
    parameter (dW, db, dgamma, dbeta)."""
    return ("z", "a", "delta", *(f"d{p.symbol}" for p in node.params))
