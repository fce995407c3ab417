"""The Markdown derivation as GitHub renders it: display math in ```math fences, and inline
$...$ with nothing Markdown's backslash escapes would eat (GitHub applies them inside $...$:
\\{ becomes {, a mid-line \\\\ collapses, \\text{for}\\: becomes "for:")."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from symbp.frontend.spec import arch_from_mapping
from symbp.pipeline import generate
from tests.conftest import EXAMPLES
from tests.test_document import DOCUMENT_CASES

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
# CommonMark: a backslash before any ASCII punctuation character is an escape.
ESCAPE = re.compile("\\\\[" + re.escape(string.punctuation) + "]")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def problems(md: str) -> list[str]:
    """What GitHub would render wrongly: $$, escapes in inline math, unpaired $."""
    found = ["$$"] if "$$" in md else []
    for lang, content in FENCE.findall(md):
        if lang == "math" and "$" in content:
            found.append(f"$ in a math fence: {content[:80]}")
    prose = FENCE.sub("", md)
    for paragraph in prose.split("\n\n"):
        text = re.sub(r"`[^`\n]*`", "", paragraph)  # code spans are not math
        if text.count("$") % 2:
            found.append(f"unpaired $: {text[:80]}")
        for math in re.findall(r"\$([^$]+)\$", text):
            found += [f"{e} in ${math[:80]}$" for e in ESCAPE.findall(math)]
    return found


def test_the_scan_finds_what_github_would_eat() -> None:
    assert problems(r"$\mathcal{R}\{z\}$") == [
        r"\{ in $\mathcal{R}\{z\}$",
        r"\} in $\mathcal{R}\{z\}$",
    ]
    assert problems("$$x$$")[0] == "$$"
    assert problems(r"a $\text{for}\: x$ b") and problems(r"$a \\ b$") and problems(r"$c\, d$")
    assert problems("$x$ and `$` and\n\n```math\n\\{ x \\\\ y \\}\n```\n") == []
    assert problems(r"$\lbrace x \rbrace \thinspace \cr$") == []


def _markdown(case: str) -> str:
    if case in DOCUMENT_CASES:
        result = generate(arch_from_mapping({"name": f"doc_{case}", **DOCUMENT_CASES[case]}))
    else:
        result = generate(EXAMPLES / case)
    return result.files[f"{result.arch.name}.md"]


@pytest.mark.parametrize(
    "case", [p.name for p in EXAMPLE_FILES] + list(DOCUMENT_CASES), ids=lambda c: Path(c).stem
)
def test_markdown_is_safe_for_github(case: str) -> None:
    md = _markdown(case)
    assert not problems(md), problems(md)[:5]
    # Every display is numbered but the summary's box, which cites the numbered ones.
    summary = [c for _, c in FENCE.findall(md) if r"\boxed" in c and r"\tag" not in c]
    assert 1 <= len(summary) <= 2 and r"\text{BP1}" in summary[0]
    fences = [lang for lang, content in FENCE.findall(md) if content not in summary]
    displays = re.findall(r"\\tag\{(\d+)\}", md)
    assert fences.count("math") == len(displays) > 0
    assert [int(n) for n in displays] == list(range(1, len(displays) + 1))
