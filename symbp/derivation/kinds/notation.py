"""Rows of the document's notation table that several kinds share: a kind's `notation`
returns its rows, and the document lists each row once, in the order the kinds appear."""

from __future__ import annotations

from typing import Any

# The symbols of an image, for the kinds that read or write one.
IMAGE_NOTATION = (
    ("$C$, $h$, $w$; $c$", "an image's channels, height, width; a channel"),
    ("$(i, j)$, $h_o$, $w_o$", "an output position and the output's height and width"),
)


def weights_notation(doc: Any) -> tuple[str, str]:
    """The row of W and b, in the document's letters (bold or not)."""
    letters = f"${doc.v('W')}^{{(\\ell)}}$, ${doc.v('b')}^{{(\\ell)}}$"
    return (letters, r"the weights and biases of layer $\ell$")
