"""The classes of wrong formulas a referee found in the documents (issue 21), each checked on
the documents and, where it is a question of shapes, on the expressions themselves."""

from __future__ import annotations

import re

import sympy as sp

from symbp.documents.latex import tex
from symbp.pipeline import generate
from tests.conftest import EXAMPLES


def test_a_row_of_ones_is_written_transposed_so_the_bias_term_conforms() -> None:
    """Z = W A + b 1^T in the column layout: b (k x 1) times a row of ones (1 x n) is k x n,
    the shape of W A; "b 1" with 1 in R^n would not conform."""
    n, k = sp.Symbol("n", positive=True, integer=True), 3
    b, ones = sp.MatrixSymbol("b", k, 1), sp.OneMatrix(1, n)
    assert (b * ones).shape == (k, n)
    assert tex(b * ones) == r"b \mathbf{1}^{\mathsf{T}}"
    assert tex(sp.OneMatrix(n, 1)) == r"\mathbf{1}"  # a column of ones stays 1
    seed = generate(EXAMPLES / "seed.yaml", layers=True).files  # column layout
    for name in ("seed_net.tex", "seed_net.md"):
        text = seed[name]
        assert (
            r"b^{(\ell)} \mathbf{1}^{\mathsf{T}}" in text
            and r"b^{(1)} \mathbf{1}^{\mathsf{T}}" in text
        )
        assert not re.search(r"b\^\{\([^)]*\)\} \\mathbf\{1\}(?!\^)", text), name
    resmlp = generate(EXAMPLES / "resmlp.yaml").files["resmlp.tex"]  # row layout
    assert r"\mathbf{1} \left(b^{(\ell)}\right)^{\mathsf{T}}" in resmlp


def test_the_conv_bias_gradient_sums_over_samples_and_positions_for_each_filter() -> None:
    """dL/db_o = sum_{s,i,j} Delta_{s,o,i,j}: the filter index is bound by the vector's
    brackets, never a free channel index."""
    tex_ = generate(EXAMPLES / "lenet.yaml", layers=True).files["lenet.tex"]
    for layer in (1, 3):
        line = re.search(rf"\\label\{{eq:lenet:db-{layer}\}}\n(.*)\n", tex_)
        assert line, layer
        expected = (
            rf"\left[\sum_{{s,i,j}} \left(\Delta^{{({layer})}}\right)_{{s,o,i,j}}\right]_{{o}}"
        )
        assert expected in line.group(1), line.group(1)
    assert "n,c,i,j" not in tex_ and "s,c,i,j}}" not in tex_
    # the filter is o throughout: f is the activation function f_l
    assert "W_{o',c',p',q'}" in tex_ and "s,f," not in tex_ and "{f'}" not in tex_


def test_the_summary_states_the_consumers_the_layer_blocks_sum_over() -> None:
    """resmlp: layers 1 and 5 are read by the next layer and by an add. The summary's C(l)
    and each layer block's G (what it sums) come from the same graph and agree."""
    result = generate(EXAMPLES / "resmlp.yaml", layers=True)
    text, net = result.files["resmlp.tex"], result.network
    assert net is not None
    stated = dict(re.findall(r"\\mathcal\{C\}\((\d+)\) = \\lbrace ([\d, ]+) \\rbrace", text))
    for nd in net.nodes[:-1]:
        l = nd.node.index
        head = rf"G\^\{{\({l}\)\}} = \\frac\{{\\partial L\}}"
        head += rf"\{{\\partial A\^\{{\({l}\)\}}\}} = "
        block = re.search(head + r"(.*?)(, \\\\|\n)", text)
        assert block, l
        summed = {int(m) for m in re.findall(r"\^\{\((\d+)\)\}", block.group(1))}
        readers = {c.index for c in net.graph.consumers[nd.node.a.key]}
        assert readers <= summed | {l}, (l, readers, block.group(1))
        if readers != {l + 1}:
            assert {int(m) for m in stated[str(l)].split(", ")} == readers, l
        else:
            assert str(l) not in stated
    assert set(stated) == {"1", "5"}
    # and the box's recursion is the sum over consumers, with what an add sends back
    summary = text[text.index(r"\section{Summary}") : text.index(r"\section{Forward pass")]
    assert r"\sum_{m \in \mathcal{C}(\ell)} s^{(m)}" in summary
    assert r"s^{(m)} = \delta^{(m)}" in summary and r"\text{add } m" in summary


