#!/usr/bin/env python
"""Benchmark the generated code for convolutional networks against PyTorch eager.

    python bench/cnn.py [--repeat N] [--configs K1,K2] [--quick] [--batch N]

- K1, the small CNN of issue 11: 1x28x28 -> conv 8@3x3 pad 1 relu -> maxpool 2 ->
  conv 16@3x3 pad 1 relu -> maxpool 2 -> flatten -> dense 64 relu -> dense 10 softmax;
- K2, a residual stack: 16x32x32 -> three blocks (conv 16@3x3 same relu, conv 16@3x3
  same, add, relu) -> avgpool 8 -> flatten -> dense 10 softmax.

float32, row layout (NCHW), cross-entropy, batch 64; one training step (forward, loss,
every gradient) per call, symbp with a workspace. Before timing, symbp's float64 loss
and gradients are compared with PyTorch autograd in float64 (exit 1 on a disagreement).
The floor is what an im2col lowering cannot avoid: per conv layer the unfolding copy and
the three products (forward, kernel gradient, input gradient) and the dense products, on
preallocated arrays; PyTorch's oneDNN convolutions avoid the copies, so PyTorch may be
below this floor. Timing: bench.timing.blocks (blocks of back-to-back calls, an idle
pause before each, rotating order). "floor+" adds the least the other steps must move: one
pass over each pooling's input, one write of each conv's and pooling's input error.
"xp-torch" is the array-API module (--target array-api) on PyTorch tensors, running
PyTorch's own convolutions. --profile prints where symbp's step spends its time.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bench.timing import blocks  # noqa: E402

CONV = {"type": "conv2d", "kernel": 3, "padding": 1}


def k1() -> dict:
    return {
        "name": "k1_small_cnn",
        "input": [1, 28, 28],
        "layers": [
            {**CONV, "filters": 8, "activation": "relu"},
            {"type": "maxpool2d", "size": 2},
            {**CONV, "filters": 16, "activation": "relu"},
            {"type": "maxpool2d", "size": 2},
            {"type": "flatten"},
            {"units": 64, "activation": "relu"},
            {"units": 10, "activation": "softmax"},
        ],
    }


def k2() -> dict:
    layers: list[dict] = []
    for block in range(3):
        source = "input" if block == 0 else f"block{block}"
        layers += [
            {**CONV, "filters": 16, "activation": "relu"},
            {**CONV, "filters": 16},
            {"type": "add", "from": source, "activation": "relu", "name": f"block{block + 1}"},
        ]
    layers += [
        {"type": "avgpool2d", "size": 8},
        {"type": "flatten"},
        {"units": 10, "activation": "softmax"},
    ]
    return {"name": "k2_res_cnn", "input": [16, 32, 32], "layers": layers}


CONFIGS = {"K1": k1, "K2": k2}


def module(doc: dict, dtype: str, folder: Path, target: str = "numpy") -> ModuleType:
    """The generated module for `target` ("numpy" or "array-api")."""
    from symbp.check.gradcheck import import_path
    from symbp.frontend.spec import arch_from_mapping
    from symbp.pipeline import generate, write_files

    full = {**doc, "layout": "row", "loss": "cross_entropy", "dtype": dtype}
    full["name"] = f"{doc['name']}_{dtype}"
    arch = arch_from_mapping(full)
    write_files(generate(arch, targets=(target,)).files, folder)
    suffix = "_xp" if target == "array-api" else ""
    return import_path(folder / f"{arch.name}{suffix}.py")


def xp_torch_step(m: ModuleType, folder: Path, doc: dict, params: dict, X: Any, Y: Any) -> Any:
    """The array-API module's loss_and_grads on PyTorch tensors (PyTorch's convolution
    kernels), checked first against the NumPy module's gradients (2e-4 of the largest)."""
    import torch

    x = module(doc, "float32", folder, target="array-api")
    tp = {k: torch.from_numpy(v) for k, v in params.items()}
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    _, want = m.loss_and_grads(params, X, Y)
    _, got = x.loss_and_grads(tp, tX, tY)
    for key, value in want.items():
        error = np.abs(got[key].numpy() - value).max() / np.abs(value).max()
        if error > 2e-4:
            raise SystemExit(f"array-API module on PyTorch: gradient {key} {error:.1e} off")
    return lambda: x.loss_and_grads(tp, tX, tY)


