"""Committed outputs under generated/ must be exactly what the current code generates.

Rewrite them with:  python -m pytest tests/test_golden.py --update-golden
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from symbp.pipeline import generate, write_files
from tests.conftest import EXAMPLES, GENERATED, example_targets

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_generated_matches_committed(example: Path, request: pytest.FixtureRequest) -> None:
    result = generate(example, targets=example_targets(example))
    if request.config.getoption("--update-golden"):
        write_files(result.files, GENERATED, force=True)
    problems = []
    for name, text in result.files.items():
        committed = GENERATED / name
        if not committed.exists():
            problems.append(f"{committed} is missing (run with --update-golden)")
            continue
        old = committed.read_text(encoding="utf-8")
        if old != text:
            diff = difflib.unified_diff(
                old.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"committed {name}",
                tofile=f"regenerated {name}",
            )
            problems.append("".join(list(diff)[:80]))
    assert not problems, "\n".join(problems)


def test_every_example_has_committed_outputs() -> None:
    assert EXAMPLE_FILES, "no examples"
    for example in EXAMPLE_FILES:
        names = set(generate(example, targets=example_targets(example)).files)
        assert all((GENERATED / n).exists() for n in names), example


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = generate(EXAMPLES / "seed.yaml").files
    second = generate(EXAMPLES / "seed.yaml").files
    assert first == second
    write_files(first, tmp_path)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == first
