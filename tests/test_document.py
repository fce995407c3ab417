"""The LaTeX derivation: compiles cleanly, holds every layer's equations, matches the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from symbp.derivation.network import derive_network
from symbp.derivation.numbering import network_numbering
from symbp.frontend.spec import BUILTIN_ACTIVATIONS
from symbp.ir.labels import PER_LAYER, layer_label, node_equations, tex_label
from symbp.pipeline import generate
from tests.conftest import EXAMPLES, GENERATED

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
BAD_LOG = re.compile(r"Overfull|Underfull \\hbox \(badness 10000\)|undefined|Undefined|Rerun")


def compile_tex(tex: Path) -> str:
    """pdflatex with -halt-on-error, run again while LaTeX asks to (at most three times, as
    latexmk would: a float that moves page changes its label's page); the final log."""
    for run in range(3):
        r = subprocess.run(
            ["pdflatex", "-halt-on-error", "-interaction=nonstopmode", tex.name],
            cwd=tex.parent,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert r.returncode == 0, r.stdout[-3000:]
        log = (tex.parent / (tex.stem + ".log")).read_text(errors="replace")
        if run >= 1 and "Rerun to get" not in log:
            break
    return log


@pytest.mark.skipif(
    shutil.which("pdflatex") is None, reason="pdflatex missing: .ci/run installs it"
)
@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_committed_tex_compiles_without_warnings(example: Path, tmp_path: Path) -> None:
    result = generate(example)
    name = result.arch.name
    tex = tmp_path / f"{name}.tex"
    shutil.copy(GENERATED / f"{name}.tex", tex)
    log = compile_tex(tex)
    problems = [ln for ln in log.splitlines() if BAD_LOG.search(ln)]
    assert not problems, problems[:10]
    assert (tmp_path / f"{name}.pdf").stat().st_size > 10_000
    # LaTeX's own counter gives each label the number the code's comments cite.
    aux = (tmp_path / f"{name}.aux").read_text()
    numbered = dict(re.findall(r"\\newlabel\{(eq:[^}]*)\}\{\{(\d+)\}", aux))
    eq = network_numbering(result.derivation, derive_network(result.derivation))
    expected = {tex_label(name, key): str(n) for key, n in eq.items()}
    # the appendix (--layers) is numbered last: without it, 1..k of the same numbers
    assert numbered == {k: v for k, v in expected.items() if int(v) <= len(numbered)}


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_layer_equation_is_labelled(example: Path) -> None:
    result = generate(example, layers=True)
    name = result.arch.name
    tex = result.files[f"{name}.tex"]
    labels = set(re.findall(r"\\label\{([^}]*)\}", tex))
    net = derive_network(result.derivation)
    for nd in net.nodes:
        for kind in node_equations(nd.node):
            assert tex_label(name, layer_label(kind, nd.node.index)) in labels
        if nd.node.kind == "dense" and nd.node.layer.bias:
            assert set(PER_LAYER) <= set(node_equations(nd.node))
    assert len(labels) == len(re.findall(r"\\label\{", tex)), "duplicate labels"


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_equation_numbers_cited_in_code_exist_in_document(example: Path) -> None:
    result = generate(example)
    name = result.arch.name
    code, tex = result.files[f"{name}.py"], result.files[f"{name}.tex"]
    # LaTeX numbers the equation environments 1, 2, ... in the order they appear.
    labels = re.findall(r"\\begin\{equation\}\\label\{([^}]*)\}", tex)
    number = {label: k for k, label in enumerate(labels, start=1)}
    cited = {int(n) for n in re.findall(r"eqs?\. \((\d+)\)", code)}
    cited |= {int(n) for n in re.findall(r"\), \((\d+)\)", code)}
    assert cited, "the module cites no equation"
    assert cited <= set(number.values()), f"cited but not in the document: {sorted(cited)}"
    # Each layer's delta cites the output error (the output layer) or the recursion (the
    # others), and its z its kind's box: equations of the kinds, not of the appendix.
    layers = len(result.arch.layers)
    for layer in range(1, layers + 1):
        key = "output-delta" if layer == layers else "backprop"
        delta = number[tex_label(name, f"eq:{key}")]
        assert f"# layer {layer}" in code and f"delta (eq. ({delta}))" in code
    kinds = {nd.node.kind for nd in result.network.nodes}
    boxes = {number[tex_label(name, f"eq:{kind}-box")] for kind in kinds}
    assert boxes <= cited
    # The appendix (--layers) comes after every cited equation: the module is the same.
    with_layers = generate(example, layers=True)
    assert with_layers.files[f"{name}.py"] == code
    tex_layers = with_layers.files[f"{name}.tex"]
    labels_layers = re.findall(r"\\begin\{equation\}\\label\{([^}]*)\}", tex_layers)
    assert labels_layers[: len(labels)] == labels and len(labels_layers) > len(labels)


def test_seed_document_shows_derived_steps() -> None:
    tex = generate(EXAMPLES / "seed.yaml").files["seed_net.tex"]
    assert r"a \left(1 - a\right)" in tex  # sigmoid' rewritten in a
    assert r"\delta^{(\ell)}" in tex and r"W^{(\ell)}" in tex and r"\odot" in tex
    # sigmoid + bce: the output error SymPy simplified is kappa (A - Y), for the whole batch
    # in the layer-by-layer appendix.
    tex = generate(EXAMPLES / "seed.yaml", layers=True).files["seed_net.tex"]
    out = re.search(r"\\label\{eq:seed-net:delta-2\}\n(.*)\n", tex)
    assert out and r"\Delta^{(2)} = \kappa \left(A^{(2)} - Y\right)" in out.group(1)


@pytest.mark.skipif(
    shutil.which("pdflatex") is None, reason="pdflatex missing: .ci/run installs it"
)
def test_body_inputs_into_a_paper(tmp_path: Path) -> None:
    files = generate(EXAMPLES / "seed.yaml", body_only=True).files
    body = files["seed_net_body.tex"]
    assert r"\documentclass" not in body and r"\begin{document}" not in body
    # The packages it needs, copied from the comments at its top as an author would.
    packages = [ln[2:] for ln in body.splitlines() if ln.startswith("% \\usepackage{")]
    assert packages
    (tmp_path / "seed_net_body.tex").write_text(body)
    paper = tmp_path / "paper.tex"
    paper.write_text(
        "\\documentclass{article}\n" + "\n".join(packages) + "\n"
        "\\newcommand{\\R}{\\mathbb{R}}\n"  # a macro papers often define themselves
        "\\begin{document}\n"
        "Our gradients are in Section~\\ref{sec:x} and eq.~\\eqref{eq:seed-net:backprop}.\n"
        "\\begin{equation}\\label{eq:loss} L = 0 \\end{equation}\n"  # the paper's own label
        "\\section{Derivation}\\label{sec:x}\n\\input{seed_net_body}\n\\end{document}\n"
    )
    log = compile_tex(paper)
    problems = [ln for ln in log.splitlines() if BAD_LOG.search(ln)]
    assert not problems, problems[:10]


def test_markdown_has_the_same_equations() -> None:
    files = generate(EXAMPLES / "seed.yaml").files
    tex, md = files["seed_net.tex"], files["seed_net.md"]
    displays = tex.count(r"\begin{equation}")
    md_tags = [int(n) for n in re.findall(r"\\tag\{(\d+)\}", md)]
    assert md_tags == list(range(1, displays + 1)) and md_tags
    # and two more math fences: the summary's boxes (unnumbered, as in the .tex); the
    # dense kind's box is numbered
    assert "$$" not in md and md.count("```math") == displays + 2
    assert tex.count(r"\boxed{") == md.count(r"\boxed{") == 3


def test_a_generation_displays_in_jupyter() -> None:
    result = generate(EXAMPLES / "seed.yaml")
    assert "## The output layer" in result._repr_markdown_()


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_display_equation_is_numbered_and_labelled(example: Path) -> None:
    result = generate(example)
    tex = result.files[f"{result.arch.name}.tex"]
    displays = tex.count(r"\begin{equation}")
    assert r"\[" not in tex and "$$" not in tex and r"\begin{equation*}" not in tex
    assert displays == tex.count(r"\label{eq:") and displays
    assert r"\tag" not in tex, "LaTeX numbers the equations, in document order"


# Documents of every built-in activation, every expression function the README lists and
# every loss compile (a SymPy constant such as pi once printed as \text{\Pi} and broke them).
_FUNCTIONS = {
    "f_exp": "exp(-x**2/2)",
    "f_log": "log(1 + x**2)",
    "f_sqrt": "sqrt(1 + x**2)",
    "f_abs": "abs(x)/(1 + abs(x))",
    "f_trig": "sin(x) + cos(x)*tan(x/4)",
    "f_hyp": "sinh(x/2) + cosh(x/3) + tanh(x)",
    "f_atan": "atan(x)",
    "f_erf": "erf(x/sqrt(2))",
    "f_sig": "sigmoid(x) + softplus(x)",
    "f_minmax": "min(x, 1) + max(x, 0)",
    "f_const": "pi*x + e",
}
DOCUMENT_CASES = {
    "builtins": {
        "input": 2,
        "layers": [
            *(
                {"units": 2, "activation": act}
                for act in BUILTIN_ACTIVATIONS
                if act != "softmax"  # the output layer's only
            ),
            {"units": 2, "activation": "sigmoid"},
        ],
        "loss": "bce",
    },
    "functions": {
        "input": 2,
        "activations": _FUNCTIONS,
        "layers": [
            *({"units": 2, "activation": name} for name in _FUNCTIONS),
            {"units": 3, "activation": "softmax"},
        ],
        "loss": "cross_entropy",
    },
    "losses": {
        "layout": "row",
        "input": 2,
        "layers": [{"units": 2, "activation": "tanh"}, {"units": 2, "activation": "tanh"}],
        "loss": {"expr": "abs(yhat - y) + max(yhat, y)**2 + (yhat - y)**2/2"},
        "l2": 0.01,
        "reduction": "sum",
    },
}


@pytest.mark.skipif(
    shutil.which("pdflatex") is None, reason="pdflatex missing: .ci/run installs it"
)
@pytest.mark.parametrize("case", DOCUMENT_CASES)
def test_documents_of_every_function_compile(case: str, tmp_path: Path) -> None:
    from symbp.frontend.spec import arch_from_mapping

    result = generate(arch_from_mapping({"name": f"doc_{case}", **DOCUMENT_CASES[case]}))
    tex = tmp_path / f"doc_{case}.tex"
    tex.write_text(result.files[tex.name])
    log = compile_tex(tex)
    assert (tmp_path / f"doc_{case}.pdf").stat().st_size > 10_000
    if case != "functions":  # its activations' cases rows are not broken yet (19pt over)
        assert "Overfull" not in log, [ln for ln in log.splitlines() if "Overfull" in ln]


def test_index_forms_name_their_layers() -> None:
    """The recursion sums over the units of layer l+1 (W and delta are layer l+1's); the
    gradients read a^(l-1) and delta^(l); the R-operator likewise."""
    tex = generate(EXAMPLES / "seed.yaml").files["seed_net.tex"]
    sums = tex[tex.index(r"\label{eq:seed-net:dense-sums}") :][:600]
    # what layer l sends back to a^(l-1): a sum over its own n_l units, of its W and delta
    assert r"\sum_{i=1}^{n_{\ell}} {W^{(\ell)}}_{i,r} {\delta^{(\ell)}}_{i,s}" in sums
    assert r"{a^{(\ell-1)}}_{r,s} {\delta^{(\ell)}}_{q,s}" in sums
    assert r"\ell+1" not in sums
    assert r"{\mathcal{R}\delta^{(\ell)}}_{i,s} {W^{(\ell)}}_{i,r}" in tex


def test_dirac_delta_is_named_apart_and_its_convention_stated() -> None:
    from symbp.frontend.spec import arch_from_mapping

    arch = arch_from_mapping(
        {
            "name": "kink",
            "input": 2,
            "layers": [{"units": 2, "activation": "tanh"}, {"units": 1}],
            "loss": {"expr": "abs(yhat - y)"},
        }
    )
    files = generate(arch, layers=True).files
    for name in ("kink.tex", "kink.md"):
        assert r"\delta_{\mathrm{D}}\left(" in files[name]
        assert "takes it as zero" in files[name]
    assert (
        "takes it as zero"
        not in generate(EXAMPLES / "seed.yaml", layers=True).files["seed_net.tex"]
    )


def test_decimals_are_kept_as_the_user_wrote_them() -> None:
    """A decimal coefficient prints as the user wrote it (SymPy holds it as 8943/200000).
    Not yet: SymPy distributes a number over a sum (0.79788 (x + 0.044715 x^3)), and the
    code prints a coefficient as p*.../q."""
    from symbp.frontend.spec import arch_from_mapping

    arch = arch_from_mapping(
        {
            "name": "dec",
            "input": 2,
            "activations": {"g": "x + 0.044715*x**3"},
            "layers": [{"units": 2, "activation": "g"}, {"units": 1}],
            "loss": "mse",
        }
    )
    files = generate(arch).files
    for name in ("dec.tex", "dec.md"):
        assert "0.044715 x^{3}" in files[name] and "8943" not in files[name], name


def test_a_negative_coefficient_is_a_leading_minus_sign() -> None:
    """- 3 a ⊙ y and - c a ⊙ (a - 1), as a person writes them: not (-3) a or (- c) a."""
    import sympy as sp

    from symbp.documents.latex import tex
    from symbp.ir.naming import Role, array
    from symbp.symbolic.output import SCALE

    a, y, c = array(Role.ACTIVATION, 2), array(Role.TARGET), SCALE  # kappa
    for expr in (-3 * a**2 * y, -c * a * (a - 1), -sp.sqrt(2) * a * y, 2 * c * a * y):
        text = tex(expr)
        assert r"\left(-" not in text and r"\left(- " not in text and "(-" not in text, text
    assert tex(-3 * a**2 * y).startswith("- 3 ")
    assert tex(2 * c * a * y).startswith(r"2 \kappa ")
    # the sigmoid's a (1 - a), with the sign taken into the difference
    assert tex(-c * a * (a - 1) * (a - y)) == (
        r"\kappa a^{(2)} \odot \left(1 - a^{(2)}\right) \odot \left(a^{(2)} - y\right)"
    )
    assert tex(-c * a * (a - y)).startswith(r"- \kappa ")  # -a + y would read worse


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_layer_blocks_use_one_form_the_batch(path: Path) -> None:
    """The "Layer by layer" blocks write the batch's arrays (Z, A, G, Delta) throughout, not
    per-sample a, z, g, delta beside them (and no column-form (W^T delta) in row layout)."""
    arch_name = path.stem
    files = generate(path, layers=True).files
    md = next(text for name, text in files.items() if name.endswith(".md"))
    block = md.split("## Layer by layer", 1)[1].split("\n### Forward mode", 1)[0]
    assert "### Layer 1" in block, arch_name
    per_sample = re.findall(r"(?<![A-Za-z\\])(?:[azg]|\\delta)\^\{\(\d+\)\}", block)
    assert not per_sample, (arch_name, per_sample[:5])


def test_long_formulas_are_broken_into_lines_not_scaled() -> None:
    """A display wider than a line is broken at the terms of its sums (a product's long sum
    opens on one line and closes on a later one), with the punctuation after the last line;
    a short one stays on one line."""
    import sympy as sp

    from symbp.documents.latex import LINE_WIDTH, Display, tex, tex_lines, width

    z, t, g = (sp.Symbol(n, real=True) for n in ("Z2", "T2", "G2"))
    s = 1 / (sp.exp(z) + 1)
    terms = [2 * t * z * (s - 1) ** 2 * (t**2 - 1), -z * (s - 1) ** 2 * (1 - t**2)]
    terms += [z * (1 - t**2) * (1 - s), (1 - s) * (2 - 2 * t**2)]
    long = g * sp.Add(*terms) + t * z
    assert width(long) > LINE_WIDTH
    lines = tex_lines(long, arrays=frozenset({"Z2", "T2", "G2"}))
    assert len(lines) >= 3
    assert sum(r"\left(" in ln for ln in lines) == sum(r"\right)" in ln for ln in lines)
    assert any(ln.rstrip().endswith(r"\right.") for ln in lines)  # a sum left open
    shown = Display("R = ", tuple(lines)).end(".")
    assert shown.startswith(r"R = \begin{aligned}[t] &") and shown.endswith(r". \end{aligned}")
    assert shown.count(r"\\") == len(lines) - 1
    short = t * z + 1
    assert tex_lines(short) == [tex(short)] and Display("", (tex(short),)).end(",").endswith(",")


def test_piece_conditions_are_shown_simplified() -> None:
    """A custom min/max activation's pieces read x >= 1, x <= 0, otherwise: no piece whose
    condition never holds (x >= 1 and x <= 0) and no redundant conjunction."""
    from symbp.frontend.spec import arch_from_mapping

    result = generate(arch_from_mapping({"name": "doc_functions", **DOCUMENT_CASES["functions"]}))
    tex = result.files["doc_functions.tex"]
    assert r"x \geq 1 \wedge x \leq 0" not in tex and r"\wedge x > -1" not in tex
    assert r"\text{for } x \geq 1" in tex


def test_derived_forms_are_shown_as_a_person_writes_them() -> None:
    """GELU as x Phi(x) with f' = x phi(x) + Phi(x) (and Phi, phi defined), log cosh's
    derivative as tanh(a - y), softsign's f' in a as (a - 1)^2 per piece; each shown form is
    checked equal to SymPy's (symbp.symbolic.equal) before it is used."""
    import sympy as sp

    from symbp.documents.shown import Sigmoid, elementary, shown
    from symbp.frontend.spec import arch_from_mapping
    from symbp.symbolic.equal import agree

    arch = arch_from_mapping(
        {
            "name": "canon",
            "input": 3,
            "layers": [
                {"units": 4, "activation": "gelu"},
                {"units": 4, "activation": "softsign"},
                {"units": 2, "activation": "identity"},
            ],
            "activations": {"softsign": "x/(1 + abs(x))"},
            "loss": {"expr": "log(cosh(yhat - y))"},
        }
    )
    md = generate(arch).files["canon.md"]
    assert r"f(x) = x \Phi\left(x\right)" in md
    assert r"f'(x) = x \varphi\left(x\right) + \Phi\left(x\right)" in md
    assert r"\varphi(x) = e^{-x^{2}/2} / \sqrt{2 \pi}" in md
    assert r"\left(a - 1\right)^{2} & \text{for } a > 0" in md
    assert r"= \tanh{\left({a}_{j} - {y}_{j} \right)}" in md and r"\sinh" not in md
    x = sp.Symbol("x", real=True)
    raw = sp.diff(x * (1 + sp.erf(x / sp.sqrt(2))) / 2, x)
    assert agree(raw, elementary(shown(raw))) and shown(raw) != raw
    assert shown(1 - sp.tanh(x) ** 2) == sp.sech(x) ** 2
    assert shown(sp.exp(-x) / (1 + sp.exp(-x)) ** 2) == Sigmoid(x) * (1 - Sigmoid(x))


def test_the_loss_reads_in_the_users_order() -> None:
    """(yhat - y)^2 / 2 + |yhat - y| as written, not (-y + yhat)^2 or |y - yhat|."""
    from symbp.frontend.spec import arch_from_mapping

    arch = arch_from_mapping(
        {
            "name": "order",
            "input": 3,
            "layers": [{"units": 2, "activation": "identity"}],
            "loss": {"expr": "(yhat - y)**2/2 + abs(yhat - y)"},
        }
    )
    md = generate(arch).files["order.md"]
    assert r"\left(\hat{y} - y\right)^{2}" in md and r"\left|{\hat{y} - y}\right|" in md
    assert r"- y + \hat{y}" not in md


def test_repeated_subexpressions_of_long_formulas_are_named_once() -> None:
    """A long display names each wide subexpression it repeats (u_1 = ..., after the
    formula); substituting the names back gives the formula exactly; short ones are left."""
    import sympy as sp

    from symbp.documents.document import _named_repeats

    z, t, g = (sp.Symbol(n, real=True) for n in ("Z2", "T2", "G2"))
    s = 1 - 1 / (sp.exp(z) + 1)
    expr = g * (2 * t * z * s**2 * (t**2 - 1) - z * s**2 * (1 - t**2) + s * (2 - 2 * t**2))
    reduced, named = _named_repeats(expr)
    assert named and all(reduced.count(u) + sum(v.count(u) for _, v in named) > 1 for u, _ in named)
    back = reduced
    for u, v in reversed(named):
        back = back.xreplace({u: v})
    assert sp.simplify(back - expr) == 0
    assert _named_repeats(t * z + t * z**2) == (t * z + t * z**2, [])
    md = generate(EXAMPLES / "smooth_mlp.yaml", layers=True).files["smooth_mlp.md"]
    # named xi_k, each name defined once in the document
    assert r"\text{where } \xi_{1} = " in md
    assert all(md.count(rf"\xi_{{{k}}} = ") == 1 for k in range(1, 4))


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_the_letter_l_is_the_loss_alone(path: Path) -> None:
    """L is the loss: the output layer is named by its number (delta^(3)), never delta^(L) or
    n_L, which would read as the loss."""
    for name, text in generate(path).files.items():
        if name.endswith((".tex", ".md")):
            assert "^{(L)}" not in text and "n_{L}" not in text and "n_L" not in text, name


def test_powers_of_named_functions_print() -> None:
    """sigma^2(x), phi^3(x): the printer passes a power to the named functions of the shown
    forms (a crash before); and a custom activation whose derivative has sigma^2 documents."""
    import sympy as sp

    from symbp.documents.latex import tex
    from symbp.documents.shown import NormalCdf, NormalPdf, Sigmoid
    from symbp.frontend.spec import arch_from_mapping

    x = sp.Symbol("x", real=True)
    assert tex(Sigmoid(x) ** 2) == r"\sigma^{2}\left(x\right)"
    assert tex(x * NormalPdf(x) ** 3 + NormalCdf(x)) == (
        r"x \varphi^{3}\left(x\right) + \Phi\left(x\right)"
    )
    custom = "log(1 + (atan(3) - (1 - x))**2)/(1 + (sigmoid(min(3, x)) - sigmoid(sin(pi)))**2)"
    arch = arch_from_mapping(
        {
            "name": "hairy",
            "input": 2,
            "layers": [{"units": 2, "activation": "h"}, {"units": 1, "activation": "sigmoid"}],
            "activations": {"h": custom},
            "loss": "bce",
        }
    )
    assert r"\sigma^{2}" in generate(arch).files["hairy.md"]
