"""The benchmark configurations and the plain description of a network the references read.

The references (GEMM floor, textbook NumPy, PyTorch, JAX) read the architecture YAML
themselves, so they share no code with the generator they are compared with.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class Config:
    """One benchmark case: an architecture file, a batch size and a shrunk quick variant."""

    key: str
    file: str
    batch: int
    quick_width: int | None = None  # quick mode: hidden (and input) width, None: as is
    quick_batch: int | None = None


CONFIGS: dict[str, Config] = {
    "C1": Config("C1", "c1_mnist_sigmoid.yaml", 256),
    "C2": Config("C2", "c2_seed_mse.yaml", 100),
    "C3": Config("C3", "c3_deep_tanh.yaml", 512, quick_width=256, quick_batch=128),
    "C4": Config("C4", "c4_small_relu.yaml", 32),
}


@dataclass(frozen=True)
class Net:
    """What a hand-written implementation needs to know about the network."""

    name: str
    sizes: tuple[int, ...]  # input, then each layer's units
    activations: tuple[str, ...]  # one per layer
    loss: str  # mse | bce | cross_entropy
    layout: str  # row | column
    batch: int

    @property
    def depth(self) -> int:
        return len(self.activations)

    @property
    def row(self) -> bool:
        return self.layout == "row"


def load_doc(config: Config) -> dict[str, Any]:
    """The architecture mapping of a config's example file."""
    with open(EXAMPLES / config.file, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def shrink(doc: dict[str, Any], width: int) -> dict[str, Any]:
    """The same network with its input and every hidden layer `width` units wide."""
    small = copy.deepcopy(doc)
    small["name"] = f"{doc['name']}_w{width}"
    small["input"] = width
    for layer in small["layers"][:-1]:
        layer["units"] = width
    return small


def with_layout(doc: dict[str, Any], layout: str) -> dict[str, Any]:
    """The same network in another layout, under a name that says so."""
    other = copy.deepcopy(doc)
    other["layout"] = layout
    other["name"] = f"{doc['name']}_{layout}"
    return other


def config_doc(config: Config, quick: bool) -> tuple[dict[str, Any], int]:
    """The mapping to benchmark and its batch size (quick mode may shrink both)."""
    doc = load_doc(config)
    if quick and config.quick_width is not None:
        doc = shrink(doc, config.quick_width)
    batch = config.quick_batch if quick and config.quick_batch else config.batch
    return doc, batch


def net_of(doc: dict[str, Any], batch: int) -> Net:
    """The plain description of a mapping."""
    units = tuple(int(layer["units"]) for layer in doc["layers"])
    return Net(
        name=str(doc["name"]),
        sizes=(int(doc["input"]), *units),
        activations=tuple(str(layer["activation"]) for layer in doc["layers"]),
        loss=str(doc["loss"]),
        layout=str(doc.get("layout", "column")),
        batch=batch,
    )


def random_batch(net: Net, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 inputs and targets that suit the loss, in the net's layout."""
    rng = np.random.default_rng(seed)
    n, d, k = net.batch, net.sizes[0], net.sizes[-1]
    X = rng.standard_normal((n, d), dtype=np.float32)
    if net.loss == "cross_entropy":
        Y = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
    elif net.loss == "bce":
        Y = rng.integers(0, 2, (n, k)).astype(np.float32)
    else:
        Y = rng.standard_normal((n, k), dtype=np.float32)
    if not net.row:
        return np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T)
    return X, Y


def perturb_biases(params: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Copies of the parameters with small non-zero biases, so bias gradients are exercised."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, value in params.items():
        noise = 0.05 * rng.standard_normal(value.shape) if key.startswith("b") else 0.0
        out[key] = np.ascontiguousarray(value + noise, dtype=np.float32)
    return out


def to_layout(params: dict[str, np.ndarray], row: bool) -> dict[str, np.ndarray]:
    """Biases reshaped for a layout: (n,) for row, (n, 1) for column; weights shared."""
    out = {}
    for key, value in params.items():
        if key.startswith("b"):
            out[key] = value.reshape(-1) if row else value.reshape(-1, 1)
        else:
            out[key] = value
    return out
