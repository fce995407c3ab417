"""Names as data: every array of the generated code is a symbol that knows its role and its
layer, and this module is the one place that turns those into a name (A3, delta3, Zd3).

Printers and documents read the fields (`role`, `layer`), never the name: the LaTeX of a
symbol, whether it is a per-sample array (printed with the elementwise product), which
layer's comment cites it. A general (layer-free) symbol of the index calculus has the layer
GENERAL, or NEXT/PREVIOUS for the layers around it.
"""

from __future__ import annotations

import enum
from typing import Any

import sympy as sp
from sympy.core.symbol import Str


class Role(enum.Enum):
    """What an array is. The value is the prefix of its name in the generated code."""

    ACTIVATION = "A"  # a^(l) (a^(0) = x, the input)
    PRE_ACTIVATION = "Z"  # z^(l)
    ERROR = "delta"  # delta^(l) = dL/dz^(l)
    ERROR_IN = "G"  # g^(l) = dL/da^(l), the sum over the consumers of a^(l)
    TANGENT_A = "Ad"  # a^(l)' (forward mode)
    TANGENT_Z = "Zd"  # z^(l)'
    R_ERROR = "Rdelta"  # R{delta^(l)} (Pearlmutter's R-operator)
    R_ERROR_IN = "RG"  # R{g^(l)}
    KEPT = "T"  # an activation's intermediate, kept from the forward pass
    NORMALIZED = "Xhat"  # a normalisation's xhat
    STD = "Sigma"  # its standard deviation
    MEAN = "Mu"  # its mean
    NORMALIZED_TANGENT = "Xhatd"
    STD_TANGENT = "Sigmad"
    COLUMNS = "Cols"  # a convolution's unfolded input
    QUERY = "Q"  # an attention layer's queries, keys and values (rows, d)
    KEY = "K"
    VALUE = "V"
    PROBS = "Pr"  # its attention probabilities (per sample: heads x T x T)
    MIXED = "O"  # the heads' outputs, concatenated (rows, d)
    D_MIXED = "dO"  # dL/dO, dL/dS, dL/dQ, dL/dK, dL/dV in the backward pass
    D_PROBS = "dP"
    D_SCORES = "dS"
    D_QUERY = "dQ"
    D_KEY = "dK"
    D_VALUE = "dV"
    QUERY_TANGENT = "Qd"  # their tangents (forward mode)
    KEY_TANGENT = "Kd"
    VALUE_TANGENT = "Vd"
    PROBS_TANGENT = "Prd"
    SCORES_TANGENT = "Sd"
    MIXED_TANGENT = "Od"
    R_MIXED = "RdO"  # R{dL/dO}, ... (the R-operator)
    R_PROBS = "RdP"
    R_SCORES = "RdS"
    R_QUERY = "RdQ"
    R_KEY = "RdK"
    R_VALUE = "RdV"
    GATES_IN = "Ux"  # a recurrent layer's x_t W_ih^T + b_ih, all steps (rows, G h)
    RECURRENT = "Rec"  # what each of its steps keeps (rows, blocks h)
    D_GATES = "dGates"  # dL/du, dL/dv of every step, side by side
    D_GATES_IN = "dUx"  # dL/du (rows, G h)
    D_GATES_HIDDEN = "dUh"  # dL/dv (rows, G h)
    PREVIOUS_H = "Hprev"  # h_(t-1) of every row (rows, h)
    GATES_IN_TANGENT = "Uxd"  # their tangents (forward mode)
    RECURRENT_TANGENT = "Recd"
    PREVIOUS_H_TANGENT = "Hprevd"
    R_GATES = "RdGates"  # R{dL/du}, R{dL/dv} (the R-operator)
    R_GATES_IN = "RdUx"
    R_GATES_HIDDEN = "RdUh"
    LOG_SUM_EXP = "lse"  # the output softmax's log-sum-exp, per sample
    RUNNING_MEAN = "running_mean"  # batch norm's state: its running statistics
    RUNNING_VAR = "running_var"
    WEIGHT = "W"
    BIAS = "b"
    SCALE = "gamma"
    SHIFT = "beta"
    WEIGHT_Q = "Wq"  # an attention layer's projections and their biases
    WEIGHT_K = "Wk"
    WEIGHT_V = "Wv"
    WEIGHT_O = "Wo"
    BIAS_Q = "bq"
    BIAS_K = "bk"
    BIAS_V = "bv"
    BIAS_O = "bo"
    EMBEDDING = "E"  # a token embedding's table E^(l) (V, dim)
    POSITION = "P"  # its learned positions P^(l) (T, dim)
    WEIGHT_IH = "Wih"  # a recurrent layer's input-to-hidden and hidden-to-hidden weights
    WEIGHT_HH = "Whh"
    BIAS_IH = "bih"
    BIAS_HH = "bhh"
    WEIGHT_DIRECTION = "Wd"  # the direction W' of jvp and hvp
    BIAS_DIRECTION = "bd"
    SCALE_DIRECTION = "gammad"
    SHIFT_DIRECTION = "betad"
    WEIGHT_Q_DIRECTION = "Wqd"
    WEIGHT_K_DIRECTION = "Wkd"
    WEIGHT_V_DIRECTION = "Wvd"
    WEIGHT_O_DIRECTION = "Wod"
    BIAS_Q_DIRECTION = "bqd"
    BIAS_K_DIRECTION = "bkd"
    BIAS_V_DIRECTION = "bvd"
    BIAS_O_DIRECTION = "bod"
    EMBEDDING_DIRECTION = "Ed"
    POSITION_DIRECTION = "Pd"
    WEIGHT_IH_DIRECTION = "Wihd"
    WEIGHT_HH_DIRECTION = "Whhd"
    BIAS_IH_DIRECTION = "bihd"
    BIAS_HH_DIRECTION = "bhhd"
    TARGET = "Y"  # the targets (no layer)

    @property
    def per_sample(self) -> bool:
        """One value per unit and sample (an activation, an error term, a tangent)."""
        return self in _PER_SAMPLE

    @property
    def direction(self) -> Role | None:
        """The direction (tangent) of a parameter role."""
        return _DIRECTIONS.get(self)


