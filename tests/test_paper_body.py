"""The body that goes into a paper (--body): the packages it needs listed at its top, numbered
equations with labels namespaced by the network, nothing a two-column class refuses, and
two networks' bodies in one paper; the standalone PDF with scalable fonts only."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from symbp.documents.document import PACKAGES
from symbp.pipeline import generate
from tests.conftest import EXAMPLES, ROOT
from tests.test_cli import run
from tests.test_document import compile_tex

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
# Two networks for one paper: a dense one and an image one (the widest tables and graph).
PAIR = ("seed.yaml", "lenet.yaml")
needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None, reason="pdflatex missing: .ci/run installs it"
)


@functools.cache
def _body(example: str, level: str = "section") -> tuple[str, str]:
    """(network name, body text) of an example."""
    result = generate(EXAMPLES / example, body_only=True, section_level=level)
    name = result.arch.name
    return name, result.files[f"{name}_body.tex"]


def _packages(body: str) -> list[str]:
    """The preamble lines the body's top comments name, as an author copies them."""
    return [ln[2:] for ln in body.splitlines() if re.match(r"% \\use(package|tikzlibrary)\{", ln)]


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_body_has_no_fixed_numbers_scaled_math_or_longtable(example: Path) -> None:
    _, body = _body(example.name)
    for banned in (r"\tag", "longtable", "resizebox", "scalebox", r"\text{\\", "equation*"):
        assert banned not in body, banned
    # Widths are fractions of the column's line, never absolute lengths.
    units = re.findall(r"\\setlength\{\\unitlength\}\{([^}]*)\}", body)
    assert units and all(re.fullmatch(r" ?[\d.]+\\linewidth", u) for u in units), units
    assert not re.search(r"\{[\d.]+ ?(mm|cm|in)\}", body)
    assert r"\begin{tabularx}{\linewidth}" in body
    assert body.count(r"\begin{equation}") == body.count(r"\label{eq:") > 0


def test_body_lists_the_packages_it_needs_and_the_readme_too() -> None:
    _, body = _body("seed.yaml")
    head = body.split(r"\section")[0]
    assert _packages(head) == [rf"\usepackage{{{p}}}" for p in PACKAGES]
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### A body for a paper") :]
    block = section[section.index("```latex\n") + 9 :]
    assert block[: block.index("```")].split() == _packages(head)
    # Standalone: the same packages, and Latin Modern in T1.
    tex = generate(EXAMPLES / "seed.yaml").files["seed_net.tex"]
    for p in PACKAGES:
        assert rf"\usepackage{{{p}}}" in tex
    assert r"\usepackage[T1]{fontenc}" in tex and r"\usepackage{lmodern}" in tex


def test_labels_are_namespaced_by_the_network() -> None:
    name, body = _body("seed.yaml")
    labels = re.findall(r"\\label\{([^}]*)\}", body)
    assert labels and all(label.startswith(("eq:seed-net:", "sec:seed-net:")) for label in labels)
    assert "eq:seed-net:output-delta" in labels and "eq:seed-net:loss" in labels
    assert len(set(labels)) == len(labels)


def test_section_level_makes_the_network_one_section() -> None:
    _, default = _body("seed.yaml")
    _, sub = _body("seed.yaml", "subsection")
    assert default.count(r"\section{") >= 5 and r"\section{The network}" in default
    assert r"\section{" not in sub and r"\subsection{The network}" in sub
    assert r"\subsubsection{\texttt{dense}}" in sub and r"\subsection{\texttt{dense}}" not in sub
    # The standalone document keeps its sections.
    tex = generate(EXAMPLES / "seed.yaml", body_only=True, section_level="subsection").files
    assert r"\section{The network}" in tex["seed_net.tex"]


