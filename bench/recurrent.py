#!/usr/bin/env python
"""Benchmark one training step of a recurrent classifier, generated code against PyTorch eager.

    python bench/recurrent.py [--repeat N] [--quick]

The network (issue 23's): a sequence (T 32, d 64, batch 64) -> one recurrent layer of 128 units
(lstm, gru or rnn with tanh; return: last) -> dense 10 with softmax -> cross-entropy on class
ids, float32, row layout. One step: the loss and every gradient. symbp: the NumPy module's
loss_and_grads with a workspace. PyTorch eager: torch.nn.LSTM/GRU/RNN (batch_first) + nn.Linear
+ F.cross_entropy, loss.backward(). Before timing, each cell is run in float64 at a small size
by both on the same parameters and must agree (exit 1 otherwise). Timing: bench.timing.blocks.
Then the wall time of `python -m symbp generate` in a fresh process for a 3-layer stacked LSTM
(128 units each, the last return: last, dense 10 softmax) at T 32 and T 256: the loop is code,
not unrolled, so it should not grow with T.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench.genscale import child_env  # noqa: E402
from bench.timing import blocks  # noqa: E402

T, D, UNITS, CLASSES, BATCH = 32, 64, 128, 10, 64
KINDS = ("lstm", "gru", "rnn")  # the headline first


def classifier(
    kind: str,
    dtype: str = "float32",
    steps: int = T,
    d: int = D,
    units: int = UNITS,
    depth: int = 1,
) -> dict:
    """depth recurrent layers of `kind` (all but the last return: sequence) + dense softmax."""
    layers = [{"type": kind, "units": units} for _ in range(depth)]
    layers[-1]["return"] = "last"
    return {
        "name": f"{kind}{depth}_t{steps}_{dtype}",
        "dtype": dtype,
        "layout": "row",
        "input": [steps, d],
        "layers": [*layers, {"units": CLASSES, "activation": "softmax"}],
        "loss": "cross_entropy",
    }


def _module(doc: dict, folder: Path):
    from symbp.check.gradcheck import import_path
    from symbp.frontend.spec import arch_from_mapping
    from symbp.pipeline import generate, write_files

    arch = arch_from_mapping(doc)
    write_files(generate(arch).files, folder)
    return import_path(folder / f"{arch.name}.py")


def _torch_step(kind: str, params: dict, dtype):
    """nn.LSTM/GRU/RNN + nn.Linear + cross-entropy with symbp's parameters, as a closure
    computing the loss and the gradients (keyed by symbp's names)."""
    import torch
    import torch.nn.functional as F

    hidden, d = params["Whh1"].shape[1], params["Wih1"].shape[1]
    cell = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
    rnn = cell(d, hidden, batch_first=True, dtype=dtype)
    head = torch.nn.Linear(hidden, CLASSES, dtype=dtype)
    tp = {
        "Wih1": rnn.weight_ih_l0,
        "Whh1": rnn.weight_hh_l0,
        "bih1": rnn.bias_ih_l0,
        "bhh1": rnn.bias_hh_l0,
        "W2": head.weight,
        "b2": head.bias,
    }
    assert set(tp) == set(params), sorted(params)
    with torch.no_grad():
        for k, p in tp.items():
            p.copy_(torch.from_numpy(np.asarray(params[k])))

    def step(X, Y):
        for p in tp.values():
            p.grad = None
        out, _ = rnn(X)
        loss = F.cross_entropy(head(out[:, -1]), Y)
        loss.backward()
        return loss, {k: p.grad for k, p in tp.items()}

    return step


def check(kind: str, folder: Path) -> bool:
    """float64 at a small size: symbp's loss and gradients against PyTorch autograd."""
    import torch

    module = _module(classifier(kind, "float64", 6, 5, 7), folder)
    rng = np.random.default_rng(0)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in module.init_params(0).items()}
    X, Y = rng.standard_normal((4, 6, 5)), rng.integers(0, CLASSES, 4)
    value, grads = module.loss_and_grads(params, X, Y)
    tvalue, tgrads = _torch_step(kind, params, torch.float64)(torch.tensor(X), torch.tensor(Y))
    scale = max(float(np.max(np.abs(g))) for g in grads.values())
    worst = max(float(np.max(np.abs(grads[k] - tgrads[k].numpy()))) for k in grads) / scale
    ok = abs(value - tvalue.item()) <= 1e-10 * abs(value) and worst < 1e-8
    print(
        f"{kind} float64 check: loss {value:.12f} vs {tvalue.item():.12f}, worst relative "
        f"gradient difference {worst:.1e}: {'ok' if ok else 'DISAGREE'}"
    )
    return ok


def generation_seconds(doc: dict, folder: Path, repeat: int) -> float:
    """Median wall seconds of `python -m symbp generate FILE -o DIR` in a fresh process."""
    path = folder / f"{doc['name']}.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-m", "symbp", "generate", str(path), "-o", out]
            start = time.perf_counter()
            done = subprocess.run(command, env=child_env(), capture_output=True, text=True)
            runs.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="few repeats, short blocks")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    rng = np.random.default_rng(1)
    X = rng.standard_normal((BATCH, T, D)).astype(np.float32)
    Y = rng.integers(0, CLASSES, BATCH)
    tX, tY = torch.tensor(X), torch.tensor(Y)
    rows = []
    for kind in KINDS:
        with tempfile.TemporaryDirectory() as tmp:
            if not check(kind, Path(tmp)):
                return 1
            module = _module(classifier(kind), Path(tmp))
        params, ws = module.init_params(0), module.make_workspace(BATCH)
        torch_step = _torch_step(kind, params, torch.float32)
        steps = {
            "symbp": lambda m=module, p=params, w=ws: m.loss_and_grads(p, X, Y, w),
            "pytorch": lambda s=torch_step: s(tX, tY),
        }
        t = blocks(steps, repeat, 0.2 if args.quick else 1.0, 0.05 if args.quick else 0.3)
        rows.append((kind, t["symbp"].median, t["pytorch"].median))
    print(
        f"\none training step (loss and gradients), batch {BATCH}, T {T}, d {D}, {UNITS} units, "
        f"return last, dense {CLASSES} softmax, cross-entropy, float32, row; median of {repeat}; "
        f"torch {torch.__version__} eager, {torch.get_num_threads()} threads"
    )
    print(f"  {'cell':6s} {'symbp ms':>10s} {'torch ms':>10s} {'ratio':>7s}")
    for kind, ours, theirs in rows:
        print(f"  {kind:6s} {ours * 1e3:10.2f} {theirs * 1e3:10.2f} {ours / theirs:6.2f}x")
    gen_repeat = 1 if args.quick else 3
    print(
        f"\n`python -m symbp generate` wall time, fresh process, median of {gen_repeat}: "
        f"3 stacked lstm {UNITS} (last returns last) + dense {CLASSES} softmax, float32"
    )
    print(f"  {'T':>6s} {'seconds':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        for steps in (T, 256):
            doc = classifier("lstm", steps=steps, depth=3)
            seconds = generation_seconds(doc, Path(tmp), gen_repeat)
            print(f"  {steps:6d} {seconds:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