def problem(m: ModuleType, doc: dict, batch: int, dtype: Any) -> tuple[dict, Any, Any]:
    rng = np.random.default_rng(0)
    params = {k: v.astype(dtype) for k, v in m.init_params(0).items()}
    X = rng.standard_normal((batch, *doc["input"])).astype(dtype)
    Y = np.eye(10, dtype=dtype)[rng.integers(0, 10, batch)]
    return params, X, Y


def torch_step(doc: dict, params: dict, X: Any, Y: Any) -> tuple[Any, Any]:
    """A PyTorch module written here from the same mapping: (step, loss_and_grads)."""
    import torch
    import torch.nn.functional as F

    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x, y = torch.tensor(X), torch.tensor(Y)

    def loss() -> Any:
        h, named = x, {"input": x}
        for l, layer in enumerate(doc["layers"], start=1):
            kind = layer.get("type", "dense")
            if kind == "conv2d":
                h = F.conv2d(h, t[f"W{l}"], t.get(f"b{l}"), padding=layer["padding"])
            elif kind == "maxpool2d":
                h = F.max_pool2d(h, layer["size"])
            elif kind == "avgpool2d":
                h = F.avg_pool2d(h, layer["size"])
            elif kind == "flatten":
                h = torch.flatten(h, 1)
            elif kind == "add":
                h = h + named[layer["from"]]
            else:
                h = h @ t[f"W{l}"].T + t[f"b{l}"]
            if layer.get("activation") == "relu":
                h = torch.relu(h)
            if "name" in layer:
                named[layer["name"]] = h
        return -(y * F.log_softmax(h, dim=1)).sum() / x.shape[0]

    def step() -> None:
        for p in t.values():
            p.grad = None
        loss().backward()

    def values() -> tuple[float, dict]:
        step()
        return float(loss()), {k: p.grad.numpy() for k, p in t.items()}

    return step, values


def floor_step(m: ModuleType, doc: dict, batch: int, dtype: Any, copies: bool = False) -> Any:
    """The products and unfolding copies an im2col lowering cannot avoid, preallocated;
    with `copies`, also one pass over each pooling's input forward and one write of each
    conv's and pooling's input error backward (the least col2im and routing can do)."""
    from symbp.frontend.spec import arch_from_mapping

    arch = arch_from_mapping({**doc, "layout": "row", "loss": "cross_entropy"})
    work = []
    for layer, shape_in in zip(arch.layers, arch.layer_shapes, strict=False):
        if layer.type == "conv2d":
            C, H, W = shape_in
            F, Ho, Wo = layer.shape
            k = C * layer.window.area
            x = np.zeros((batch, C, H + 2, W + 2), dtype)
            view = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))
            view = view.transpose(0, 1, 4, 5, 2, 3)
            cols = np.empty((batch, C, 3, 3, Ho, Wo), dtype)
            kern = np.ones((F, k), dtype)
            z = np.empty((batch, F, Ho * Wo), dtype)
            dW = np.empty((batch, F, k), dtype)
            dcols = np.empty((batch, k, Ho * Wo), dtype)
            dx = np.empty((batch, C, H, W), dtype) if copies else None
            work.append(("conv", view, cols, kern, z, dW, dcols, k, dx))
        elif layer.type in ("maxpool2d", "avgpool2d") and copies:
            x = np.ones((batch, *shape_in), dtype)
            work.append(("pool", x, np.empty_like(x), np.empty_like(x)))
        elif layer.type == "dense":
            n_in = shape_in[0]
            a = np.ones((batch, n_in), dtype)
            w = np.ones((layer.units, n_in), dtype)
            work.append(("dense", a, w, np.empty((batch, layer.units), dtype)))

    def step() -> None:
        for item in work:
            if item[0] == "conv":
                _, view, cols, kern, z, dW, dcols, k, dx = item
                np.copyto(cols, view)
                flat = cols.reshape(cols.shape[0], k, -1)
                np.matmul(kern, flat, out=z)
                np.matmul(z, flat.transpose(0, 2, 1), out=dW)
                np.matmul(kern.T, z, out=dcols)
                if dx is not None:  # the input's error written once (col2im's least)
                    dx[...] = 0
            elif item[0] == "pool":  # read the input once forward, write its error once
                _, x, seen, dx = item
                np.copyto(seen, x)
                dx[...] = 0
            else:
                _, a, w, out = item
                np.matmul(a, w.T, out=out)
                out.T @ a
                out @ w

    return step


