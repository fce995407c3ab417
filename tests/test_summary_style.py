"""The summary box near the start of every document (BP1-BP4 of the network, a notation table,
the shapes), the paper style (--style paper: the mathematics without the narration about SymPy,
storage, overflow and cost) and the notation options (--bold, --transpose)."""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import pytest

from symbp.derivation.network import derive_network
from symbp.derivation.numbering import network_numbering
from symbp.documents.latex import Notation
from symbp.errors import OutputError
from symbp.ir.labels import tex_label
from symbp.pipeline import Generated, generate
from tests.conftest import EXAMPLES, ROOT
from tests.test_cli import run
from tests.test_document import BAD_LOG, compile_tex
from tests.test_paper_body import _packages

needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None, reason="pdflatex missing: .ci/run installs it"
)
# The seed's fused output error (softmax and cross-entropy), as its layer block prints it.
SEED_BP1 = r"\text{BP1}\quad & \delta^{(2)} = \kappa \left(a^{(2)} - y\right)"
# Examples whose boxes are the widest: residual and image kinds, batch norms, long f'.
WIDE = ("res_cnn.yaml", "bn_mlp.yaml", "smooth_mlp.yaml")


@functools.cache
def _generate(example: str, style: str = "full", bold: bool = False, t: str = "T") -> Generated:
    notation = Notation(bold=bold, transpose=t)
    return generate(EXAMPLES / example, body_only=True, style=style, notation=notation)


def _box(text: str) -> str:
    """The summary's boxes (the recursion's, the gradients')."""
    start = text.index(r"\boxed{\begin{aligned}")
    return text[start : text.index("Forward pass and error terms", start)]


def test_summary_box_holds_the_output_error_of_the_network() -> None:
    files = _generate("seed.yaml").files
    for name in ("seed_net.tex", "seed_net_body.tex", "seed_net.md"):
        text = files[name]
        box = _box(text).replace(r"\textstyle ", "")  # the LaTeX rows are in text style
        assert SEED_BP1 in box, name
        assert all(f"BP{k}" in box for k in range(1, 5)), name
        # near the start: before the equations it summarises
        assert text.index(r"\boxed{") < text.index("Forward pass and error terms"), name
    # In the .tex, each line cites the numbered equations it summarises.
    tex_box = _box(files["seed_net.tex"])
    assert r"\eqref{eq:seed-net:output-delta}" in tex_box
    assert (
        r"\eqref{eq:seed-net:dense-box}" in tex_box and r"\eqref{eq:seed-net:backprop}" in tex_box
    )
    # The MSE network's output error is its own, not the fused a - y.
    mse = _box(_generate("c2_seed_mse.yaml").files["c2_seed_mse.tex"])
    assert (
        r"\delta^{(2)} = \kappa a^{(2)} \odot \left(1 - a^{(2)}\right) \odot "
        r"\left(a^{(2)} - y\right)" in mse
    )


def test_summary_has_the_notation_and_the_shapes_of_each_layer() -> None:
    tex = _generate("bn_mlp.yaml").files["bn_mlp.tex"]
    notation = tex[tex.index(r"\section{Notation}") : tex.index(r"\section{Summary}")]
    assert r"$\odot$, $M^{\mathsf{T}}$" in notation
    assert r"$\gamma$, $\beta$" in notation  # the normalisations' parameters are named
    assert r"\star" not in notation  # and only the symbols this network uses
    table = tex[tex.index(r"\section{The network}") : tex.index(r"\section{Notation}")]
    assert r"$W^{(1)} \in \mathbb{R}^{12 \times 6}$" in table
    assert r"$\gamma^{(2)} \in \mathbb{R}^{12}$, $\beta^{(2)} \in \mathbb{R}^{12}$" in table
    # Other kinds: the recursion through g, what each kind sends back, their gradients.
    box = _box(tex)
    assert r"g^{(\ell)} \odot f_\ell'" in box and r"\text{batchnorm}" in box


