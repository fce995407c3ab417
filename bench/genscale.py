"""Generation time against depth: symbp.pipeline.generate in-process, and the CLI end to end."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.nets import ROOT

WIDTH = 16


@dataclass(frozen=True)
class GenTiming:
    """Median in-process generation time of one depth, split by stage."""

    depth: int
    total: float  # seconds, derive + render
    derive: float
    render: float


def deep_tanh_doc(depth: int, width: int = WIDTH) -> dict:
    """`depth` tanh layers of `width` units on a `width`-wide input, squared error."""
    return {
        "name": f"tanh_{depth}x{width}",
        "layout": "row",
        "dtype": "float32",
        "input": width,
        "layers": [{"units": width, "activation": "tanh"} for _ in range(depth)],
        "loss": "mse",
        "reduction": "mean",
    }


def write_doc(doc: dict, folder: Path) -> Path:
    """The mapping as an architecture file in folder."""
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def time_generate(path: Path, repeat: int) -> GenTiming:
    """Median of `repeat` in-process generate(arch) calls (the file is loaded beforehand)."""
    from symbp.frontend.spec import load_arch
    from symbp.pipeline import generate

    arch = load_arch(path)
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = generate(arch)
        runs.append((time.perf_counter() - start, result.timings))
    runs.sort(key=lambda run: run[0])
    total, stages = runs[len(runs) // 2]
    depth = len(arch.layer_sizes) - 1
    return GenTiming(depth, total, stages.get("derive", 0.0), stages.get("render", 0.0))


def child_env() -> dict[str, str]:
    """This environment with the repository first on PYTHONPATH (for child processes)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class CliError(RuntimeError):
    """The command failed: its exit status and the end of what it printed."""


def _run(command: list[str]) -> float:
    """Wall seconds of one command; CliError if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CliError(f"`{' '.join(command)}` exited {done.returncode}: {' / '.join(tail)}")
    return elapsed


def time_cli(path: Path, repeat: int) -> float:
    """Median wall seconds of `python -m symbp generate` in a fresh process, startup included."""
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="symbp-bench-cli-") as out:
            runs.append(_run([sys.executable, "-m", "symbp", "generate", str(path), "-o", out]))
    return statistics.median(runs)


def time_import(repeat: int) -> float:
    """Median wall seconds of a fresh `python -c "import symbp.pipeline"` (startup alone)."""
    command = [sys.executable, "-c", "import symbp.pipeline"]
    return statistics.median(_run(command) for _ in range(repeat))


def scaling(depths: list[int], repeat: int, folder: Path) -> list[GenTiming]:
    """In-process timings for every depth (one run only for the deepest ones)."""
    timings = []
    for depth in depths:
        path = write_doc(deep_tanh_doc(depth), folder)
        timings.append(time_generate(path, repeat if depth <= 200 else 1))
    return timings
