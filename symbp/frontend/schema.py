"""The JSON Schema of arch.yaml (v2), for editors that validate and complete YAML.

Built from the same constants the validator uses, so the two cannot drift apart.
`symbp schema` prints it; generated/arch.schema.json is the committed copy.
"""

from __future__ import annotations

import json
from typing import Any

from symbp.frontend import spec
from symbp.frontend.expr import ALLOWED_FUNCTIONS
from symbp.frontend.kind_keys import KINDS, NONLINEARITIES, POSITIONS, RETURNS
from symbp.frontend.window import MAX_SIDE

_EXPR_HELP = (
    "An expression using numbers, + - * / ** (constant exponents), parentheses, "
    f"{', '.join(ALLOWED_FUNCTIONS)}, pi and e."
)


def _expression(variables: str) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": 500,
        "description": f"{_EXPR_HELP} Variables: {variables}.",
    }


def _pair(low: int, description: str) -> dict[str, Any]:
    """k or [kh, kw]: a whole number or a list of two."""
    side = {"type": "integer", "minimum": low, "maximum": MAX_SIDE}
    out: dict[str, Any] = {
        "anyOf": [side, {"type": "array", "minItems": 1, "maxItems": 2, "items": side}]
    }
    return {**out, "description": description} if description else out


def arch_schema() -> dict[str, Any]:
    """The schema as a JSON-ready dict."""
    names = sorted([*spec.BUILTIN_ACTIVATIONS, *spec.ACTIVATION_ALIASES])
    activation = {
        "type": "string",
        "description": "A built-in activation or a name defined under 'activations'.",
        "anyOf": [{"enum": names}, {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}],
    }
    identifier = {
        "type": "string",
        "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
        "not": {"const": "input"},
    }
    kind_properties: dict[str, dict[str, Any]] = {
        "units": {"type": "integer", "minimum": 1, "maximum": spec.MAX_UNITS},
        "bias": {"type": "boolean", "default": True},
        "from": {
            "type": "string",
            "description": "The name of an earlier layer, or input: its output is added.",
        },
        "eps": {"type": "number", "exclusiveMinimum": 0, "default": 1e-5},
        "momentum": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.1,
            "description": "Batch norm's running statistics: (1 - m) running + m batch's.",
        },
        "filters": {"type": "integer", "minimum": 1, "maximum": spec.MAX_UNITS},
        "dim": {"type": "integer", "minimum": 1, "maximum": spec.MAX_UNITS},
        "heads": {
            "type": "integer",
            "minimum": 1,
            "default": 1,
            "description": "Attention heads; they must divide the input's features d.",
        },
        "causal": {
            "type": "boolean",
            "default": False,
            "description": "Each position attends to itself and the earlier ones only.",
        },
        "positions": {
            "enum": list(POSITIONS),
            "default": "learned",
            "description": "The positions added to the embeddings: learned P, Vaswani's "
            "sinusoids, or none.",
        },
        "return": {
            "enum": list(RETURNS),
            "default": "sequence",
            "description": "A recurrent layer's output: every step's h (T, units), or the "
            "last step's (units,).",
        },
        "nonlinearity": {
            "enum": list(NONLINEARITIES),
            "default": "tanh",
            "description": "An rnn's h_t = f(x_t W_ih^T + b_ih + h_(t-1) W_hh^T + b_hh): f.",
        },
        "tie": {
            "type": "string",
            "description": "The name of the embedding layer whose table E is this layer's weight.",
        },
        "kernel": _pair(1, "The kernel's size: k or [kh, kw]."),
        "size": _pair(1, "The window's size: k or [kh, kw]."),
        "stride": _pair(1, "The step between windows: s or [sh, sw] (default 1; pooling: size)."),
        "padding": {
            "anyOf": [_pair(0, ""), {"const": "same"}],
            "description": "Zeros on each side: p or [ph, pw], or same (stride 1, odd kernel).",
        },
    }

    def kind_schema(kind: str) -> dict[str, Any]:
        keys = KINDS[kind]
        properties: dict[str, Any] = {
            "type": {"const": kind} if kind != "dense" else {"const": "dense"},
            "name": {**identifier, "description": "The layer's name, for 'from'."},
        }
        if keys.activation:
            properties["activation"] = {**activation, "default": "identity"}
        properties.update({key: kind_properties[key] for key in keys.keys})
        return {
            "type": "object",
            "description": f"{kind}: {keys.summary}",
            "additionalProperties": False,
            "required": [*keys.required, *(["type"] if kind != "dense" else [])],
            "properties": properties,
        }

    layer = {"oneOf": [kind_schema(kind) for kind in KINDS]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://symbp.invalid/schema/arch-v2.json",
        "title": "symbp architecture file (schema v2; v1 files are valid v2 files)",
        "type": "object",
        "additionalProperties": False,
        "required": list(spec.REQUIRED_KEYS),
        "properties": {
            "name": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                "maxLength": spec.MAX_NAME_LENGTH,
            },
            "layout": {"enum": list(spec.LAYOUTS), "default": "column"},
            "dtype": {"enum": list(spec.DTYPES), "default": "float64"},
            "input": {
                "description": "The size of a sample, [T, d] for a sequence of T positions "
                "(row layout), or [C, H, W] for images (layout: row).",
                "anyOf": [
                    {"type": "integer", "minimum": 1, "maximum": spec.MAX_UNITS},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["tokens", "vocab"],
                        "properties": {
                            "tokens": {"type": "integer", "minimum": 1},
                            "vocab": {"type": "integer", "minimum": 1},
                        },
                        "description": "Token ids: T positions, ids in [0, vocab).",
                    },
                    {
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 3,
                        "items": {"type": "integer", "minimum": 1, "maximum": spec.MAX_UNITS},
                    },
                ],
            },
            "layers": {"type": "array", "minItems": 1, "maxItems": spec.MAX_LAYERS, "items": layer},
            "loss": {
                "oneOf": [
                    {"enum": list(spec.LOSSES)},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["expr"],
                        "properties": {"expr": _expression("yhat, y")},
                    },
                ]
            },
            "reduction": {"enum": list(spec.REDUCTIONS), "default": "mean"},
            "l2": {"type": "number", "minimum": 0, "maximum": 1e6, "default": 0.0},
            "activations": {
                "type": "object",
                "maxProperties": spec.MAX_CUSTOM_ACTIVATIONS,
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "not": {"enum": names}},
                "additionalProperties": _expression("x"),
            },
        },
    }


def schema_json() -> str:
    """The schema as deterministic JSON text."""
    return json.dumps(arch_schema(), indent=2, sort_keys=True) + "\n"