def test_summary_box_is_unnumbered_and_moves_no_number() -> None:
    result = _generate("seed.yaml")
    tex = result.files["seed_net.tex"]
    box = _box(tex)
    assert r"\label" not in box and r"\tag" not in box
    # The numbers the module cites are the ones LaTeX gives (checked on the .aux below and
    # in tests/test_document.py): the box adds none, so forward-a is still (1).
    eq = network_numbering(result.derivation, derive_network(result.derivation))
    assert eq["eq:forward-a"] == 1
    assert tex.count(r"\begin{equation}") == max(n for n in eq.values() if n < eq["eq:z-1"])
    assert f"eq. ({eq['eq:output-delta']})" in result.files["seed_net.py"]


def _paper(folder: Path, examples: tuple[str, ...], columns: str, **options) -> str:
    """An article that \\inputs the bodies of `examples`; compiled twice, its log."""
    preamble: dict[str, None] = {}
    sections = []
    for example in examples:
        result = _generate(example, **options)
        name = result.arch.name
        body = result.files[f"{name}_body.tex"]
        (folder / f"{name}_body.tex").write_text(body)
        preamble.update(dict.fromkeys(_packages(body)))
        sections.append(f"\\input{{{name}_body}}")
    paper = folder / "paper.tex"
    paper.write_text(
        f"\\documentclass[{columns}]{{article}}\n" + "\n".join(preamble) + "\n"
        "\\begin{document}\n" + "\n".join(sections) + "\n\\end{document}\n"
    )
    return compile_tex(paper)


@needs_pdflatex
@pytest.mark.parametrize("columns", ["onecolumn", "twocolumn"])
def test_summary_boxes_compile_in_one_and_two_columns(columns: str, tmp_path: Path) -> None:
    log = _paper(tmp_path, WIDE, columns)
    assert not re.search(r"undefined|Rerun|multiply", log)
    # The box fits the column: no overfull line in its paragraph (a box is one line).
    boxes = re.findall(
        r"Overfull \\hbox \(([\d.]+)pt too wide\) in paragraph at lines.*\n(.*)", log
    )
    assert not [b for b in boxes if "BP1" in b[1] or "BP2" in b[1]], boxes


def test_paper_style_drops_the_narration_and_the_cost() -> None:
    full = _generate("lenet.yaml").files
    paper = _generate("lenet.yaml", style="paper").files
    for name in ("lenet.tex", "lenet_body.tex", "lenet.md"):
        assert re.search(r"SymPy", full[name]), name  # the test can fail
        assert not re.search(r"sympy", paper[name], re.I), name
        for said in ("stored", "overflow", "the code", "hvp"):
            assert said in full[name].lower() and said not in paper[name].lower(), (name, said)
    assert r"\section{Cost}" in full["lenet.tex"] and "Cost" not in paper["lenet.tex"]
    assert "## Cost" in full["lenet.md"] and "Cost" not in paper["lenet.md"]
    # The mathematics stays: the same numbered equations, and the summary.
    for name in ("lenet.tex", "lenet_body.tex"):
        assert re.findall(r"\\label\{eq:[^}]*\}", full[name]) == re.findall(
            r"\\label\{eq:[^}]*\}", paper[name]
        )
        assert _box(full[name]) == _box(paper[name])
    assert re.findall(r"\\tag\{\d+\}", full["lenet.md"]) == re.findall(
        r"\\tag\{\d+\}", paper["lenet.md"]
    )


@needs_pdflatex
@pytest.mark.parametrize(
    ("example", "options"),
    [
        ("lenet.yaml", {"style": "paper"}),
        ("resmlp.yaml", {"style": "paper", "bold": True, "t": "intercal"}),
        ("bn_mlp.yaml", {"bold": True, "t": "top"}),
    ],
    ids=["paper", "paper-bold-intercal", "bold-top"],
)
def test_styles_and_notations_compile_with_every_reference_resolved(
    example: str, options: dict, tmp_path: Path
) -> None:
    result = _generate(example, **options)
    name = result.arch.name
    tex = tmp_path / f"{name}.tex"
    tex.write_text(result.files[f"{name}.tex"])
    log = compile_tex(tex)
    problems = [ln for ln in log.splitlines() if BAD_LOG.search(ln)]
    assert not problems, problems[:10]
    # The numbers are the ones the module cites (symbp.ir.labels), whatever the options.
    aux = (tmp_path / f"{name}.aux").read_text()
    numbered = dict(re.findall(r"\\newlabel\{(eq:[^}]*)\}\{\{(\d+)\}", aux))
    eq = network_numbering(result.derivation, derive_network(result.derivation))
    expected = {tex_label(name, key): str(n) for key, n in eq.items()}
    # every equation printed has the number the code would cite; without --layers the
    # appendix's equations (numbered last) are the only ones left out
    assert numbered == {k: v for k, v in expected.items() if k in numbered}
    assert len(numbered) == len(expected) or sorted(map(int, numbered.values())) == list(
        range(1, len(numbered) + 1)
    )


