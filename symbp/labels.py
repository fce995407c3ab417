"""Equation labels and numbers shared by the document and the code that cites it.

Numbers are fixed here (the .tex uses \\tag), so a comment such as
"eq. (12)" in the NumPy module is the number a reader sees in the PDF.
"""

from __future__ import annotations

GENERAL = (
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
    "eq:output-dl",
    "eq:output-jacobian",
    "eq:output-delta",
    "eq:tangent-z",
    "eq:tangent-a",
    "eq:r-delta",
    "eq:r-grads",
)

PER_LAYER = ("z", "a", "delta", "dW", "db")


def layer_label(kind: str, layer: int) -> str:
    """The label of one specialised equation, e.g. eq:delta-2."""
    return f"eq:{kind}-{layer}"


def numbering(n_layers: int) -> dict[str, int]:
    """label -> equation number, in document order (general part, then layer 1..L)."""
    labels = list(GENERAL)
    for layer in range(1, n_layers + 1):
        labels.extend(layer_label(kind, layer) for kind in PER_LAYER)
    return {label: k for k, label in enumerate(labels, start=1)}
