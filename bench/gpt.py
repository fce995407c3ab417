#!/usr/bin/env python
"""Benchmark one training step of a GPT block, generated code against PyTorch eager.

    python bench/gpt.py [--repeat N] [--quick]

The network (issue 22's): token ids (batch 16, T 64, vocab 96) -> embedding 128 with learned
positions -> pre-LN causal self-attention (4 heads) + residual -> pre-LN MLP (512, gelu_tanh,
128) + residual -> layer norm -> LM head tied to the embedding -> softmax cross-entropy,
float32. One step: the loss and every gradient. symbp: the NumPy module's loss_and_grads with
a workspace. PyTorch eager: the same network from torch.nn modules, attention by
F.scaled_dot_product_attention (is_causal), loss.backward(). Before timing, both are run in
float64 on the same parameters and must agree (exit 1 otherwise). Timing: bench.timing.blocks.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

from bench.timing import blocks  # noqa: E402

V, T, D, HEADS, HIDDEN, BATCH = 96, 64, 128, 4, 512, 16


def gpt_block(dtype: str = "float32", positions: int = T, width: int = D) -> dict:
    return {
        "name": f"gpt_block_{dtype}",
        "dtype": dtype,
        "input": {"tokens": positions, "vocab": V},
        "layers": [
            {"type": "embedding", "dim": width, "name": "emb"},
            {"type": "layernorm"},
            {"type": "attention", "heads": HEADS, "causal": True},
            {"type": "add", "from": "emb", "name": "r1"},
            {"type": "layernorm"},
            {"units": 4 * width, "activation": "gelu_tanh"},
            {"units": width},
            {"type": "add", "from": "r1"},
            {"type": "layernorm"},
            {"units": V, "tie": "emb", "bias": False, "activation": "softmax"},
        ],
        "loss": "cross_entropy",
    }


def _module(doc: dict, folder: Path):
    from symbp.check.gradcheck import import_path
    from symbp.frontend.spec import arch_from_mapping
    from symbp.pipeline import generate, write_files

    arch = arch_from_mapping(doc)
    write_files(generate(arch).files, folder)
    return import_path(folder / f"{arch.name}.py")


def _torch_step(params: dict, dtype):
    """The same network in PyTorch eager, as a closure computing loss and gradients."""
    import torch
    import torch.nn.functional as F

    tp = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in params.items()}

    def loss_fn(X, Y):
        d = tp["E1"].shape[1]
        x = F.embedding(X, tp["E1"]) + tp["P1"]
        h = F.layer_norm(x, (d,), tp["gamma2"], tp["beta2"])
        q, k, v = (F.linear(h, tp[f"W{p}3"], tp[f"b{p}3"]) for p in "qkv")
        split = lambda t: t.view(t.shape[0], t.shape[1], HEADS, -1).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=True)
        o = o.transpose(1, 2).reshape(x.shape)
        r1 = x + F.linear(o, tp["Wo3"], tp["bo3"])
        h = F.layer_norm(r1, (d,), tp["gamma5"], tp["beta5"])
        h = F.gelu(F.linear(h, tp["W6"], tp["b6"]), approximate="tanh")
        r2 = r1 + F.linear(h, tp["W7"], tp["b7"])
        h = F.layer_norm(r2, (d,), tp["gamma9"], tp["beta9"])
        logits = F.linear(h, tp["E1"])
        return F.cross_entropy(logits.reshape(-1, V), Y.reshape(-1))

    def step(X, Y):
        for p in tp.values():
            p.grad = None
        loss = loss_fn(X, Y)
        loss.backward()
        return loss, {k: p.grad for k, p in tp.items()}

    return step


def check(folder: Path) -> bool:
    """float64 at a small size: symbp's loss and gradients against PyTorch autograd."""
    import torch

    module = _module(gpt_block("float64", 8, 16), folder)
    rng = np.random.default_rng(0)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in module.init_params(0).items()}
    X, Y = rng.integers(0, V, (4, 8)), rng.integers(0, V, (4, 8))
    value, grads = module.loss_and_grads(params, X, Y)
    tvalue, tgrads = _torch_step(params, torch.float64)(torch.tensor(X), torch.tensor(Y))
    # relative to the largest gradient entry: bk's gradient is 0 in exact arithmetic (the
    # softmax does not see a bias shared by every key), so its own scale is rounding noise
    scale = max(float(np.max(np.abs(g))) for g in grads.values())
    worst = max(float(np.max(np.abs(grads[k] - tgrads[k].numpy()))) for k in grads) / scale
    ok = abs(value - tvalue.item()) <= 1e-10 * abs(value) and worst < 1e-8
    print(f"float64 check: loss {value:.12f} vs {tvalue.item():.12f}, worst relative "
          f"gradient difference {worst:.1e}: {'ok' if ok else 'DISAGREE'}")  # fmt: skip
    return ok


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="few repeats, short blocks")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if not check(Path(tmp)):
            return 1
        module = _module(gpt_block(), Path(tmp))
    rng = np.random.default_rng(1)
    params = module.init_params(0)
    X, Y = rng.integers(0, V, (BATCH, T)), rng.integers(0, V, (BATCH, T))
    ws = module.make_workspace(BATCH)
    torch_step = _torch_step(params, torch.float32)
    tX, tY = torch.tensor(X), torch.tensor(Y)
    steps = {
        "symbp (numpy, workspace)": lambda: module.loss_and_grads(params, X, Y, ws),
        "pytorch eager (sdpa)": lambda: torch_step(tX, tY),
    }
    repeat = 3 if args.quick else args.repeat
    timings = blocks(steps, repeat, 0.2 if args.quick else 1.0, 0.05 if args.quick else 0.3)
    base = timings["pytorch eager (sdpa)"].median
    threads = torch.get_num_threads()
    print(f"one training step, batch {BATCH}, T {T}, d {D}, {HEADS} heads, MLP {HIDDEN}, "
          f"vocab {V}, float32; torch {torch.__version__}, {threads} threads")  # fmt: skip
    for name, t in timings.items():
        print(f"  {name:28s} {t.median * 1e3:8.2f} ms   {t.median / base:5.2f}x pytorch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
