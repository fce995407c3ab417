"""Generation time of issue 19's four cases: median of fresh `python -m symbp generate`
processes (start-up included, no cache warm), with each stage's time from `--timings`.

    python bench/gentime.py [--repeat 5] [--cases dense100,hairy,sixteen,sigmoid1000]

Prints a Markdown table: the median and the range of the wall times, and the median of each
stage's time as symbp reports it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

HAIRY = "log(1 + (atan(3) - (1 - x))**2)/(1 + (sigmoid(min(3, x)) - sigmoid(sin(pi)))**2)"
SIXTEEN = [
    "x*tanh(softplus(x))", "erf(x)*exp(-x**2) + x", "log(cosh(x)) + x", "atan(x) + x**3",
    "x/(1 + abs(x)) + sinh(x)", "sigmoid(x)*tanh(x) + x", "softplus(x)*sigmoid(x)",
    "cosh(x)*atan(x)", "log(1 + x**2)*x + x", "sqrt(1 + x**2)*tanh(x)", "sin(x)*cos(x) + x",
    "exp(-abs(x))*x + x", "max(x, 0)*tanh(x) + min(x, 0)", "x*sigmoid(x)*tanh(x)",
    "x*erf(x) + sin(x)", "tanh(softplus(x))",
]  # fmt: skip


def documents() -> dict[str, dict]:
    """The issue's cases, by name."""
    return {
        "dense100": {
            "input": 16,
            "layers": [{"units": 16, "activation": "tanh"} for _ in range(100)],
            "loss": "mse",
        },
        "hairy": {
            "input": 2,
            "layers": [{"units": 3, "activation": "hairy"}, {"units": 1}],
            "loss": "mse",
            "activations": {"hairy": HAIRY},
        },
        "sixteen": {
            "input": 4,
            "layers": [{"units": 4, "activation": f"a{i}"} for i in range(16)] + [{"units": 1}],
            "loss": "mse",
            "activations": {f"a{i}": text for i, text in enumerate(SIXTEEN)},
        },
        "sigmoid1000": {
            "input": 1,
            "layers": [{"units": 1, "activation": "sigmoid"} for _ in range(1000)],
            "loss": "mse",
        },
    }


def run_once(path: Path, out: Path) -> tuple[float, dict[str, float]]:
    """Wall time of one fresh generation and the stage times it reports."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "symbp", "generate", str(path), "-o", str(out), "--force",
         "--timings"],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{path.name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return wall, _stages(done.stderr + done.stdout)


def _stages(text: str) -> dict[str, float]:
    """The `--timings` lines ("name:   derive   1138.7 ms") as a dict of seconds."""
    stages = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "ms":
            try:
                stages[parts[-3]] = float(parts[-2]) / 1000
            except ValueError:
                continue
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cases", default=",".join(documents()))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    docs = documents()
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.cases.split(","):
            path = Path(folder) / f"{name}.yaml"
            path.write_text(yaml.safe_dump({"name": name, **docs[name]}))
            walls, stages = [], []
            for _ in range(args.repeat):
                wall, stage = run_once(path, Path(folder) / "out")
                walls.append(wall)
                stages.append(stage)
            keys = sorted({k for s in stages for k in s})
            rows[name] = {
                "median": statistics.median(walls),
                "min": min(walls),
                "max": max(walls),
                "stages": {k: statistics.median(s.get(k, 0.0) for s in stages) for k in keys},
            }
            print(f"{name}: {rows[name]['median']:.2f} s", file=sys.stderr)
    print("| case | median (s) | range (s) | stages (median, s) |\n|---|--:|--:|---|")
    for name, row in rows.items():
        stages = ", ".join(f"{k} {v:.2f}" for k, v in row["stages"].items())
        print(f"| {name} | {row['median']:.2f} | {row['min']:.2f}-{row['max']:.2f} | {stages} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
