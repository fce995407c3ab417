"""The keys each layer kind takes, with their defaults and checks (no SymPy).

Each kind's module under symbp/derivation/kinds owns everything about that kind; this module holds
the part the file validator needs, so that reading a file stays cheap. The validator
(symbp.frontend.spec) calls `check` with its located-error maker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

COMMON_KEYS = ("type", "name", "activation")
DEFAULT_KIND = "dense"  # the type of a layer entry that declares none
DEFAULT_EPS = 1e-5


@dataclass(frozen=True)
class KindKeys:
    """The keys of one layer kind beyond the common ones, which are required, and whether
    the kind keeps the size of its input (everything but dense)."""

    keys: tuple[str, ...]
    required: tuple[str, ...]
    keeps_size: bool
    summary: str  # one line for messages and the JSON Schema
    activation: bool = True  # whether it takes an `activation` key
    image: bool = False  # whether it reads an image [C, H, W] (and only an image)
    also_sequence: bool = False  # an image kind that reads a sequence [T, d] too (flatten)
    mixes_positions: bool = False  # whether an output position reads other positions
    # the parameters of a layer of this kind: (letter, shape, decayed, init) from the layer
    # and the per-sample shape it reads (symbp.ir.graph makes them tensors); `decayed`: the
    # file's l2 covers it (every parameter of rank >= 2: weights, kernels, embedding tables;
    # not biases, not a norm's scale and shift); init: "fan" (He or Glorot normal), "zeros",
    # "ones", "normal" (N(0, 0.02^2), as GPT-2 starts its embeddings) or "recurrent"
    # (U(-1/sqrt(h), 1/sqrt(h)), h the layer's units, as PyTorch starts a recurrent layer)
    parameters: Callable[[Any, tuple[int, ...]], list[tuple[str, tuple[int, ...], bool, str]]] = (
        lambda layer, shape_in: []
    )


def _dense_parameters(layer: Any, shape_in: tuple[int, ...]) -> list:
    """W (units, inputs) and b (units,) unless bias: false; on a sequence (T, d), the units
    and inputs of one position."""
    n = layer.out_shape[-1]
    bias = [("b", (n,), False, "zeros")] if layer.bias else []
    return [("W", (n, shape_in[-1]), True, "fan"), *bias]


def _conv_parameters(layer: Any, shape_in: tuple[int, ...]) -> list:
    """The kernel W (filters, channels, kh, kw) and b (filters,) unless bias: false."""
    filters = layer.shape[0]
    kernel = [("W", (filters, shape_in[0], *layer.window.kernel), True, "fan")]
    return kernel + ([("b", (filters,), False, "zeros")] if layer.bias else [])


def _norm_parameters(per_channel: bool) -> Callable[[Any, tuple[int, ...]], list]:
    """gamma and beta: one per channel of an image (batch norm) or per entry (layer norm),
    one per feature of a vector."""

    def parameters(layer: Any, shape_in: tuple[int, ...]) -> list:
        if len(shape_in) == 3:
            shape = (shape_in[0],) if per_channel else shape_in
        else:  # a vector, or each position of a sequence
            shape = (shape_in[-1],)
        return [("gamma", shape, False, "ones"), ("beta", shape, False, "zeros")]

    return parameters


def _embedding_parameters(layer: Any, shape_in: tuple[int, ...]) -> list:
    """E (vocab, dim) and, with learned positions, P (T, dim)."""
    dim = layer.out_shape[-1]
    table = [("E", (layer.vocab, dim), True, "normal")]
    if layer.positions == "learned":
        table.append(("P", (shape_in[0], dim), True, "normal"))
    return table


def _attention_parameters(layer: Any, shape_in: tuple[int, ...]) -> list:
    """Wq, Wk, Wv, Wo (d, d) and, unless bias: false, bq, bk, bv, bo (d,), as
    torch.nn.MultiheadAttention's in_proj (cat(Wq, Wk, Wv)) and out_proj."""
    d = shape_in[-1]
    weights = [(f"W{p}", (d, d), True, "fan") for p in "qkvo"]
    biases = [(f"b{p}", (d,), False, "zeros") for p in "qkvo"] if layer.bias else []
    return weights + biases


def _recurrent_parameters(gates: int) -> Callable[[Any, tuple[int, ...]], list]:
    """W_ih (G h, d), W_hh (G h, h) and, unless bias: false, b_ih, b_hh (G h,), as
    torch.nn.RNN/LSTM/GRU's weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0; every one
    drawn from U(-1/sqrt(h), 1/sqrt(h)), as PyTorch does."""

    def parameters(layer: Any, shape_in: tuple[int, ...]) -> list:
        h, d = layer.out_shape[-1], shape_in[-1]
        weights = [("Wih", (gates * h, d), True, "recurrent"),
                   ("Whh", (gates * h, h), True, "recurrent")]  # fmt: skip
        biases = [(b, (gates * h,), False, "recurrent") for b in ("bih", "bhh")]
        return weights + (biases if layer.bias else [])

    return parameters


