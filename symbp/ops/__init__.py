"""Layer kinds, one module each: its keys, its equations, its derivatives.

`KINDS[type]` is the module of a layer type; each provides `forward`, `backward` and
`tangents` (see symbp.ops.dense for the contract) and `KEYS` (its keys in arch.yaml).
"""

from __future__ import annotations

from types import ModuleType


def kind_module(kind: str) -> ModuleType:
    """The module that owns a layer kind (imported on first use)."""
    from symbp.ops import add, dense, normalize

    return {"dense": dense, "add": add, "layernorm": normalize, "batchnorm": normalize}[kind]
