"""Layer kinds, one module each: its keys, its equations, its derivatives.

`kind_module(type)` is the module of a layer type; each provides `forward`, `backward`,
`tangents` (see symbp.derivation.kinds.dense for the contract), `cost` (multiply-adds per sample),
`document_section` (its derivation laid out for the document), `notation` (the rows of
symbols it adds to the document's notation table), `document_labels` and `tangent_labels`
(its numbered equations), optionally
`eval_forward` (the evaluation mode's forward statements) and `state_updates` (the state a
training step updates), and `KEYS` (its
keys in arch.yaml; their checks are in symbp.frontend.kind_keys).
"""

from __future__ import annotations

from types import ModuleType


def kind_module(kind: str) -> ModuleType:
    """The module that owns a layer kind (imported on first use)."""
    from symbp.derivation.kinds import (
        add,
        attention,
        conv,
        dense,
        embedding,
        flatten,
        normalize,
        pool,
        recurrent,
    )

    return {
        "attention": attention,
        "dense": dense,
        "embedding": embedding,
        "add": add,
        "layernorm": normalize,
        "batchnorm": normalize,
        "conv2d": conv,
        "maxpool2d": pool,
        "avgpool2d": pool,
        "flatten": flatten,
        "rnn": recurrent,
        "lstm": recurrent,
        "gru": recurrent,
    }[kind]