_PER_SAMPLE = frozenset(
    {
        Role.ACTIVATION,
        Role.PRE_ACTIVATION,
        Role.ERROR,
        Role.ERROR_IN,
        Role.TANGENT_A,
        Role.TANGENT_Z,
        Role.R_ERROR,
        Role.R_ERROR_IN,
        Role.KEPT,
        Role.NORMALIZED,
        Role.NORMALIZED_TANGENT,
        Role.COLUMNS,
        Role.TARGET,
        Role.QUERY,
        Role.KEY,
        Role.VALUE,
        Role.PROBS,
        Role.MIXED,
        Role.D_MIXED,
        Role.D_PROBS,
        Role.D_SCORES,
        Role.D_QUERY,
        Role.D_KEY,
        Role.D_VALUE,
        Role.QUERY_TANGENT,
        Role.KEY_TANGENT,
        Role.VALUE_TANGENT,
        Role.PROBS_TANGENT,
        Role.SCORES_TANGENT,
        Role.MIXED_TANGENT,
        Role.R_MIXED,
        Role.R_PROBS,
        Role.R_SCORES,
        Role.R_QUERY,
        Role.R_KEY,
        Role.R_VALUE,
        Role.GATES_IN,
        Role.RECURRENT,
        Role.D_GATES,
        Role.D_GATES_IN,
        Role.D_GATES_HIDDEN,
        Role.PREVIOUS_H,
        Role.GATES_IN_TANGENT,
        Role.RECURRENT_TANGENT,
        Role.PREVIOUS_H_TANGENT,
        Role.R_GATES,
        Role.R_GATES_IN,
        Role.R_GATES_HIDDEN,
    }
)
_DIRECTIONS = {
    Role.WEIGHT: Role.WEIGHT_DIRECTION,
    Role.BIAS: Role.BIAS_DIRECTION,
    Role.SCALE: Role.SCALE_DIRECTION,
    Role.SHIFT: Role.SHIFT_DIRECTION,
    Role.EMBEDDING: Role.EMBEDDING_DIRECTION,
    **{
        Role[f"{kind}_{part}"]: Role[f"{kind}_{part}_DIRECTION"]
        for kind in ("WEIGHT", "BIAS")
        for part in "QKVO"
    },
    Role.POSITION: Role.POSITION_DIRECTION,
    **{
        Role[f"{kind}_{part}"]: Role[f"{kind}_{part}_DIRECTION"]
        for kind in ("WEIGHT", "BIAS")
        for part in ("IH", "HH")
    },
}
# The parameter roles by the letter the graph gives a parameter tensor (symbp.ir.graph).
PARAMETER_ROLES = {
    "W": Role.WEIGHT,
    "b": Role.BIAS,
    "gamma": Role.SCALE,
    "beta": Role.SHIFT,
    "E": Role.EMBEDDING,
    "P": Role.POSITION,
    **{role.value: role for role in Role if role.name[:-2] in ("WEIGHT", "BIAS")},
    **{role.value: role for role in Role if role.name[:-3] in ("WEIGHT", "BIAS")},
}


