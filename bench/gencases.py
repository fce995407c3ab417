"""Wall time of `symbp generate` on the files of issue 13's generation-time table.

    python bench/gencases.py [--skip-10000]

Each case is a fresh `python -m symbp generate` process (start-up included), as a user
runs it; the refused case must exit 2. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

WEIRD = "log(1 + (atan(3) - (1 - x))**2)/(1 + (sigmoid(min(3, x)) - sigmoid(sin(pi)))**2)"
SIXTEEN = [
    "x*tanh(log(1 + exp(x)))", "x/(1 + abs(x))", "log(cosh(x))", "x*sigmoid(1.702*x)",
    "sin(x)", "atan(x)", "x**3/3 + x", "exp(-x**2)", "tanh(x)**2", "softplus(x) - log(2)",
    "max(x, 0.1*x)", "min(max(x, -1), 1)", "x*erf(x)", "sqrt(1 + x**2) - 1",
    "x/(1 + exp(-x))", "cos(x)*x",
]  # fmt: skip


def chain(depth: int, last: str = "sigmoid", loss: object = "mse") -> dict:
    layers = [{"units": 1, "activation": "sigmoid"} for _ in range(depth - 1)]
    return {"input": 1, "layers": [*layers, {"units": 1, "activation": last}], "loss": loss}


def cases(skip_big: bool) -> list[tuple[str, dict, int]]:
    """(label, document, expected exit status)."""
    one = {
        "input": 2,
        "layers": [{"units": 3, "activation": "weird"}, {"units": 1, "activation": "identity"}],
        "loss": "mse",
        "activations": {"weird": WEIRD},
    }
    sixteen = {
        "input": 4,
        "layers": [{"units": 4, "activation": f"a{i}"} for i in range(16)]
        + [{"units": 1, "activation": "identity"}],
        "loss": "mse",
        "activations": {f"a{i}": text for i, text in enumerate(SIXTEEN)},
    }
    out = [
        ("one custom activation (the issue's)", one, 0),
        ("16 layers, 16 custom activations", sixteen, 0),
        ("1000 sigmoid layers of width 1", chain(1000), 0),
        ("2000 layers, refused (a file in the way)", chain(2000), 2),
    ]
    if not skip_big:
        out.append(("10,000 layers (the allowed maximum)", chain(10_000), 0))
    return out


def run(doc: dict, expected: int) -> float:
    with tempfile.TemporaryDirectory(prefix="symbp-gencases-") as folder:
        path = Path(folder) / "case.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        out = Path(folder) / "out"
        if expected == 2:
            out.mkdir()
            (out / "case.py").write_text("# a file of the user's\n", encoding="utf-8")
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "symbp", "generate", str(path), "-o", str(out)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        elapsed = time.perf_counter() - start
    if done.returncode != expected:
        raise SystemExit(f"exit {done.returncode}, expected {expected}: {done.stderr[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-10000", action="store_true")
    args = parser.parse_args()
    print("| file | wall time |\n|---|---|")
    for label, doc, expected in cases(args.skip_10000):
        print(f"| {label} | {run(doc, expected):.1f} s |", flush=True)


if __name__ == "__main__":
    main()