def test_section_level_on_the_command_line(tmp_path: Path) -> None:
    seed = str(EXAMPLES / "seed.yaml")
    help_text = run("generate", "--help").stdout
    assert "--section-level" in help_text and "subsection" in help_text
    alone = run("generate", seed, "-o", str(tmp_path), "--section-level", "subsection")
    assert alone.returncode == 2 and "--body" in alone.stderr
    bad = run("generate", seed, "-o", str(tmp_path), "--body", "--section-level", "chapter")
    assert bad.returncode == 2
    ok = run("generate", seed, "-o", str(tmp_path), "--body", "--section-level", "subsection")
    assert ok.returncode == 0, ok.stderr
    body = (tmp_path / "seed_net_body.tex").read_text()
    assert r"\subsection{The network}" in body and r"\section{" not in body


def _paper(folder: Path, columns: str) -> str:
    """An article that \\inputs two networks' bodies as two appendix sections, with its
    own eq:loss label; compiled twice, its log."""
    preamble: dict[str, None] = {}
    sections = []
    for example in PAIR:
        name, body = _body(example, "subsection")
        (folder / f"{name}_body.tex").write_text(body)
        preamble.update(dict.fromkeys(_packages(body)))
        sections.append(f"\\section{{Network {name.replace('_', '-')}}}\n\\input{{{name}_body}}")
    paper = folder / "paper.tex"
    paper.write_text(
        f"\\documentclass[{columns}]{{article}}\n" + "\n".join(preamble) + "\n"
        "\\numberwithin{equation}{section}\n\\begin{document}\n"
        "We train two networks, with the loss~\\eqref{eq:loss}; their error terms are\n"
        "\\eqref{eq:seed-net:output-delta} and \\eqref{eq:lenet:conv2d-box}.\n"
        "\\begin{equation}\\label{eq:loss} L = \\frac{1}{n} \\sum_s \\ell_s \\end{equation}\n"
        "\\appendix\n" + "\n".join(sections) + "\n\\end{document}\n"
    )
    return compile_tex(paper)


@needs_pdflatex
@pytest.mark.parametrize("columns", ["onecolumn", "twocolumn"])
def test_two_bodies_compile_in_one_paper(columns: str, tmp_path: Path) -> None:
    log = _paper(tmp_path, columns)
    assert "multiply defined" not in log and "multiply-defined" not in log
    assert not re.search(r"undefined|Rerun", log), "a reference did not resolve"
    # Tables fit the column (a long formula, displayed or inline, may not): an overfull
    # table cell is logged as an alignment or as a paragraph starting `[]|`.
    boxes = re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\) in (\w+) at lines.*\n(.*)", log)
    cells = [b for b in boxes if b[1] == "alignment" or b[2].startswith("[]|")]
    assert not cells, cells
    aux = (tmp_path / "paper.aux").read_text()
    numbers = dict(re.findall(r"\\newlabel\{([^}]*)\}\{\{([^}]*)\}", aux))
    # The paper's own counter, per appendix: A.1, ..., B.1, ...
    assert numbers["eq:loss"] == "0.1"
    assert numbers["eq:seed-net:forward-a"] == "A.1"
    assert numbers["eq:lenet:forward-a"] == "B.1"
    assert re.search(r"\\newlabel\{eq:lenet:conv2d-box\}\{\{B\.\d+\}", aux)


@needs_pdflatex
@pytest.mark.skipif(shutil.which("pdffonts") is None, reason="pdffonts (poppler-utils) missing")
def test_standalone_pdf_has_no_bitmap_fonts(tmp_path: Path) -> None:
    tex = tmp_path / "seed_net.tex"
    tex.write_text(generate(EXAMPLES / "seed.yaml").files["seed_net.tex"])
    compile_tex(tex)
    fonts = subprocess.run(
        ["pdffonts", str(tex.with_suffix(".pdf"))], capture_output=True, text=True, check=True
    ).stdout.splitlines()[2:]
    assert fonts and not [f for f in fonts if "Type 3" in f], fonts
    assert any("LMRoman" in f for f in fonts), fonts