class Layer(enum.Enum):
    """The layer of a general symbol of the index calculus (no number)."""

    GENERAL = "l"  # layer l
    PREVIOUS = "l-1"
    NEXT = "l+1"


LayerRef = int | Layer | None  # None: no layer (the targets, a layer-free template)


def name(role: Role, layer: LayerRef = None) -> str:
    """The array's name in the generated code: prefix + layer number (A3, delta3)."""
    if isinstance(layer, int):
        return f"{role.value}{layer}"
    if isinstance(layer, Layer):
        return f"{role.value}_{layer.name.lower()}"
    return role.value


class ArraySymbol(sp.Symbol):
    """A real symbol that is an array of the generated code: its role and its layer."""

    __slots__ = ("role", "layer")
    role: Role
    layer: LayerRef

    def __new__(cls, role: Role, layer: LayerRef = None) -> ArraySymbol:
        obj = super().__new__(cls, name(role, layer), real=True)
        obj.role, obj.layer = role, layer
        return obj

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self.role, self.layer), {}

    @classmethod
    def class_key(cls) -> tuple:
        """Sorted among the other symbols as a plain Symbol is: by name (the name, built from
        the role and the layer, tells them apart)."""
        return sp.Symbol.class_key()


class ArrayMatrix(sp.MatrixSymbol):
    """A matrix symbol of the generated code (a weight, a batch of activations): its role
    and its layer, beside its name and shape. Both are arguments of the SymPy node, after
    MatrixSymbol's own (name, rows, cols), so that SymPy, which rebuilds nodes from their
    arguments, keeps them."""

    def __new__(
        cls,
        role: Role | Str,
        layer: LayerRef | sp.Basic,
        rows: Any = None,
        cols: Any = None,
        *rest: sp.Basic,
    ) -> ArrayMatrix:
        if isinstance(role, Str):  # rebuilt by SymPy from (name, rows, cols, role, layer)
            name_arg, rows, cols, role_arg, layer_arg = role, layer, rows, cols, rest[0]
        else:
            role_arg, layer_arg = Str(role.name), _layer_arg(layer)  # type: ignore[arg-type]
            name_arg = Str(name(role, layer))  # type: ignore[arg-type]
        args = (name_arg, sp.sympify(rows), sp.sympify(cols), role_arg, layer_arg)
        return sp.Basic.__new__(cls, *args)  # type: ignore[return-value]

    @property
    def role(self) -> Role:
        return Role[self.args[3].name]

    @property
    def layer(self) -> LayerRef:
        arg = self.args[4]
        if isinstance(arg, sp.Integer):
            return int(arg)
        return Layer[arg.name] if arg.name else None

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.args[1], self.args[2]

    @classmethod
    def class_key(cls) -> tuple:
        return sp.MatrixSymbol.class_key()


def _layer_arg(layer: LayerRef) -> sp.Basic:
    if isinstance(layer, int):
        return sp.Integer(layer)
    return Str(layer.name if isinstance(layer, Layer) else "")


# SymPy orders the terms of a sum by class name, then by content: named as the classes they
# extend, array symbols sort among the other symbols by name (A1 - Mu2, not -Mu2 + A1).
ArraySymbol.__name__ = "Symbol"
ArrayMatrix.__name__ = "MatrixSymbol"


def array(role: Role, layer: LayerRef = None) -> ArraySymbol:
    """The array symbol of a role at a layer."""
    return ArraySymbol(role, layer)


def matrix(role: Role, layer: LayerRef, rows: Any, cols: Any) -> ArrayMatrix:
    """The matrix symbol of a role at a layer, of shape rows x cols."""
    return ArrayMatrix(role, layer, rows, cols)


def gradient_name(param_key: str) -> str:
    """The code's name of a parameter's gradient (dW3 for W3)."""
    return f"d{param_key}"


__all__ = [
    "ArrayMatrix",
    "ArraySymbol",
    "Layer",
    "PARAMETER_ROLES",
    "Role",
    "array",
    "gradient_name",
    "matrix",
    "name",
]
