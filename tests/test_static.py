"""The project's own code passes its linters: ruff (style, errors) and mypy (types)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed")
def test_package_type_checks() -> None:
    r = _run("mypy", "--no-incremental", "--cache-dir", "/dev/null", "symbp")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff not installed")
def test_sources_pass_ruff() -> None:
    r = _run("ruff", "check", "--no-cache", "symbp", "tests", "bench")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
