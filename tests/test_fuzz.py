"""Differential fuzzing in the suite (see tests/fuzzing.py), and the defects it stands for.

The random part is seeded (hypothesis derandomize): the same cases run in every CI run.
SYMBP_FUZZ_EXAMPLES sets their number; `python tests/fuzzing.py --examples 2000` is the
long run, with fresh random cases.
"""

from __future__ import annotations

import os
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzzing import (
    Outcome,
    architectures,
    check_case,
    graphs,
    image_graphs,
    reference,
    sequence_graphs,
)

EXAMPLES = int(os.environ.get("SYMBP_FUZZ_EXAMPLES", "150"))


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(doc=architectures(), seed=st.integers(0, 2**16))
def test_random_networks_and_expressions_match_an_independent_evaluation(
    tmp_path_factory: pytest.TempPathFactory, doc: dict, seed: int
) -> None:
    outcome = check_case(doc, tmp_path_factory.mktemp("fuzz"), seed)
    assert not outcome.problems, (doc, outcome.problems)


@settings(
    max_examples=int(os.environ.get("SYMBP_FUZZ_GRAPHS", "60")),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(doc=graphs(), seed=st.integers(0, 2**16))
def test_random_graphs_of_layer_kinds_match_an_independent_evaluation(
    tmp_path_factory: pytest.TempPathFactory, doc: dict, seed: int
) -> None:
    """Residual connections, layer and batch norm, bias-free dense layers, mixed."""
    outcome = check_case(doc, tmp_path_factory.mktemp("graph"), seed)
    assert not outcome.refused, (doc, outcome.refused)
    assert not outcome.problems, (doc, outcome.problems)


@settings(
    max_examples=int(os.environ.get("SYMBP_FUZZ_SEQUENCES", "25")),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(doc=sequence_graphs(), seed=st.integers(0, 2**16))
def test_random_sequence_networks_match_an_independent_evaluation(
    tmp_path_factory: pytest.TempPathFactory, doc: dict, seed: int
) -> None:
    """Sequences and token ids: embeddings (every position mode), attention (heads,
    causal, bias), dense at every position, layer norm, adds, tied heads; both targets,
    against the fuzzer's own attention and embedding on dual numbers."""
    outcome = check_case(doc, tmp_path_factory.mktemp("seq"), seed)
    assert not outcome.refused, (doc, outcome.refused)
    assert not outcome.problems, (doc, outcome.problems)


@settings(
    max_examples=int(os.environ.get("SYMBP_FUZZ_IMAGES", "30")),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(doc=image_graphs(), seed=st.integers(0, 2**16))
def test_random_cnns_match_an_independent_evaluation(
    tmp_path_factory: pytest.TempPathFactory, doc: dict, seed: int
) -> None:
    """conv2d (strides, padding, rectangular kernels), pooling, batch norm per channel,
    residual adds on images: against the fuzzer's own loops on dual numbers."""
    outcome = check_case(doc, tmp_path_factory.mktemp("cnn"), seed)
    assert not outcome.refused, (doc, outcome.refused)
    assert not outcome.problems, (doc, outcome.problems)


def _net(activation: str = "tanh", loss: object = "mse", output: str = "identity", **extra):
    doc = {
        "name": "fuzz",
        "input": 2,
        "layers": [{"units": 3, "activation": activation}, {"units": 2, "activation": output}],
        "loss": loss,
    }
    doc.update(extra)
    return doc


def _custom(text: str, **extra) -> dict:
    return _net("f", activations={"f": text}, **extra)


# Each class of defect the fuzz campaign of issue 13 found, as a file that showed it.
REGRESSIONS = {
    "constant inside sigmoid (activation)": _custom("x*sigmoid(e - 1)"),
    "constant inside sigmoid (loss)": _net(loss={"expr": "(yhat - y)**2 * sigmoid(pi + 1)"}),
    "constant sigmoid inside max": _net(loss={"expr": "max((yhat - y)**2, sigmoid(1))"}),
    "constants in activation and loss": _custom(
        "x*sigmoid(e - 1) + exp(sigmoid(2))", loss={"expr": "(yhat - y)**2*exp(sigmoid(pi))"}
    ),
    "constant activation x**0": _custom("x**0"),
    "constant activation 0*x": _custom("0*x"),
    "constant activation 1": _custom("1"),
    "constant activation x - x": _custom("x - x"),
    "constant activation pi": _custom("pi"),
    "constant activation exp(2/4)": _custom("exp(2/4)"),
    "constant output activation": _net("tanh", output="f", activations={"f": "exp(2/4)"}),
    "complex factorisation after softmax": _net(
        output="softmax", loss={"expr": "1/(1 + tanh(yhat)**2)"}
    ),
    "both branches evaluated: x*abs(x)": _custom("x*abs(x)"),
    "both branches evaluated: sqrt(max(x, 0))": _custom("sqrt(max(x, 0))"),
    "both branches evaluated: max(x, 0)**0.5": _custom("max(x, 0)**0.5"),
    "both branches evaluated: abs(x)**0.5": _custom("abs(x)**0.5"),
    "both branches evaluated: log(max(x, 1))": _custom("log(max(x, 1))"),
    "softmax + bce at large inputs": {
        "name": "fuzz",
        "input": 2,
        "layers": [{"units": 3, "activation": "softmax"}],
        "loss": "bce",
    },
    "mish tail: log of a rounded sigmoid": _custom("x*tanh(softplus(x))"),
    "cancellation in 1 - exp(-a): softplus output, cross-entropy, x1000": {
        "name": "fuzz",
        "input": 1,
        "layout": "row",
        "reduction": "sum",
        "l2": 0.1,
        "layers": [{"units": 2, "activation": "elu"}, {"units": 2, "activation": "softplus"}],
        "loss": "cross_entropy",
    },
    "sigmoid lower tail rounded to 0: a loss dividing by yhat at x1000": {
        "name": "fuzz",
        "input": 1,
        "reduction": "sum",
        "layers": [{"units": 3, "activation": "gelu"}, {"units": 3, "activation": "sigmoid"}],
        "loss": {"expr": "(atan(10) / -(yhat))"},
    },
    # attention's softmax VJP took its row sum as rowsum(dO O) (FlashAttention's identity):
    # equal to rowsum(dP P) in exact arithmetic, but rounded otherwise, so at inputs x1000
    # dP - rowsum no longer cancelled on a single position (dS must be 0 there)
    "attention row sum at large inputs": {
        "name": "fuzz",
        "input": [1, 3],
        "l2": 0.1,
        "layers": [
            {"type": "attention", "heads": 1, "causal": True, "name": "h0", "activation": "elu"},
            {"type": "add", "from": "h0", "activation": "elu"},
            {"type": "add", "from": "h0", "activation": "gelu"},
            {"units": 2, "bias": False, "activation": "identity"},
        ],
        "loss": "mse",
    },
    "gelu output error at large inputs": {
        "name": "fuzz",
        "input": 2,
        "layers": [{"units": 2, "activation": "gelu"}],
        "loss": "mse",
    },
    # A branch's guard was printed as SymPy's negation (sqrt(a) - y >= 0) instead of what
    # np.where tests (~(sqrt(a) - y < 0)); they differ where sqrt(a) is NaN (a < 0), so the
    # default branch read its guard's placeholder 1: a finite, wrong error term and hvp.
    "guard of the default branch where a condition is NaN": {
        "name": "fuzz",
        "input": 2,
        "layout": "row",
        "reduction": "sum",
        "layers": [
            {"units": 2, "activation": "tanh"},
            {"units": 2, "activation": "tanh"},
            {"units": 3, "activation": "leaky_relu"},
        ],
        "loss": {"expr": "max(y, sqrt(yhat))"},
    },
}


# The data seed that showed a defect, where seed 0 does not reach it.
SEEDS = {
    "cancellation in 1 - exp(-a): softplus output, cross-entropy, x1000": 567,
    "sigmoid lower tail rounded to 0: a loss dividing by yhat at x1000": 893,
    "guard of the default branch where a condition is NaN": 11358,
    "attention row sum at large inputs": 1,
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(tmp_path: Path, name: str) -> None:
    outcome = check_case(REGRESSIONS[name], tmp_path, SEEDS.get(name, 0))
    assert not outcome.refused, outcome.refused
    assert not outcome.problems, outcome.problems
    assert "values" in outcome.checked


def test_constant_sigmoid_activation_computes_its_value(tmp_path: Path) -> None:
    from tests.fuzzing import generate_module

    module, refused = generate_module(_custom("x*sigmoid(e - 1)"), tmp_path)
    assert not refused
    params = module.init_params(0)
    X = np.random.default_rng(0).standard_normal((2, 4))
    W1, b1 = params["W1"], params["b1"]
    hidden = (W1 @ X + b1) / (1 + np.exp(1 - np.e))  # 0.848 z
    expected = params["W2"] @ hidden + params["b2"]
    assert np.allclose(module.forward(params, X), expected, rtol=1e-12)


def test_the_checker_catches_a_wrong_module(tmp_path: Path, monkeypatch) -> None:
    """The fuzz check can fail: a module whose gradient is off by 1% is reported."""
    import symbp.pipeline as pipeline

    real = pipeline.render_files

    def tampered(arch, *args, **kwargs):
        files = real(arch, *args, **kwargs)
        name = f"{arch.name}.py"
        honest = 'grads = {"W1": dW1'
        assert honest in files[name], "the tampering no longer finds its line"
        files[name] = files[name].replace(honest, 'grads = {"W1": 1.01 * dW1')
        return files

    monkeypatch.setattr(pipeline, "render_files", tampered)
    outcome = check_case(_net(), tmp_path)
    assert any("gradient W1 differs" in p for p in outcome.problems), outcome.problems


def test_the_reference_is_independent_and_right() -> None:
    """The dual-number reference agrees with central differences of itself."""
    doc = _custom("x*tanh(softplus(x)) + abs(x)**0.5", output="softmax", loss="bce")
    rng = np.random.default_rng(3)
    params = {
        "W1": rng.standard_normal((3, 2)),
        "b1": rng.standard_normal((3, 1)),
        "W2": rng.standard_normal((2, 3)),
        "b2": rng.standard_normal((2, 1)),
    }
    X, Y = rng.standard_normal((2, 4)), rng.uniform(0.1, 0.9, (2, 4))
    v = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    _, loss = reference(doc, params, X, Y, v)
    h = 1e-6
    up = reference(doc, {k: p + h * v[k] for k, p in params.items()}, X, Y)[1].v
    down = reference(doc, {k: p - h * v[k] for k, p in params.items()}, X, Y)[1].v
    assert abs(float(loss.t) - float(up - down) / (2 * h)) < 1e-6 * max(1, abs(float(loss.t)))
    assert isinstance(Outcome(), Outcome)


# Issue 18: two cases the scaled runs (inputs x1000) missed, kept as explicit cases.
SCALED_CASES = {
    # bce after a softmax: the error term was NaN once 1 - a rounded to 0 (a logit gap
    # of ~38 in float64); the scaled check used to skip this pair as a known limit.
    "softmax_bce": {
        "name": "fuzz",
        "input": 2,
        "layers": [{"units": 3, "activation": "identity"}, {"units": 4, "activation": "softmax"}],
        "loss": "bce",
        "layout": "row",
    },
    # cross-entropy after a softplus: log a was taken of a softplus that underflows
    # (loss 152.284 against 152.433, `python tests/fuzzing.py --examples 200 --seed 9494`).
    "softplus_ce": {
        "name": "fuzz",
        "input": 1,
        "layers": [{"units": 3, "activation": "identity"}, {"units": 2, "activation": "softplus"}],
        "loss": "cross_entropy",
        "layout": "row",
        "reduction": "mean",
        "l2": 0.1,
    },
}


@pytest.mark.parametrize("case", sorted(SCALED_CASES))
@pytest.mark.parametrize("seed", [0, 1, 2, 6102])
def test_scaled_inputs_after_softmax_bce_and_softplus_ce(tmp_path: Path, case: str, seed: int):
    outcome = check_case(SCALED_CASES[case], tmp_path, seed)
    assert not outcome.problems, outcome.problems
    assert "large" in outcome.checked, outcome.checked
