#!/usr/bin/env python
"""The array-API module (<name>_xp.py) against the frameworks' own autodiff, one training
step (loss, gradients, SGD update) of C1 (784-512-256-10, sigmoid, softmax + cross-entropy,
float32, batch 256):

- JAX: jax.jit(net.step) against jax.jit of jax.value_and_grad plus the same update;
- PyTorch: net.step on tensors (eager) against PyTorch eager autograd with torch.optim.SGD;
- NumPy: the NumPy module's loss_and_grads with a workspace and the array-API module on
  NumPy arrays, for scale.

    python bench/xp.py [--repeat 7] [--block 0.5] [--settle 0.2]

Timed in blocks (bench.timing.blocks), every contender in this process; prints a Markdown
table with each median, its spread and its ratio to the framework's own step. Before
timing, each step's gradients are checked against the NumPy module's (2e-4 of the largest
entry). Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this command on the development
machine (they force a slower kernel there).
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

ROOT = Path(__file__).resolve().parent.parent
LR = 0.01


def _modules(folder: Path):
    from symbp.check.gradcheck import import_path
    from symbp.pipeline import generate, write_files

    result = generate(ROOT / "examples" / "c1_mnist_sigmoid.yaml", targets=("numpy", "array-api"))
    write_files(result.files, folder)
    return import_path(folder / "c1_mnist_sigmoid.py"), import_path(
        folder / "c1_mnist_sigmoid_xp.py"
    )


def _check(name: str, got: dict, want: dict) -> None:
    for key, value in want.items():
        error = np.abs(np.asarray(got[key], dtype=np.float64) - value).max() / np.abs(value).max()
        if error > 2e-4:
            raise SystemExit(f"{name}: gradient {key} is {error:.1e} off the NumPy module's")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--block", type=float, default=0.5)
    parser.add_argument("--settle", type=float, default=0.2)
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import torch

    with tempfile.TemporaryDirectory() as folder:
        m, x = _modules(Path(folder))
        rng = np.random.default_rng(0)
        params = m.init_params(0)
        X = rng.random((256, 784), dtype=np.float32)
        Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 256)]
        _, want = m.loss_and_grads(params, X, Y)
        steps = {}

        # --- JAX --------------------------------------------------------------------------
        jp, jX, jY = {k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(X), jnp.asarray(Y)
        opt = x._optimizer_state(jnp, jp, "sgd", 0.0)
        symbp_step = jax.jit(x.step, static_argnames=("optimizer",))

        def jax_loss(p, xb, yb):
            h = jax.nn.sigmoid(xb @ p["W1"].T + p["b1"])
            h = jax.nn.sigmoid(h @ p["W2"].T + p["b2"])
            z = h @ p["W3"].T + p["b3"]
            return -(yb * jax.nn.log_softmax(z, axis=1)).sum() / xb.shape[0]

        @jax.jit
        def jax_step(p, xb, yb):
            value, grads = jax.value_and_grad(jax_loss)(p, xb, yb)
            return jax.tree_util.tree_map(lambda a, g: a - LR * g, p, grads), value

        _check("symbp on JAX", jax.jit(x.loss_and_grads)(jp, jX, jY)[1], want)
        _check("JAX autodiff", jax.jit(jax.grad(jax_loss))(jp, jX, jY), want)
        steps["JAX: jit(value_and_grad) + SGD"] = lambda: jax.block_until_ready(
            jax_step(jp, jX, jY)
        )
        steps["JAX: symbp step, jit"] = lambda: jax.block_until_ready(
            symbp_step(jp, opt, jX, jY, LR, optimizer="sgd")
        )

        # --- PyTorch ----------------------------------------------------------------------
        F = torch.nn.functional
        leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        sgd = torch.optim.SGD(list(leaves.values()), lr=LR)
        tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
        tp = {k: torch.tensor(v) for k, v in params.items()}
        topt = x._optimizer_state(x._namespace(tp["W1"]), tp, "sgd", 0.0)

        def torch_eager():
            sgd.zero_grad()
            h = torch.sigmoid(F.linear(tX, leaves["W1"], leaves["b1"]))
            h = torch.sigmoid(F.linear(h, leaves["W2"], leaves["b2"]))
            z = F.linear(h, leaves["W3"], leaves["b3"])
            value = -(tY * F.log_softmax(z, dim=1)).sum() / tX.shape[0]
            value.backward()
            sgd.step()

        _check(
            "symbp on PyTorch",
            {k: g.numpy() for k, g in x.loss_and_grads(tp, tX, tY)[1].items()},
            want,
        )
        steps["PyTorch: eager autograd + optim.SGD"] = torch_eager
        steps["PyTorch: symbp step"] = lambda: x.step(tp, topt, tX, tY, LR)

        # --- NumPy ------------------------------------------------------------------------
        ws = m.make_workspace(256)
        _check("symbp xp on NumPy", x.loss_and_grads(params, X, Y)[1], want)
        steps["NumPy: symbp module, workspace"] = lambda: m.loss_and_grads(params, X, Y, ws)
        steps["NumPy: symbp xp module"] = lambda: x.loss_and_grads(params, X, Y)

        timings = blocks(steps, args.repeat, args.block, args.settle)

    baseline = {
        "JAX": "JAX: jit(value_and_grad) + SGD",
        "PyTorch": "PyTorch: eager autograd + optim.SGD",
        "NumPy": "NumPy: symbp module, workspace",
    }
    versions = f"jax {jax.__version__}, torch {torch.__version__}"
    print(f"C1 one training step, float32, batch 256; {versions}")
    print(f"repeat {args.repeat}, blocks of {args.block} s, settle {args.settle} s\n")
    print("| contender | median ms | spread | ratio to its library's baseline |")
    print("|---|---|---|---|")
    for name, timing in timings.items():
        base = timings[baseline[name.split(":")[0]]]
        ratio = timing.median / base.median
        print(f"| {name} | {timing.median * 1e3:.2f} | {timing.spread:.0%} | {ratio:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