POSITIONS = ("learned", "sinusoidal", "none")
RETURNS = ("sequence", "last")
NONLINEARITIES = ("tanh", "relu")
RECURRENT = {"rnn": 1, "lstm": 4, "gru": 3}  # the kinds and their gates G

KINDS: dict[str, KindKeys] = {
    "dense": KindKeys(
        ("units", "bias", "tie"),
        ("units",),
        False,
        "z = W a + b (units, bias)",
        parameters=_dense_parameters,
    ),
    "add": KindKeys(("from",), ("from",), True, "z = a + (output of the layer named by from)"),
    "layernorm": KindKeys(
        ("eps",),
        (),
        True,
        "normalise each sample over its features",
        parameters=_norm_parameters(per_channel=False),
    ),
    "batchnorm": KindKeys(
        ("eps", "momentum"),
        (),
        True,
        "normalise each feature over the batch",
        parameters=_norm_parameters(per_channel=True),
    ),
    "conv2d": KindKeys(
        ("filters", "kernel", "stride", "padding", "bias"),
        ("filters", "kernel"),
        False,
        "z = b + W correlated with the (zero-padded) image a (filters, kernel, stride, padding)",
        image=True,
        parameters=_conv_parameters,
    ),
    "maxpool2d": KindKeys(
        ("size", "stride"),
        ("size",),
        False,
        "the maximum of each window (size, stride)",
        activation=False,
        image=True,
    ),
    "avgpool2d": KindKeys(
        ("size", "stride"),
        ("size",),
        False,
        "the mean of each window (size, stride)",
        activation=False,
        image=True,
    ),
    "flatten": KindKeys(
        (),
        (),
        False,
        "an image [C, H, W] or a sequence [T, d] read as one vector (C order)",
        activation=False,
        image=True,
        also_sequence=True,
    ),
    "embedding": KindKeys(
        ("dim", "positions"),
        ("dim",),
        False,
        "z_t = E[x_t] + P_t: token ids to vectors (dim, positions: learned | sinusoidal | none)",
        parameters=_embedding_parameters,
    ),
    "attention": KindKeys(
        ("heads", "causal", "bias"),
        (),
        True,
        "multi-head self-attention over the positions (heads, causal, bias)",
        mixes_positions=True,
        parameters=_attention_parameters,
    ),
    **{
        kind: KindKeys(
            ("units", "return", "bias", *(("nonlinearity",) if kind == "rnn" else ())),
            ("units",),
            False,
            {
                "rnn": "h_t = f(x_t W_ih^T + b_ih + h_(t-1) W_hh^T + b_hh) over the positions "
                "(units, return: sequence | last, bias, nonlinearity: tanh | relu)",
                "lstm": "a long short-term memory over the positions, gates i, f, g, o "
                "(units, return: sequence | last, bias)",
                "gru": "a gated recurrent unit over the positions, gates r, z, n "
                "(units, return: sequence | last, bias)",
            }[kind],
            mixes_positions=True,
            parameters=_recurrent_parameters(gates),
        )
        for kind, gates in RECURRENT.items()
    },
}


def keys_of(kind: str) -> tuple[str, ...]:
    """Every key a layer of this kind may have."""
    common = COMMON_KEYS if KINDS[kind].activation else ("type", "name")
    return (*common, *KINDS[kind].keys)


def check_flag(value: Any, key: str, fail: Callable[[str, str], Exception]) -> bool:
    if not isinstance(value, bool):
        raise fail(
            f"{key} must be true or false, got {value!r}", f"write {key}: true or {key}: false"
        )
    return value


def check_bias(value: Any, fail: Callable[[str, str], Exception]) -> bool:
    return check_flag(value, "bias", fail)


def check_eps(value: Any, fail: Callable[[str, str], Exception]) -> float:
    """eps > 0, finite."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise fail(f"eps must be a number, got {value!r}", "write a small number such as 1e-5")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise fail(f"eps must be a finite number > 0, got {value}", "use e.g. eps: 1e-5")
    return number


DEFAULT_MOMENTUM = 0.1  # PyTorch's: running = (1 - m) running + m batch statistic


def check_momentum(value: Any, fail: Callable[[str, str], Exception]) -> float:
    """0 <= momentum <= 1."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise fail(f"momentum must be a number, got {value!r}", "write e.g. momentum: 0.1")
    number = float(value)
    if not math.isfinite(number) or not 0 <= number <= 1:
        raise fail(f"momentum must be between 0 and 1, got {value}", "use e.g. momentum: 0.1")
    return number


def entry_kind(entry: Mapping[str, Any]) -> Any:
    """The type a layer entry declares (dense when it declares none)."""
    return entry.get("type", DEFAULT_KIND)
