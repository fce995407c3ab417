"""The benchmark harness runs end to end in its quick mode, so it cannot rot.

This checks that it works, never how fast anything is: timings live in bench/.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def _quick(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """bench/<script> run with args; it must exit 0 (its output shown otherwise)."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_quick_benchmark_runs() -> None:
    r = _quick("run.py", "--quick", "--configs", "C2,C4")
    assert "symbp generated" in r.stdout and "GEMM floor" in r.stdout
    assert "symbp + make_workspace" in r.stdout
    assert "Correctness guard passed" in r.stdout


def test_quick_graph_benchmark_runs() -> None:
    """bench/graphs.py (residual and batch-norm MLPs) in its quick mode; PyTorch and JAX are
    compared when installed, and the correctness guard runs first."""
    r = _quick("graphs.py", "--quick")
    assert "| R1 |" in r.stdout and "| R2 |" in r.stdout
    assert "Generation time" in r.stdout


def test_quick_activation_sweep_runs() -> None:
    """bench/activations.py (every built-in hidden activation and a custom mish) in its quick
    mode: symbp is checked against PyTorch (float64) and JAX when installed, else timed alone."""
    r = _quick("activations.py", "--quick")
    assert "| relu |" in r.stdout and "| gelu |" in r.stdout and "| mish |" in r.stdout
    assert "float64 vs PyTorch" in r.stdout or "nothing checked" in r.stdout


def test_quick_cnn_benchmark_runs() -> None:
    """bench/cnn.py (the small CNN) in its quick mode: checked against PyTorch in float64
    when it is installed, then timed with the im2col floor."""
    r = _quick("cnn.py", "--quick", "--configs", "K1")
    assert "symbp / floor" in r.stdout
    assert "float64 check against PyTorch" in r.stdout or "pytorch" not in r.stdout


def test_quick_gpt_benchmark_runs() -> None:
    """bench/gpt.py (a GPT block) in its quick mode: checked against PyTorch autograd in
    float64 at a small size, then timed."""
    r = _quick("gpt.py", "--quick")
    assert "float64 check" in r.stdout and ": ok" in r.stdout and "x pytorch" in r.stdout


def test_quick_recurrent_benchmark_runs() -> None:
    """bench/recurrent.py (lstm, gru, rnn classifiers) in its quick mode: each cell checked
    against PyTorch autograd in float64 at a small size, then timed; one generation per T."""
    r = _quick("recurrent.py", "--quick")
    assert r.stdout.count(": ok") == 3 and "ratio" in r.stdout and "seconds" in r.stdout
