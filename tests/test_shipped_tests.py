"""`symbp generate --with-tests` writes a pytest file that proves the module and can fail."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from symbp.pipeline import generate, write_files
from tests.conftest import make_arch


def _run_pytest(folder: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "layout": "row",
            "loss": "cross_entropy",
            "layers": [{"units": 5, "activation": "relu"}, {"units": 3, "activation": "softmax"}],
        },
        {
            "dtype": "float32",
            "loss": "bce",
            "l2": 0.01,
            "layers": [{"units": 4, "activation": "swish"}, {"units": 2, "activation": "sigmoid"}],
        },
    ],
)
def test_shipped_tests_pass(tmp_path: Path, overrides: dict) -> None:
    arch = make_arch(**overrides)
    write_files(generate(arch, with_tests=True).files, tmp_path)
    source = (tmp_path / "test_net.py").read_text()
    assert re.findall(r"^import (\w+)", source, re.M) == ["numpy", "pytest", "net"]
    run = _run_pytest(tmp_path)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "passed" in run.stdout


def test_shipped_tests_catch_a_wrong_gradient(tmp_path: Path) -> None:
    write_files(generate(make_arch(), with_tests=True).files, tmp_path)
    module = tmp_path / "net.py"
    text = module.read_text()
    line = re.search(r"( +)dW1 = (.*)\n", text)
    assert line
    module.write_text(
        text.replace(line.group(0), f"{line.group(1)}dW1 = 1.001 * ({line.group(2)})\n")
    )
    run = _run_pytest(tmp_path)
    assert run.returncode == 1, run.stdout[-2000:]
    assert "test_gradients_match_central_differences" in run.stdout
