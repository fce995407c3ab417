"""The network as a graph of layer kinds: tensors with shapes and roles, nodes in order.

Built from the validated file (symbp.frontend.spec) and nothing else; no SymPy. Layer l is one node
of its kind (dense, add, layernorm, batchnorm) that reads a^(l-1) (and, for add, the tensor
its `from` names) and writes z^(l), followed by its activation, a^(l) = f(z^(l)). A tensor
read by several nodes (the input of a residual block) has several consumers: its error
term is the sum of what each sends back.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass

from symbp.frontend.kind_keys import KINDS
from symbp.frontend.spec import Arch, Layer


class Role(enum.Enum):
    """What a tensor is in the network (never read back from its name)."""

    INPUT = "input"  # a^(0) = x
    PRE_ACTIVATION = "pre-activation"  # z^(l)
    ACTIVATION = "activation"  # a^(l)
    PARAMETER = "parameter"  # W^(l), b^(l), gamma^(l), beta^(l)


_AXES = {0: (), 1: ("units",), 2: ("positions", "features"), 3: ("channels", "height", "width")}
_PARAMETER_AXES = {
    1: ("units",),
    2: ("outputs", "inputs"),
    3: ("channels", "height", "width"),
    4: ("filters", "channels", "kernel height", "kernel width"),
}


@dataclass(frozen=True)
class Tensor:
    """A tensor of the network: per-sample `shape` (parameters: their whole shape)."""

    key: str  # unique in the graph: "a0", "z3", "W3", ...
    role: Role
    layer: int  # the layer that writes it (0: the input); for parameters, their layer
    shape: tuple[int, ...]
    symbol: str  # the seed's letter: a, z, W, b, gamma, beta
    decayed: bool = False  # a parameter the file's l2 covers (its kind's registry entry says)
    init: str = ""  # a parameter's initialisation: "fan" (He or Glorot), "zeros", "ones", "normal"
    vocab: int = 0  # token ids in [0, vocab): a token input (T,), one id per position

    @property
    def axes(self) -> tuple[str, ...]:
        """The names of its per-sample axes (parameters: of the whole tensor), by rank: a
        vector's units, a sequence's positions and features, an image's channels, height
        and width."""
        if self.role == Role.PARAMETER:
            return _PARAMETER_AXES.get(len(self.shape), ())
        return _AXES.get(len(self.shape), tuple(f"axis{k}" for k in range(len(self.shape))))

    @property
    def size(self) -> int:
        """Entries per sample (an image (C, H, W) is stored as C*H*W, in C order)."""
        return math.prod(self.shape)

    @property
    def sequence(self) -> bool:
        """A per-sample sequence (T, d): the code holds it as T rows of d, one per position."""
        return self.role != Role.PARAMETER and (len(self.shape) == 2 or self.vocab > 0)

    @property
    def row_size(self) -> int:
        """Entries in one stored row: d for a sequence (one row per position), one id for
        token ids, the whole sample otherwise (an image's C*H*W entries in one row)."""
        if self.vocab:
            return 1
        return self.shape[-1] if self.sequence else self.size

    @property
    def rows(self) -> int:
        """Stored rows per sample: T for a sequence (one per position), else 1."""
        return self.shape[0] if self.sequence else 1

    @property
    def image(self) -> bool:
        return self.role != Role.PARAMETER and len(self.shape) == 3

    @property
    def stored_flat(self) -> bool:
        """A parameter shaped like an image (layer norm's gamma, beta on an image): the code
        holds it as its C*H*W entries, like the per-sample arrays it multiplies."""
        return self.role == Role.PARAMETER and len(self.shape) == 3

    def __repr__(self) -> str:
        return f"Tensor({self.key}: {self.role.value} {self.shape})"


@dataclass(frozen=True)
class Node:
    """Layer l: its kind reads `inputs` (and `params`) and writes z; its activation writes a."""

    index: int
    kind: str
    layer: Layer
    inputs: tuple[Tensor, ...]  # a^(l-1) first; for add, then the tensor `from` names
    params: tuple[Tensor, ...]
    z: Tensor
    a: Tensor

    @property
    def regroups_rows(self) -> bool:
        """Whether its output holds a sample in another number of rows than its input (a
        flatten of a sequence: T rows a sample, then one)."""
        return self.z.rows != self.inputs[0].rows

    def __repr__(self) -> str:
        reads = ", ".join(t.key for t in (*self.inputs, *self.params))
        return f"Node({self.index} {self.kind}: {reads} -> {self.z.key} -> {self.a.key})"


def _parameters(layer: Layer, l: int, shape_in: tuple[int, ...]) -> tuple[Tensor, ...]:
    """The parameter tensors of layer l, as its kind's entry in the registry gives them."""
    wanted = KINDS[layer.type].parameters(layer, shape_in)
    return tuple(
        Tensor(f"{sym}{l}", Role.PARAMETER, l, shape, sym, decayed, init)
        for sym, shape, decayed, init in wanted
    )


@dataclass(frozen=True)
class Graph:
    """Nodes in topological order (the file's order), with every tensor's consumers."""

    arch: Arch
    input: Tensor
    nodes: tuple[Node, ...]

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    @functools.cached_property
    def consumers(self) -> dict[str, tuple[Node, ...]]:
        """tensor key -> the nodes that read it, in order."""
        found: dict[str, list[Node]] = {}
        for node in self.nodes:
            for tensor in node.inputs:
                found.setdefault(tensor.key, []).append(node)
        return {key: tuple(nodes) for key, nodes in found.items()}

    @property
    def parameters(self) -> tuple[Tensor, ...]:
        """Every parameter once, in the order the nodes first read them."""
        return tuple(self.parameter_consumers)

    @functools.cached_property
    def parameter_consumers(self) -> dict[Tensor, tuple[Node, ...]]:
        """The parameter table: each parameter and the nodes that read it. A parameter read
        by several nodes (a tied weight) gets the sum of their gradients."""
        found: dict[Tensor, list[Node]] = {}
        for node in self.nodes:
            for p in node.params:
                found.setdefault(p, []).append(node)
        return {p: tuple(nodes) for p, nodes in found.items()}

    def activation(self, l: int) -> Tensor:
        """a^(l) (a^(0) is the input)."""
        return self.input if l == 0 else self.nodes[l - 1].a

    def __repr__(self) -> str:
        return f"Graph({self.arch.name}: {len(self.nodes)} nodes)"


def build_graph(arch: Arch) -> Graph:
    """The graph of a validated architecture."""
    x = Tensor("a0", Role.INPUT, 0, arch.layer_shapes[0], "a", vocab=arch.vocab)
    nodes: list[Node] = []
    for l, layer in enumerate(arch.layers, start=1):
        previous = x if l == 1 else nodes[-1].a
        inputs: tuple[Tensor, ...] = (previous,)
        if layer.type == "add":
            assert layer.source is not None
            source = arch.layer_index[layer.source]
            inputs += (x if source == 0 else nodes[source - 1].a,)
        shape = layer.out_shape
        params = _parameters(layer, l, previous.shape)
        if layer.tie is not None:  # the weight is the embedding table E of the layer named
            tied = nodes[arch.layer_index[layer.tie] - 1]
            params = (tied.params[0], *params[1:])
        nodes.append(
            Node(
                index=l,
                kind=layer.type,
                layer=layer,
                inputs=inputs,
                params=params,
                z=Tensor(f"z{l}", Role.PRE_ACTIVATION, l, shape, "z"),
                a=Tensor(f"a{l}", Role.ACTIVATION, l, shape, "a"),
            )
        )
    return Graph(arch, x, tuple(nodes))