def test_sums_are_written_with_their_plus_terms_first() -> None:
    """u - S_h i as a person writes an index, not SymPy's -S_h i + u; an all-negative sum
    keeps its leading minus."""
    u, i, s = sp.symbols("u i S_h")
    assert tex(-s * i + u) == r"u - S_{h} i"
    assert tex(-u - i).startswith("- ")
    lenet = generate(EXAMPLES / "lenet.yaml").files["lenet.tex"]
    assert r"{W}_{o,c',u - S_{h} i,v - S_{w} j}" in lenet
    assert r"- S_{h} i + u" not in lenet


def test_the_stable_forms_named_are_the_ones_the_loss_uses() -> None:
    """Boilerplate only where it applies: softmax + cross-entropy evaluates log sum_k e^z_k
    and no log(1 + e^u); sigmoid + bce the reverse."""
    softplus, lse = r"Each $\log\left(1 + e^{u}\right)$", r"$\log \sum_k e^{z_k}$"
    lenet = generate(EXAMPLES / "lenet.yaml").files["lenet.tex"]
    assert lse in lenet and softplus not in lenet
    seed = generate(EXAMPLES / "seed.yaml").files["seed_net.tex"]
    assert softplus in seed and lse not in seed


def test_sigma_is_the_logistic_alone_and_rho_the_norms_deviation() -> None:
    """bn_mlp has a sigmoid layer and batch norms: sigma means the logistic function only."""
    files = generate(EXAMPLES / "bn_mlp.yaml", layers=True).files
    for name in ("bn_mlp.tex", "bn_mlp.md"):
        text = files[name]
        assert re.findall(r"\\sigma(?!\\left\(|\(x\))", text) == [], name
        assert r"\rho^{(2)}" in text and r"\rho^{(\ell)}" in text, name


def test_a_norms_equation_names_its_mean_and_deviation() -> None:
    """z_i = beta_i + (x_i - mu) gamma_i / rho with mu and rho defined above it (checked equal
    to SymPy's z when put back), not a mean nested inside a root."""
    text = generate(EXAMPLES / "resmlp.yaml").files["resmlp.tex"]
    block = re.search(r"\\label\{eq:resmlp:layernorm-z\}\n(.*?)\\end\{equation\}", text, re.S)
    assert block
    lines = block.group(1)
    assert r"\mu = \frac{\sum_{m=1}^{N} {x}_{m}}{N}" in lines
    assert (
        r"\rho = \sqrt{\epsilon + \frac{\sum_{m=1}^{N} \left({x}_{m} - \mu\right)^{2}}{N}}" in lines
    )
    assert r"z_i = {\beta}_{i} + \frac{\left({x}_{i} - \mu\right) {\gamma}_{i}}{\rho}" in lines


def test_the_markdown_numbers_tables_as_latex_does() -> None:
    """LaTeX numbers the tables that have a caption, in order (the notation table has none):
    the Markdown says the same numbers."""
    files = generate(EXAMPLES / "lenet.yaml").files
    tex, md = files["lenet.tex"], files["lenet.md"]
    tables = re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, re.S)
    captions = [c for t in tables for c in re.findall(r"\\caption\{([^}$]*)", t)]
    assert len(captions) == 2 and len(tables) == 3  # layers, notation (none), cost
    for number, caption in enumerate(captions, start=1):
        assert f"Table {number}. {caption[:25]}" in md, (number, caption)


def test_theta_is_the_parameters_alone() -> None:
    """Max pooling's derivative is written with the unit step, so theta keeps one meaning
    (the parameters); the L2 penalty sums over the set of weights W."""
    lenet = generate(EXAMPLES / "lenet.yaml").files["lenet.tex"]
    assert r"\operatorname{step}\left(x_{00} - " in lenet
    assert not re.search(r"\\theta\\left\(|\\theta\(", lenet)
    arch = {
        "name": "decayed",
        "input": 3,
        "layers": [{"units": 2, "activation": "tanh"}, {"units": 1}],
        "loss": "mse",
        "l2": 0.01,
    }
    from symbp.frontend.spec import arch_from_mapping

    text = generate(arch_from_mapping(arch)).files["decayed.tex"]
    assert r"\sum_{W \in \mathcal{W}} \left\lVert W \right\rVert_F^2" in text
    assert r"\sum_{\theta}" not in text
