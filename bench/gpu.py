#!/usr/bin/env python
"""The array-API module on GPUs: checked against the NumPy module, then timed against the
library's own autodiff on the same device. Skipped (exit 0, saying why) without a GPU.

    python bench/gpu.py [--repeat 7] [--on-cpu]

For each GPU library present (PyTorch with CUDA, JAX with a GPU backend, CuPy):
1. C1 (examples/c1_mnist_sigmoid.yaml) in float64 on the device: the loss and every
   gradient of <name>_xp.py against the NumPy module's on the CPU (1e-10 of each array's
   largest entry; exit 1 otherwise), and the arrays that come back are on the device;
2. one training step in float32, batch 256, as bench/xp.py times it on the CPU: symbp's
   step against PyTorch eager autograd + torch.optim.SGD on CUDA tensors, against
   jax.jit(value_and_grad) + SGD on a JAX GPU; CuPy has no autodiff, so symbp's step is
   reported alone there. Every PyTorch and CuPy call ends with the device synchronised,
   every JAX call with block_until_ready.

--on-cpu runs the same code with the CPU standing in for the device (to try the script
where no GPU is). The development machine has no GPU: these paths have not run on one,
which is why the README calls them experimental. Report this script's output to lift that.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bench.timing import blocks  # noqa: E402
from bench.xp import BATCH, LR, checked, jax_steps, problem, report, torch_steps  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def devices(on_cpu: bool) -> dict[str, Any]:
    """Library -> its GPU device (the CPU with on_cpu), for every library that has one."""
    found: dict[str, Any] = {}
    try:
        import torch

        if on_cpu or torch.cuda.is_available():
            found["PyTorch"] = "cpu" if on_cpu else "cuda"
    except ImportError:
        pass
    try:
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if on_cpu or gpus:
            found["JAX"] = jax.devices("cpu")[0] if on_cpu else gpus[0]
    except (ImportError, RuntimeError):
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            found["CuPy"] = cupy.cuda.Device(0)
    except Exception:  # noqa: BLE001 (no CuPy, or no CUDA driver: CuPy raises its own)
        pass
    return found


def modules(dtype: str, folder: Path) -> tuple[Any, Any]:
    """C1's NumPy and array-API modules in `dtype`."""
    import yaml

    from symbp.check.gradcheck import import_path
    from symbp.frontend.spec import arch_from_mapping
    from symbp.pipeline import generate, write_files

    doc = yaml.safe_load((ROOT / "examples" / "c1_mnist_sigmoid.yaml").read_text("utf-8"))
    doc.update(dtype=dtype, name=f"c1_{dtype}")
    arch = arch_from_mapping(doc)
    write_files(generate(arch, targets=("numpy", "array-api")).files, folder)
    return import_path(folder / f"{arch.name}.py"), import_path(folder / f"{arch.name}_xp.py")


def host(a: Any) -> np.ndarray:
    """A device array as a NumPy array on the host."""
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    if hasattr(a, "get"):  # CuPy
        return a.get()
    return np.asarray(a)


def check_float64(name: str, device: Any, m: Any, x: Any) -> None:
    """The loss and gradients on the device against the NumPy module's, and where they are."""
    params, X, Y = problem(m)
    X, Y = X[:32].astype(np.float64), Y[:32].astype(np.float64)
    want_value, want = m.loss_and_grads(params, X, Y)
    if name == "JAX":
        import jax

        jax.config.update("jax_enable_x64", True)
        on = {k: jax.device_put(v, device) for k, v in params.items()}
        Xd, Yd = jax.device_put(X, device), jax.device_put(Y, device)
    else:
        xp = {"PyTorch": "torch", "CuPy": "cupy"}[name]
        lib = __import__(xp)
        if name == "CuPy":
            with device:
                on = {k: lib.asarray(v) for k, v in params.items()}
                Xd, Yd = lib.asarray(X), lib.asarray(Y)
        else:
            on = {k: lib.tensor(v, device=device) for k, v in params.items()}
            Xd, Yd = lib.tensor(X, device=device), lib.tensor(Y, device=device)
    value, grads = x.loss_and_grads(on, Xd, Yd)
    for key, g in grads.items():
        where = getattr(g, "device", None)
        if name != "JAX" and str(where) != str(on[key].device):
            raise SystemExit(f"{name}: gradient {key} came back on {where}, not {device}")
        error = np.abs(host(g) - want[key]).max() / np.abs(want[key]).max()
        if error > 1e-10:
            raise SystemExit(f"{name}: gradient {key} is {error:.1e} off the NumPy module's")
    agree = abs(float(host(value)) - want_value) <= 1e-10 * abs(want_value)
    print(f"{name} on {device}: float64 loss and gradients agree with the NumPy module: {agree}")
    if not agree:
        raise SystemExit(1)


def cupy_steps(x: Any, params: dict, X: Any, Y: Any, device: Any) -> dict[str, Callable]:
    """symbp's step on CuPy arrays (CuPy has no autodiff to compare with)."""
    import cupy

    with device:
        on = {k: cupy.asarray(v) for k, v in params.items()}
        Xd, Yd = cupy.asarray(X), cupy.asarray(Y)

    def step() -> None:
        _, g = x.loss_and_grads(on, Xd, Yd)
        {k: on[k] - LR * g[k] for k in on}
        cupy.cuda.Stream.null.synchronize()

    return {"CuPy: symbp step": step}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--on-cpu", action="store_true", help="the CPU stands in for a GPU")
    args = parser.parse_args(argv)
    found = devices(args.on_cpu)
    if not found:
        print("no GPU here (PyTorch CUDA, JAX gpu, CuPy): nothing to run; the GPU paths stay")
        print("experimental until this script runs where one is")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        m64, x64 = modules("float64", Path(tmp))
        for name, device in found.items():
            check_float64(name, device, m64, x64)
        m, x = modules("float32", Path(tmp))
        params, X, Y = problem(m)
        _, want = m.loss_and_grads(params, X, Y)
        steps: dict[str, Callable] = {}
        for name, device in found.items():
            if name == "JAX":
                steps.update(checked(name, jax_steps(x, params, X, Y, device), want))
            elif name == "PyTorch":
                steps.update(checked(name, torch_steps(x, params, X, Y, device), want))
            else:
                steps.update(cupy_steps(x, params, X, Y, device))
        timings = blocks(steps, args.repeat, 0.5, 0.2)
    where = ", ".join(map(str, found.values()))
    print(f"\nC1 one training step, float32, batch {BATCH}, on {where}")
    baseline = {
        "JAX": "JAX: jit(value_and_grad) + SGD",
        "PyTorch": "PyTorch: eager autograd + optim.SGD",
        "CuPy": "CuPy: symbp step",
    }
    report(timings, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