def test_bold_writes_vectors_and_matrices_in_bold() -> None:
    plain = generate(EXAMPLES / "seed.yaml", layers=True).files
    bold = generate(EXAMPLES / "seed.yaml", layers=True, notation=Notation(bold=True)).files
    for name in ("seed_net.tex", "seed_net.md"):
        assert r"\mathbf{W}" not in plain[name] and r"\boldsymbol{\delta}" not in plain[name]
        # printed by symbp.documents.latex (the layer blocks) and written by the templates alike
        assert r"\frac{\partial L}{\partial {\mathbf{W}}^{(1)}}" in bold[name]
        assert (
            r"{\mathbf{Z}}^{(\ell)} &= {\mathbf{W}}^{(\ell)} {\mathbf{A}}^{(\ell-1)}" in bold[name]
        )
        assert (
            r"{\boldsymbol{\delta}}^{(2)} = \kappa \left({\mathbf{a}}^{(2)} - {\mathbf{y}}\right)"
            in (_box(bold[name]))
        )
        assert r"{\boldsymbol{\Delta}}^{(1)}" in bold[name] and r"{\mathbf{g}}^{(1)}" in bold[name]
    # Entries of index notation stay scalars.
    assert r"\partial W_{q,r}" in bold["seed_net.tex"]


@pytest.mark.parametrize("symbol", ["top", "intercal"])
def test_transpose_symbol(symbol: str) -> None:
    plain = _generate("lenet.yaml").files
    files = _generate("lenet.yaml", t=symbol).files
    for name in ("lenet.tex", "lenet_body.tex", "lenet.md"):
        assert r"^{\mathsf{T}}" in plain[name]
        assert "mathsf{T}" not in files[name], name
        assert files[name].count(f"^{{\\{symbol}}}") == plain[name].count(r"^{\mathsf{T}}")
    with pytest.raises(OutputError, match="transpose"):
        Notation(transpose="t")


def test_the_module_is_the_same_whatever_the_document_options() -> None:
    files = [
        _generate("lenet.yaml").files["lenet.py"],
        _generate("lenet.yaml", style="paper").files["lenet.py"],
        _generate("lenet.yaml", bold=True, t="top").files["lenet.py"],
        _generate("lenet.yaml", style="paper", bold=True, t="intercal").files["lenet.py"],
    ]
    assert all(f == files[0] for f in files)
    with pytest.raises(OutputError, match="style"):
        generate(EXAMPLES / "seed.yaml", style="short")


def test_options_on_the_command_line(tmp_path: Path) -> None:
    help_text = run("generate", "--help").stdout
    readme = (ROOT / "README.md").read_text()
    body_section = readme[readme.index("### A body for a paper") :]
    for option in ("--style", "paper", "--bold", "--transpose", "intercal"):
        assert option in help_text, option
        assert f"`symbp generate ... {option}" in readme or option in ("paper", "intercal")
        assert option in body_section, option
    seed = str(EXAMPLES / "seed.yaml")
    bad = run("generate", seed, "-o", str(tmp_path), "--style", "short")
    assert bad.returncode == 2 and "--style" in bad.stderr and "paper" in bad.stderr
    assert run("generate", seed, "-o", str(tmp_path), "--transpose", "t").returncode == 2
    ok = run(
        "generate", seed, "-o", str(tmp_path), "--body", "--style", "paper", "--bold",
        "--transpose", "top",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    body = (tmp_path / "seed_net_body.tex").read_text()
    assert "SymPy" not in body and r"\mathbf{W}" in body and r"^{\top}" in body
    assert (tmp_path / "seed_net.py").read_text() == _generate("seed.yaml").files["seed_net.py"]
