"""The NumPy contenders again, in a fresh process that never loads PyTorch or JAX.

glibc's allocator adapts its thresholds to what a process has allocated and freed, so
after the frameworks have run, NumPy's large temporaries may stop being returned to
the system (and faulted in again) on every call. A user of a generated module runs it
in a plain process; this measures that case. Run by bench/run.py:

    python -m bench.fresh MODULE.py ARCH.yaml BATCH REPEAT METHOD BLOCK SETTLE

with the parent's timing method (bench.timing.Method), and prints one JSON object: median
seconds per contender and symbp's page faults (without a workspace).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from bench import memory, textbook
from bench.floor import gemm_floor
from bench.nets import net_of, perturb_biases, random_batch
from bench.timing import Method

SEED = 0  # the same seeds as bench/run.py, so the data are the same


def measure(module_path: Path, arch_path: Path, batch: int, repeat: int, method: Method) -> dict:
    """Medians of floor, textbook and symbp (without and with a workspace), symbp's page faults."""
    from symbp.check.gradcheck import import_path

    module = import_path(module_path)
    net = net_of(yaml.safe_load(arch_path.read_text(encoding="utf-8")), batch)
    params = perturb_biases(module.init_params(SEED), SEED + 1)
    X, Y = random_batch(net, SEED + 2)
    weights = [params[f"W{i}"] for i in range(1, net.depth + 1)]
    workspace = module.make_workspace(batch)
    steps = {
        "floor": gemm_floor(net, weights, SEED + 3),
        "textbook": lambda: textbook.loss_and_grads(net, params, X, Y),
        "symbp": lambda: module.loss_and_grads(params, X, Y),
        "workspace": lambda: module.loss_and_grads(params, X, Y, workspace),
    }
    times = method.measure(steps, repeat)
    faults = memory.page_faults(lambda: module.loss_and_grads(params, X, Y), calls=5)
    return {"median": {k: t.median for k, t in times.items()}, "faults": faults}


def main(argv: list[str]) -> int:
    module_path, arch_path, batch, repeat, kind, block, settle = argv
    method = Method(kind, float(block), float(settle))
    result = measure(Path(module_path), Path(arch_path), int(batch), int(repeat), method)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    if "torch" in sys.modules or "jax" in sys.modules:
        raise SystemExit("bench.fresh must run without torch or jax loaded")
    sys.exit(main(sys.argv[1:]))
