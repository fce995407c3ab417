"""The generated modules pass ruff's default checks (unused names, undefined names, ...)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import GENERATED


@pytest.mark.skipif(
    shutil.which("ruff") is None and sys.modules.get("ruff") is None, reason="ruff missing"
)
def test_generated_code_is_clean() -> None:
    files = sorted(str(p) for p in GENERATED.glob("*.py"))
    assert files
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--isolated",
            "--select",
            "E9,F",
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
