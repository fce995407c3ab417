#!/usr/bin/env python
"""Control for bench/run.py's method: one contender alone in its own process.

    python bench/alone.py CONFIG CONTENDER [--repeat N] [--block S]

CONTENDER is torch, jax, floor or symbp (with a workspace). The config's module is
generated and its parameters and data made exactly as bench/run.py makes them; then only
that contender runs, in blocks of back-to-back calls (--block seconds, default 0.5) with
no pause, so no other contender's thread pool can be spinning: what it measures is free
of the effect bench.timing.blocks avoids by construction. Prints one line: the median
milliseconds per call over --repeat blocks (default 15), their range, and the CPUs other
processes used meanwhile.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from bench import interference, report  # noqa: E402
from bench.floor import gemm_floor  # noqa: E402
from bench.frameworks import jax_contender, torch_contender  # noqa: E402
from bench.nets import CONFIGS  # noqa: E402
from bench.run import SEED, Settings, prepare  # noqa: E402
from bench.timing import Method, Step, calibrate, per_call  # noqa: E402

CONTENDERS = ("torch", "jax", "floor", "symbp")


def step_of(name: str, settings: Settings, config_key: str, folder: Path) -> Step:
    case = prepare(CONFIGS[config_key], settings, folder)
    net, params, X, Y = case.net, case.params, case.X, case.Y
    if name == "floor":
        return gemm_floor(net, [params[f"W{i}"] for i in range(1, net.depth + 1)], SEED + 3)
    if name == "symbp":
        workspace = case.module.make_workspace(net.batch)
        return lambda: case.module.loss_and_grads(params, X, Y, workspace)
    build = torch_contender if name == "torch" else jax_contender
    fw = build(net, params, X, Y)
    if fw is None:
        raise SystemExit(f"{name} is not installed")
    return fw.step


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("config", choices=list(CONFIGS))
    parser.add_argument("contender", choices=CONTENDERS)
    parser.add_argument("--repeat", type=int, default=15, help="blocks (median taken)")
    parser.add_argument("--block", type=float, default=0.5, help="seconds per block")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    settings = Settings(False, args.repeat, Method("blocks", args.block, 0.0), "row", False)
    meanwhile = interference.watch()
    with tempfile.TemporaryDirectory(prefix="symbp-alone-") as tmp:
        step = step_of(args.contender, settings, args.config, Path(tmp))
        calls = max(2, calibrate(step, args.block, warmup=5))
        samples = [per_call(step, calls) for _ in range(args.repeat)]
    samples.sort()
    median = samples[len(samples) // 2]
    print(
        f"{args.config} {args.contender} alone: median {report.ms(median)} ms per call over "
        f"{args.repeat} blocks of {calls} calls (range {report.ms(samples[0])}-"
        f"{report.ms(samples[-1])} ms); {interference.line(meanwhile)[2:]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
