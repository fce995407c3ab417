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
BATCH = 256


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


def jax_steps(x, params: dict, X, Y, device=None) -> dict:
    """JAX on `device` (the default one when None): symbp's step and jit(value_and_grad)
    of the same network written with jax.nn, plus the same SGD update, both jitted."""
    import jax
    import jax.numpy as jnp

    jp = {k: jax.device_put(jnp.asarray(v), device) for k, v in params.items()}
    jX, jY = jax.device_put(jnp.asarray(X), device), jax.device_put(jnp.asarray(Y), device)
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

    return {
        "JAX: jit(value_and_grad) + SGD": lambda: jax.block_until_ready(jax_step(jp, jX, jY)),
        "JAX: symbp step, jit": lambda: jax.block_until_ready(
            symbp_step(jp, opt, jX, jY, LR, optimizer="sgd")
        ),
        "_own gradients": lambda: jax.jit(jax.grad(jax_loss))(jp, jX, jY),
        "_symbp gradients": lambda: jax.jit(x.loss_and_grads)(jp, jX, jY)[1],
    }


def torch_steps(x, params: dict, X, Y, device: str = "cpu") -> dict:
    """PyTorch on `device`: symbp's step on tensors and eager autograd of the same network
    (torch.nn.functional) with torch.optim.SGD; each call ends synchronised."""
    import torch

    F = torch.nn.functional
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    leaves = {k: torch.tensor(v, device=device, requires_grad=True) for k, v in params.items()}
    sgd = torch.optim.SGD(list(leaves.values()), lr=LR)
    tX, tY = torch.tensor(X, device=device), torch.tensor(Y, device=device)
    tp = {k: torch.tensor(v, device=device) for k, v in params.items()}
    topt = x._optimizer_state(x._namespace(tp["W1"]), tp, "sgd", 0.0)

    def network(p):
        h = torch.sigmoid(F.linear(tX, p["W1"], p["b1"]))
        h = torch.sigmoid(F.linear(h, p["W2"], p["b2"]))
        z = F.linear(h, p["W3"], p["b3"])
        return -(tY * F.log_softmax(z, dim=1)).sum() / tX.shape[0]

    def torch_eager():
        sgd.zero_grad()
        network(leaves).backward()
        sgd.step()
        sync()

    def symbp_step():
        x.step(tp, topt, tX, tY, LR)
        sync()

    def own_gradients():
        copies = {k: v.detach().clone().requires_grad_(True) for k, v in leaves.items()}
        network(copies).backward()
        return {k: v.grad for k, v in copies.items()}

    return {
        "PyTorch: eager autograd + optim.SGD": torch_eager,
        "PyTorch: symbp step": symbp_step,
        "_own gradients": own_gradients,
        "_symbp gradients": lambda: x.loss_and_grads(tp, tX, tY)[1],
    }


def checked(name: str, steps: dict, want: dict) -> dict:
    """The timed steps, once the library's own gradients and symbp's agree with the NumPy
    module's (the `_` entries are the checks)."""

    def host(g):
        return g.detach().cpu().numpy() if hasattr(g, "detach") else np.asarray(g)

    for who in ("_own gradients", "_symbp gradients"):
        _check(f"{name} {who[1:]}", {k: host(v) for k, v in steps[who]().items()}, want)
    return {k: v for k, v in steps.items() if not k.startswith("_")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--block", type=float, default=0.5)
    parser.add_argument("--settle", type=float, default=0.2)
    args = parser.parse_args(argv)

    import jax
    import torch

    with tempfile.TemporaryDirectory() as folder:
        m, x = _modules(Path(folder))
        params, X, Y = problem(m)
        _, want = m.loss_and_grads(params, X, Y)
        steps = {}
        steps.update(checked("JAX", jax_steps(x, params, X, Y), want))
        steps.update(checked("PyTorch", torch_steps(x, params, X, Y), want))
        ws = m.make_workspace(BATCH)
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
    print(f"C1 one training step, float32, batch {BATCH}; {versions}")
    print(f"repeat {args.repeat}, blocks of {args.block} s, settle {args.settle} s\n")
    report(timings, baseline)
    return 0


def problem(m) -> tuple[dict, np.ndarray, np.ndarray]:
    """C1's parameters (seed 0) and a batch of BATCH random images with one-hot labels."""
    rng = np.random.default_rng(0)
    params = m.init_params(0)
    X = rng.random((BATCH, 784), dtype=np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]
    return params, X, Y


def report(timings: dict, baseline: dict) -> None:
    """A Markdown table: each median, its spread, its ratio to its library's baseline."""
    print("| contender | median ms | spread | ratio to its library's baseline |")
    print("|---|---|---|---|")
    for name, timing in timings.items():
        base = timings[baseline[name.split(":")[0]]]
        ratio = timing.median / base.median
        print(f"| {name} | {timing.median * 1e3:.2f} | {timing.spread:.0%} | {ratio:.3f} |")


if __name__ == "__main__":
    sys.exit(main())
