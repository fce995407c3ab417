"""The README's excerpts of generated files are quoted from the committed outputs."""

from __future__ import annotations

import re

from tests.conftest import GENERATED, ROOT


def _block_after(text: str, marker: str, fence: str) -> list[str]:
    start = text.index(marker)
    body = text[text.index(f"```{fence}\n", start) + len(fence) + 4 :]
    return [ln for ln in body[: body.index("```")].splitlines() if ln.strip()]


def test_readme_excerpts_match_generated_files() -> None:
    readme = (ROOT / "README.md").read_text()
    code = (GENERATED / "seed_net.py").read_text()
    tex = (GENERATED / "seed_net.tex").read_text()
    for line in _block_after(readme, "An excerpt of `generated/seed_net.py`", "python"):
        assert line in code, line
    for line in _block_after(readme, "and of the derivation in", "latex"):
        assert line in tex, line


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install . && symbp generate examples/seed.yaml" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = re.search(r"^python3 -m pytest -q$", ci, re.M)
    assert test_command and "python3 -m pytest -q" in readme