def check(doc: dict, folder: Path, batch: int) -> str:
    """symbp float64 against PyTorch float64: the largest error relative to each gradient."""
    m = module(doc, "float64", folder)
    params, X, Y = problem(m, doc, batch, np.float64)
    value, grads = m.loss_and_grads(params, X, Y)
    ref_value, ref = torch_step(doc, params, X, Y)[1]()
    worst = abs(value - ref_value) / abs(ref_value)
    for key, g in ref.items():
        worst = max(worst, float(np.max(np.abs(grads[key] - g)) / np.max(np.abs(g))))
    if worst > 1e-9:
        raise SystemExit(f"{doc['name']}: symbp and PyTorch differ by {worst:.1e}")
    return f"float64 check against PyTorch: largest relative error {worst:.1e}"


def profile(m: ModuleType, params: dict, X: Any, Y: Any, ws: dict) -> list[str]:
    """Seconds per helper call in one step (the module's helpers wrapped and timed)."""
    spent: dict[str, float] = {}
    names = [n for n in dir(m) if n.startswith(("_conv", "_max", "_avg", "_channel", "_softmax"))]
    originals = {n: getattr(m, n) for n in names}

    def timed(name: str, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
            return out

        return run

    for n in names:
        setattr(m, n, timed(n, originals[n]))
    runs = 20
    start = time.perf_counter()
    for _ in range(runs):
        m.loss_and_grads(params, X, Y, ws)
    total = (time.perf_counter() - start) / runs
    for n, fn in originals.items():
        setattr(m, n, fn)
    lines = [f"  step {total * 1e3:.2f} ms; helpers (inclusive, nested calls counted twice):"]
    for n, s in sorted(spent.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {n:24s} {s / runs * 1e3:7.3f} ms")
    return lines


def _step(m: ModuleType, params: dict, X: Any, Y: Any, ws: dict) -> Any:
    return lambda: m.loss_and_grads(params, X, Y, ws)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="K1,K2")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="3 rounds, short blocks")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    repeat, block, settle = (3, 0.05, 0.05) if args.quick else (args.repeat, 0.3, 0.25)
    try:
        import torch
    except ImportError:
        torch = None
    for name in args.configs.split(","):
        doc = CONFIGS[name]()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            print(f"{name} ({doc['name']}), batch {args.batch}, float32")
            if torch is not None:
                print("  " + check(doc, folder, min(args.batch, 4)))
            m = module(doc, "float32", folder)
            params, X, Y = problem(m, doc, args.batch, np.float32)
            ws = m.make_workspace(args.batch)
            steps = {"symbp": _step(m, params, X, Y, ws)}
            steps["floor"] = floor_step(m, doc, args.batch, np.float32)
            steps["floor+"] = floor_step(m, doc, args.batch, np.float32, copies=True)
            if torch is not None:
                steps["pytorch"] = torch_step(doc, params, X, Y)[0]
                steps["xp-torch"] = xp_torch_step(m, folder, doc, params, X, Y)
            times = blocks(steps, repeat, block, settle)
            base = times.get("pytorch", times["symbp"]).median
            for who, t in times.items():
                ratio = t.median / base
                print(f"  {who:8s} {t.median * 1e3:8.2f} ms  (IQR {t.spread:5.1%})  {ratio:.2f}x")
            for floor in ("floor", "floor+"):
                print(f"  symbp / {floor}: {times['symbp'].median / times[floor].median:.2f}x")
            if args.profile:
                print("\n".join(profile(m, params, X, Y, ws)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
