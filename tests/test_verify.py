"""symbp verify: symbp's gradients against sympy.diff of the scalar loss, on small instances."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import sympy as sp

from symbp.check import verify
from symbp.check.verify import VerifyError, format_table, shrink, verify_arch
from symbp.derivation.network import Network
from symbp.errors import SymbpError
from symbp.frontend.spec import arch_from_mapping, load_arch
from symbp.ir.graph import build_graph
from symbp.ir.reductions import LogSumExp, UnitSum

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
BUILTIN_HIDDEN = [
    "identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "swish", "gelu",
]  # fmt: skip
CUSTOM = {"mish": "x*tanh(softplus(x))", "hardtanh": "max(-1, min(1, x))"}


def _arch(hidden: str = "tanh", output: str = "identity", loss: Any = "mse", **doc: Any):
    """A 2-2-2 network (sizes overridable) with the given activations and loss."""
    base: dict[str, Any] = {
        "name": "tiny",
        "input": 2,
        "layers": [{"units": 2, "activation": hidden}, {"units": 2, "activation": output}],
        "loss": loss,
    }
    if hidden in CUSTOM:
        base["activations"] = {hidden: CUSTOM[hidden]}
    base.update(doc)
    return arch_from_mapping(base)


def _assert_verified(result: verify.VerifyResult) -> None:
    bad = [(r.parameter, r.detail) for r in result.rows if not r.ok]
    assert result.ok, f"{bad}\n{format_table(result)}"
    params = [p.key for p in build_graph(result.small_arch).parameters]
    assert [r.parameter for r in result.rows] == params


def _node_edit(layer_index: int, **edit: Any):
    """A tamper hook: node `layer_index` of the network with fields replaced by
    edit[field](node's field)."""

    def tamper(net: Network) -> Network:
        nodes = list(net.nodes)
        nd = nodes[layer_index - 1]
        changes = {name: change(getattr(nd, name)) for name, change in edit.items()}
        nodes[layer_index - 1] = dataclasses.replace(nd, **changes)
        return dataclasses.replace(net, nodes=tuple(nodes))

    return tamper


def _grad_edit(layer_index: int, symbol: str, change: Any):
    """A tamper hook: one parameter's gradient expression of node `layer_index` changed."""

    def grads(pairs: tuple) -> tuple:
        return tuple((p, change(g) if p.symbol == symbol else g) for p, g in pairs)

    return _node_edit(layer_index, grads=grads)


def _scaled_dW(layer_index: int, factor: int = 2):
    """A tamper hook: layer `layer_index`'s dW multiplied by factor."""
    return _grad_edit(layer_index, "W", lambda g: factor * g)


def _flipped_delta(layer_index: int):
    """A tamper hook: layer `layer_index`'s delta with its sign flipped."""
    return _node_edit(layer_index, delta=lambda delta: -delta)


def _failing(result: verify.VerifyResult) -> list[str]:
    return [r.parameter for r in result.rows if not r.ok]


# ------------------------------------------------------------------ passing architectures


def _verifiable(path: Path) -> bool:
    """verify's references cover every layer kind, on every input, but a flatten of a
    sequence (test_verify_refuses_what_it_does_not_cover checks that)."""
    arch = load_arch(path)
    return not any(n.regroups_rows for n in build_graph(arch).nodes)


@pytest.mark.parametrize("path", [p for p in EXAMPLES if _verifiable(p)], ids=lambda p: p.stem)
def test_every_example_verifies_shrunk(path: Path) -> None:
    arch = load_arch(path)
    # An image network keeps its geometry on the smallest image it fits (14x14 for res_cnn,
    # whose last pooling needs 4x4): one channel keeps that under half a minute.
    limit = 1 if arch.images else 3
    result = verify_arch(arch, max_units=limit, simplify_seconds=0)
    _assert_verified(result)
    small = result.small_arch
    if arch.images:
        assert all(shape[0] <= limit for shape in small.layer_shapes if len(shape) == 3)
        assert small.layer_shapes[-1] == (2,)  # a softmax keeps two units
    elif arch.positions:  # each position's features, on at most 2 positions
        assert max(shape[-1] for shape in small.layer_shapes[1:]) <= 3
        assert small.positions <= 2
    else:
        assert max(small.layer_sizes) <= 3


@pytest.mark.parametrize("layout", ["column", "row"])
@pytest.mark.parametrize("hidden", [*BUILTIN_HIDDEN, *CUSTOM])
def test_every_hidden_activation(hidden: str, layout: str) -> None:
    _assert_verified(verify_arch(_arch(hidden, layout=layout), simplify_seconds=0))


# (loss, output activation): outputs whose range suits the loss.
PAIRINGS = [
    ("mse", "identity"),
    ("mse", "tanh"),
    ("mse", "softmax"),
    ("bce", "sigmoid"),
    ("bce", "softmax"),
    ("cross_entropy", "softmax"),
    ("cross_entropy", "sigmoid"),
    ({"expr": "(yhat - y)**2 + yhat**4 / 8"}, "identity"),
    ({"expr": "(yhat - y)**2 + yhat**4 / 8"}, "softmax"),
    ({"expr": "-(y*log(yhat) + (1 - y)*log(1 - yhat))"}, "sigmoid"),
]


@pytest.mark.parametrize("layout", ["column", "row"])
@pytest.mark.parametrize("loss, output", PAIRINGS, ids=lambda v: str(v)[:12])
def test_every_loss_with_a_suitable_output(loss: Any, output: str, layout: str) -> None:
    arch = _arch("sigmoid", output, loss, layout=layout)
    _assert_verified(verify_arch(arch, simplify_seconds=0))


@pytest.mark.parametrize("layout", ["column", "row"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("l2", [0.0, 0.01])
def test_l2_reductions_layouts(l2: float, reduction: str, layout: str) -> None:
    arch = _arch(
        "tanh", "softmax", "cross_entropy", l2=l2, reduction=reduction, layout=layout, input=3
    )
    _assert_verified(verify_arch(arch, simplify_seconds=0))


def test_three_layers_with_a_single_output() -> None:
    layers = [
        {"units": 3, "activation": "elu"},
        {"units": 2, "activation": "swish"},
        {"units": 1, "activation": "sigmoid"},
    ]
    _assert_verified(verify_arch(_arch(layers=layers, loss="bce", l2=0.5), simplify_seconds=0))


@pytest.mark.parametrize("output, loss", [("softmax", "cross_entropy"), ("identity", "mse")])
def test_chain_rule_reference_agrees(output: str, loss: str) -> None:
    arch = _arch("sigmoid", output, loss, layout="row", l2=0.25)
    result = verify_arch(arch, reference="chain", simplify_seconds=0)
    _assert_verified(result)
    assert result.reference == "chain"


# ------------------------------------------------------------------ methods


def test_simplify_proves_a_tiny_network() -> None:
    arch = _arch(layers=[{"units": 2, "activation": "tanh"}], l2=0.5)
    result = verify_arch(arch, simplify_seconds=5)
    _assert_verified(result)
    assert {r.method for r in result.rows} == {"simplify"}


def test_rational_networks_are_checked_exactly() -> None:
    arch = _arch("relu", "identity", "mse", layout="row")
    result = verify_arch(arch, simplify_seconds=0, points=2)
    _assert_verified(result)
    assert {r.method for r in result.rows} == {"exact at 2 points"}
    assert all("max |difference| 0 " in r.detail for r in result.rows)


def test_transcendental_networks_use_60_digits() -> None:
    result = verify_arch(_arch("gelu", "sigmoid", "bce"), simplify_seconds=0, points=1)
    _assert_verified(result)
    assert {r.method for r in result.rows} == {"60-digit at 1 points"}


def test_deep_network_uses_the_chain_rule() -> None:
    result = verify_arch(load_arch(EXAMPLES_DIR / "c3_deep_tanh.yaml"), simplify_seconds=0)
    assert result.reference == "chain"
    seed = verify_arch(load_arch(EXAMPLES_DIR / "seed.yaml"), simplify_seconds=0)
    assert seed.reference == "nested"


def test_seed_changes_the_points_not_the_verdict() -> None:
    arch = _arch("softplus", "softmax", "cross_entropy")
    for seed in (1, 2):
        _assert_verified(verify_arch(arch, simplify_seconds=0, points=1, seed=seed))


# ------------------------------------------------------------------ tampering must fail


def test_tampered_output_dW_fails_only_there() -> None:
    result = verify_arch(_arch("tanh", "sigmoid", "bce"), tamper=_scaled_dW(2), simplify_seconds=0)
    assert not result.ok
    assert _failing(result) == ["W2"]
    row = next(r for r in result.rows if r.parameter == "W2")
    assert row.detail.startswith("W2[") and "reference" in row.detail and "symbp" in row.detail


def test_tampered_output_delta_fails_every_gradient_below() -> None:
    arch = _arch("tanh", "softmax", "cross_entropy", layout="row")
    result = verify_arch(arch, tamper=_flipped_delta(2), simplify_seconds=0)
    assert not result.ok
    assert _failing(result) == ["W1", "b1", "W2", "b2"]


def test_tampered_hidden_delta_fails_its_layer() -> None:
    arch = _arch("relu", "identity", "mse")
    result = verify_arch(arch, tamper=_flipped_delta(1), simplify_seconds=0)
    assert _failing(result) == ["W1", "b1"]


def test_tampering_is_caught_with_simplify_and_with_the_chain_rule() -> None:
    arch = _arch(layers=[{"units": 2, "activation": "tanh"}])
    with_simplify = verify_arch(arch, tamper=_scaled_dW(1, 3), simplify_seconds=2)
    assert _failing(with_simplify) == ["W1"]
    assert next(r for r in with_simplify.rows if r.parameter == "b1").method == "simplify"
    chain = verify_arch(_arch(), tamper=_flipped_delta(2), reference="chain", simplify_seconds=0)
    assert _failing(chain) == ["W1", "b1", "W2", "b2"]


def test_an_ir_the_code_cannot_compute_fails_every_row() -> None:
    tamper = _node_edit(2, delta=lambda delta: delta * sp.Symbol("k"))
    result = verify_arch(_arch(), tamper=tamper, simplify_seconds=0)
    assert _failing(result) == ["W1", "b1", "W2", "b2"]
    assert all("no scalar named 'k'" in r.detail for r in result.rows)


def test_a_wrongly_shaped_product_fails() -> None:
    tamper = _grad_edit(1, "W", lambda g: g.T)
    result = verify_arch(_arch(input=3), tamper=tamper, simplify_seconds=0)
    assert _failing(result) == ["W1"]
    assert result.rows[0].detail == "symbp's gradient has shape (3, 2), W1 (2, 3)"


def test_a_scaled_db_fails_as_the_printer_would_print_it() -> None:
    tamper = _grad_edit(2, "b", lambda g: 2 * g)
    result = verify_arch(_arch(), tamper=tamper, simplify_seconds=0)
    assert _failing(result) == ["b2"]  # the printer writes 2*delta2*1 as just "2"
    assert "broadcast of 2" in result.rows[3].detail


def test_piecewise_output_activation() -> None:
    _assert_verified(verify_arch(_arch("tanh", "relu", "mse"), simplify_seconds=0))


@pytest.mark.parametrize("row", [False, True])
def test_unit_sums_are_per_sample_in_either_layout(row: bool) -> None:
    z = sp.Matrix([[1, 2], [3, 4], [5, 6]])  # 3 units x 2 samples (column layout)
    mirror = verify._Mirror(row, 2, lambda v: v)
    mirror.env["Z"] = z.T if row else z
    zs = sp.Symbol("Z", real=True)
    sums = mirror.elementwise(UnitSum(zs), (2, 3) if row else (3, 2))
    lse = mirror.elementwise(LogSumExp(zs), (2, 3) if row else (3, 2))
    per_sample = [sp.Integer(9), sp.Integer(12)]
    expected = sp.Matrix(3, 2, lambda i, s: per_sample[s])
    assert sums == (expected.T if row else expected)
    assert lse[0, 0] == sp.log(sp.exp(1) + sp.exp(3) + sp.exp(5))


# ------------------------------------------------------------------ shrinking and options


def test_shrink_keeps_everything_but_the_widths() -> None:
    arch = load_arch(EXAMPLES_DIR / "mnist_mlp.yaml")
    small = shrink(arch, 3)
    assert small.layer_sizes == (3, 3, 3, 3)
    assert [l.activation for l in small.layers] == [l.activation for l in arch.layers]
    same = ("loss", "layout", "dtype", "reduction", "l2", "activations", "name")
    assert all(getattr(small, key) == getattr(arch, key) for key in same)
    seed = load_arch(EXAMPLES_DIR / "seed.yaml")
    assert shrink(seed, 3).layer_sizes == (2, 3, 1)
    assert shrink(seed, 4) is seed


@pytest.mark.parametrize(
    "options",
    [{"max_units": 0}, {"points": 0}, {"simplify_seconds": -1}, {"reference": "numeric"}],
)
def test_bad_options_raise(options: dict) -> None:
    with pytest.raises(VerifyError) as err:
        verify_arch(_arch(), **options)
    assert isinstance(err.value, SymbpError) and err.value.fix


def test_too_large_an_instance_is_refused() -> None:
    arch = _arch(input=400, layers=[{"units": 400, "activation": "tanh"}])
    with pytest.raises(VerifyError, match="too large"):
        verify_arch(arch, max_units=400)


def test_progress_reports_each_parameter() -> None:
    seen: list[str] = []
    verify_arch(_arch(), simplify_seconds=0, points=1, progress=seen.append)
    assert [m for m in seen if m.startswith("checking")] == [
        "checking W1", "checking b1", "checking W2", "checking b2",
    ]  # fmt: skip


def test_format_table_lists_every_row() -> None:
    result = verify_arch(_arch(), simplify_seconds=0, points=1)
    text = format_table(result)
    assert "reference: sympy.diff of the scalar loss" in text
    assert "sizes 2-2-2, n = 2 samples, column layout" in text
    for name, shape in [("W1", "2x2"), ("b1", "2x1"), ("W2", "2x2"), ("b2", "2x1")]:
        assert any(line.split()[:2] == [name, shape] for line in text.splitlines())


# ------------------------------------------------------------------ command line


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="symbp")
    verify.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_run_passes(capsys: pytest.CaptureFixture[str]) -> None:
    seed = str(EXAMPLES_DIR / "seed.yaml")
    args = _parse(["verify", seed, "--points", "2", "--seed", "4", "--simplify-seconds", "0"])
    assert (args.max_units, args.points, args.seed) == (3, 2, 4)
    assert verify.run(args) == 0
    out = capsys.readouterr()
    assert "verified: all 4 gradients proven equal to sympy.diff of the scalar loss" in out.out
    assert out.err == ""  # no progress when stderr is not a terminal


def test_cli_run_fails_on_a_tampered_derivation(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = verify.derive_network
    monkeypatch.setattr(verify, "derive_network", lambda d: _scaled_dW(1)(real(d)))
    args = _parse(["verify", str(EXAMPLES_DIR / "c2_seed_mse.yaml"), "--simplify-seconds", "0"])
    assert verify.run(args) == 1
    assert "FAILED: W1" in capsys.readouterr().out


def test_cli_missing_file_is_a_symbp_error(tmp_path: Path) -> None:
    with pytest.raises(SymbpError):
        verify.run(_parse(["verify", str(tmp_path / "missing.yaml")]))


# ------------------------------------------------------------------ graphs of every kind

GRAPH = {
    "name": "graph",
    "input": 2,
    "layers": [
        {"units": 2, "activation": "tanh", "name": "stem"},
        {"type": "layernorm", "activation": "sigmoid"},
        {"units": 2, "bias": False},
        {"type": "add", "from": "stem"},
        {"type": "batchnorm", "eps": 0.01, "activation": "tanh"},
        {"units": 2, "activation": "softmax"},
    ],
    "loss": "cross_entropy",
}


@pytest.mark.parametrize("layout", ["column", "row"])
def test_a_graph_of_every_kind_verifies(layout: str) -> None:
    result = verify_arch(arch_from_mapping({**GRAPH, "layout": layout}), simplify_seconds=0)
    _assert_verified(result)
    assert result.reference == "chain"
    assert {r.parameter for r in result.rows} >= {"gamma2", "beta2", "W3", "gamma5", "beta5"}
    assert "b3" not in {r.parameter for r in result.rows}


@pytest.mark.parametrize(
    ("tamper", "failing"),
    [
        # a layer norm's gamma gradient off by 1%: that row alone
        (_grad_edit(2, "gamma", lambda g: g * sp.Rational(101, 100)), ["gamma2"]),
        # the add sends -delta to its skip source (the stem): the stem's gradients fail
        (
            _node_edit(4, backs=lambda bs: tuple((t, -b if t.layer == 1 else b) for t, b in bs)),
            ["W1", "b1"],
        ),
        # batch norm's error term scaled: its own gradients and every one below it
        (
            _node_edit(5, delta=lambda d: 2 * d),
            ["W1", "b1", "gamma2", "beta2", "W3", "gamma5", "beta5"],
        ),
    ],
    ids=["layernorm-gamma", "add-skip", "batchnorm-delta"],
)
def test_tampering_a_graph_fails_where_it_should(tamper: Any, failing: list[str]) -> None:
    arch = arch_from_mapping(GRAPH)
    result = verify_arch(arch, tamper=tamper, simplify_seconds=0, points=1)
    assert _failing(result) == failing


def test_the_two_references_agree_on_a_small_graph() -> None:
    """sympy.diff of the whole loss and the reverse chain rule over the layer maps."""
    arch = arch_from_mapping(
        {
            "name": "g",
            "input": 2,
            "layers": [
                {"units": 2, "activation": "tanh", "name": "h"},
                {"type": "layernorm"},
                {"type": "add", "from": "h"},
                {"type": "batchnorm", "activation": "sigmoid"},
                {"units": 1, "activation": "identity"},
            ],
            "loss": "mse",
        }
    )
    for reference in ("nested", "chain"):
        result = verify_arch(arch, reference=reference, simplify_seconds=0, points=1)
        _assert_verified(result)
        assert result.reference == reference


def test_a_wrong_image_gradient_fails_verify() -> None:
    """The conv kernel's gradient read from the wrong array (the input's error instead of the
    layer's), and max pooling routed by the wrong array: both are caught."""
    from symbp.ir.image_ops import Conv2dBackKernel

    arch = load_arch(EXAMPLES_DIR / "lenet.yaml")

    def swap(network):
        nodes = list(network.nodes)
        conv = nodes[2]  # layer 3, conv2d
        (w, grad), *rest = conv.grads
        x, delta, g = grad.args
        wrong = Conv2dBackKernel(x, delta * 2, g)
        nodes[2] = dataclasses.replace(conv, grads=((w, wrong), *rest))
        return dataclasses.replace(network, nodes=tuple(nodes))

    result = verify_arch(arch, tamper=swap, simplify_seconds=0)
    assert not result.ok
    bad = [row.parameter for row in result.rows if not row.ok]
    assert bad == ["W3"], result.rows


def test_verify_refuses_what_it_does_not_cover(tmp_path: Path) -> None:
    """A flatten of a sequence (the rows change from n T to n): a clear refusal (exit 2)
    that names gradcheck, not a wrong verdict; every example verify skips is one."""
    from symbp.cli import main as cli

    for path in [p for p in EXAMPLES if not _verifiable(p)]:
        with pytest.raises(VerifyError, match="symbp gradcheck"):
            verify_arch(load_arch(path))
    seq = tmp_path / "flat.yaml"
    seq.write_text("input: [3, 2]\nlayers: [{type: flatten}, {units: 2}]\nloss: mse\n")
    assert cli(["verify", str(seq)]) == 2


ATTENTION_BLOCK = [
    {"units": 4, "name": "x0"},
    {"type": "layernorm"},
    {"type": "attention", "heads": 2, "causal": True},
    {"type": "add", "from": "x0", "activation": "tanh"},
    {"units": 3, "activation": "softmax"},
]


@pytest.mark.parametrize("causal", [True, False])
def test_attention_verifies_and_a_wrong_backward_step_fails(causal: bool) -> None:
    """Attention on 2 positions with 2 heads (causal or not) against the chain rule over
    sympy.diff of each layer written out from its definition; dK doubled must fail dWk and
    what flows below the layer through K, and nothing above it. (dbk is 0 either way: a
    key bias shifts a query's scores by one constant, which the softmax ignores; the same
    holds for what beta2 sends through the keys.)"""
    from symbp.ir.naming import Role

    layers = [dict(layer) for layer in ATTENTION_BLOCK]
    layers[2]["causal"] = causal
    arch = arch_from_mapping({"input": [3, 4], "layers": layers, "loss": "cross_entropy"})
    result = verify_arch(arch, simplify_seconds=0)
    _assert_verified(result)
    assert result.small_arch.layers[2].heads == 2 and result.small_arch.positions == 2

    def doubled(steps: tuple) -> tuple:
        return tuple((t, 2 * v if t.role == Role.D_KEY else v) for t, v in steps)

    bad = verify_arch(arch, simplify_seconds=0, tamper=_node_edit(3, backward_steps=doubled))
    assert {"Wk3", "W1", "b1", "gamma2"} <= set(_failing(bad))
    assert "bk3" not in _failing(bad)
    assert not {"Wq3", "Wv3", "Wo3", "W5", "b5"} & set(_failing(bad))


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "none"])
def test_token_embedding_verifies_with_a_tied_head(positions: str) -> None:
    """Token ids (repeated within the batch, so the scatter-add sums), every position mode,
    a tied LM head whose E gradient sums both uses, l2 on E; a wrong scatter fails E."""
    arch = arch_from_mapping({
        "input": {"tokens": 4, "vocab": 3},
        "layers": [{"type": "embedding", "dim": 2, "name": "emb", "positions": positions},
                   {"units": 2, "activation": "tanh"},
                   {"units": 3, "tie": "emb", "activation": "softmax"}],
        "loss": "cross_entropy", "l2": 0.1,
    })  # fmt: skip
    _assert_verified(verify_arch(arch, simplify_seconds=0))
    bad = verify_arch(arch, simplify_seconds=0, tamper=_grad_edit(1, "E", lambda g: 2 * g))
    assert _failing(bad) == ["E1"]


def test_recurrent_layers_verify_and_a_wrong_bptt_step_fails() -> None:
    """An lstm, a gru and a relu rnn on 2 positions against the chain rule over sympy.diff
    of each layer written out from PyTorch's equations (symbp.check.reference._recurrent);
    the mirror runs the cell's printed step statements. dL/du of the gru doubled must fail
    its W_ih and b_ih and everything below it, not its W_hh (which reads dL/dv) nor the
    layers above."""
    from symbp.ir.naming import Role

    arch = arch_from_mapping({
        "input": [3, 2],
        "layers": [{"type": "lstm", "units": 2}, {"type": "gru", "units": 2, "activation": "tanh"},
                   {"type": "rnn", "units": 2, "nonlinearity": "relu"}, {"units": 2}],
        "loss": "mse", "l2": 0.1,
    })  # fmt: skip
    _assert_verified(verify_arch(arch, simplify_seconds=0, points=1))

    def doubled(steps: tuple) -> tuple:
        return tuple((t, 2 * v if t.role == Role.D_GATES_IN else v) for t, v in steps)

    bad = verify_arch(arch, simplify_seconds=0, points=1,
                      tamper=_node_edit(2, backward_steps=doubled))  # fmt: skip
    assert {"Wih2", "bih2", "Wih1", "Whh1", "bih1", "bhh1"} <= set(_failing(bad))
    assert not {"Whh2", "bhh2", "Wih3", "Whh3", "W4", "b4"} & set(_failing(bad))
