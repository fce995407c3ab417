"""Shared helpers: build architectures, generate modules into tmp folders and import them."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GENERATED = ROOT / "generated"
# examples whose array-API module (<name>_xp.py) is committed beside the NumPy one
XP_GOLDEN = ("c1_mnist_sigmoid", "digits", "lstm_seq")


def example_targets(example: Path) -> tuple[str, ...]:
    """The modules committed under generated/ for an example file."""
    return ("numpy", "array-api") if example.stem in XP_GOLDEN else ("numpy",)


def make_arch(**overrides: Any):
    """An Arch from a plain mapping, validated like a file."""
    from symbp.frontend.spec import arch_from_mapping

    doc: dict[str, Any] = {
        "name": "net",
        "input": 3,
        "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "sigmoid"}],
        "loss": "mse",
    }
    doc.update(overrides)
    return arch_from_mapping(doc)


def build_module(arch: Any, folder: Path) -> ModuleType:
    """Generate arch into folder and import the module."""
    from symbp.check.gradcheck import import_path
    from symbp.pipeline import generate, write_files

    result = generate(arch)
    write_files(result.files, folder)
    return import_path(folder / f"{arch.name}.py")


@pytest.fixture
def module_for(tmp_path: Path):
    """Factory fixture: module_for(arch) -> the imported generated module."""
    counter = {"n": 0}

    def build(arch: Any) -> ModuleType:
        counter["n"] += 1
        folder = tmp_path / f"m{counter['n']}"
        return build_module(arch, folder)

    return build


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite generated/ from examples/ instead of comparing",
    )


class Hung(Exception):
    """A call still running after hang_guard's time."""


def hang_guard(call: Callable[[], Any], limit: int = 60) -> Any:
    """call(), failing the test if it has not returned (or raised) after `limit` seconds: a
    guard against a hang (reading a hostile file exponentially, a loop that does not end),
    not a speed claim. Tests assert nothing about how fast the machine is; what the guarded
    calls take here is a second or two."""

    def hung(signum: int, frame: Any) -> None:
        raise Hung(f"still running after {limit} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(limit)
    try:
        return call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
