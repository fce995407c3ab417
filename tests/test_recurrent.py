"""Recurrent layers (rnn, lstm, gru) by backpropagation through time, against PyTorch's
nn.RNN / nn.LSTM / nn.GRU with symbp's weights copied in (float64): the loss, every gradient,
jvp and hvp, for every kind, both `return` modes, with and without biases, stacked, after an
embedding; the array-API module under PyTorch and under jax.jit (a scan, whose traced program
does not grow with T); float32; large inputs; the file errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import make_arch
from test_sequences import _refused, _torch_loss, _torch_output

from symbp.check.gradcheck import import_path
from symbp.pipeline import generate, write_files
from symbp.symbolic.cells import CELLS, cell, check

T, D, N = 5, 3, 4


def _build(tmp_path, layers, *, targets=("numpy",), **doc):
    doc = {"name": "rec", "input": [T, D], "layers": layers, "loss": "mse", **doc}
    arch = make_arch(**doc)
    result = generate(arch, targets=targets)
    write_files(result.files, tmp_path)
    modules = [import_path(tmp_path / "rec.py")]
    if "array-api" in targets:
        modules.append(import_path(tmp_path / "rec_xp.py"))
    return arch, *modules


def _problem(module, X, out_shape, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        k: v + 0.2 * rng.standard_normal(v.shape) for k, v in module.init_params(seed).items()
    }
    return params, rng.standard_normal((N, *out_shape)), rng


def _against_torch(arch, module, params, X, Y, rng, rtol=1e-8) -> None:
    """Loss and gradients, jvp of the output and hvp of the loss against torch.autograd."""
    keys = list(params)
    Xt = torch.tensor(X)

    def loss(*values):
        named = dict(zip(keys, values, strict=True))
        decay = sum((named[k] ** 2).sum() for k in module.DECAYED) * float(arch.l2) / 2
        return _torch_loss(arch, named, Xt, torch.tensor(Y)) + decay

    primals = tuple(torch.tensor(params[k], requires_grad=True) for k in keys)
    want = loss(*primals)
    want.backward()
    L, grads = module.loss_and_grads(params, X, Y)
    np.testing.assert_allclose(L, want.item(), rtol=rtol)
    for k, p in zip(keys, primals, strict=True):
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=rtol, atol=1e-10, err_msg=k)
    direction = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    tangents = tuple(torch.tensor(direction[k]) for k in keys)
    plain = tuple(torch.tensor(params[k]) for k in keys)

    def output(*values):
        return _torch_output(arch, dict(zip(keys, values, strict=True)), Xt)

    _, out_dot = torch.autograd.functional.jvp(output, plain, tangents)
    np.testing.assert_allclose(module.jvp(params, X, direction)[1], out_dot.numpy(), rtol=rtol,
                               atol=1e-10)  # fmt: skip
    _, hv = torch.autograd.functional.hvp(loss, plain, tangents)
    got = module.hvp(params, X, Y, direction)
    for k, h in zip(keys, hv, strict=True):
        np.testing.assert_allclose(got[k], h.numpy(), rtol=1e-7, atol=1e-9, err_msg=k)


KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]


@pytest.mark.parametrize(("kind", "nonlinearity"), KINDS)
@pytest.mark.parametrize("returns", ["sequence", "last"])
@pytest.mark.parametrize("bias", [True, False])
def test_every_kind_matches_pytorch(tmp_path, kind, nonlinearity, returns, bias) -> None:
    layer = {"type": kind, "units": 4, "return": returns, "bias": bias}
    if nonlinearity:
        layer["nonlinearity"] = nonlinearity
    arch, module = _build(tmp_path, [layer, {"units": 2, "activation": "tanh"}], l2=0.01)
    X = np.random.default_rng(3).standard_normal((N, T, D))
    params, Y, rng = _problem(module, X, (T, 2) if returns == "sequence" else (2,))
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    assert ("bih1" in params) == bias and params["Whh1"].shape == (4 * gates, 4)
    _against_torch(arch, module, params, X, Y, rng)


def test_stacked_layers_after_an_embedding_match_pytorch(tmp_path) -> None:
    """tokens -> embedding -> lstm (sequence, tanh on its output) -> gru -> rnn relu (last)
    -> dense softmax, class ids; the NumPy module and the array-API module under PyTorch."""
    layers = [
        {"type": "embedding", "dim": 3},
        {"type": "lstm", "units": 4, "activation": "tanh"},
        {"type": "gru", "units": 3},
        {"type": "rnn", "units": 5, "nonlinearity": "relu", "return": "last"},
        {"units": 3, "activation": "softmax"},
    ]
    doc = {"input": {"tokens": T, "vocab": 7}, "loss": "cross_entropy"}
    arch, module, xp_module = _build(tmp_path, layers, targets=("numpy", "array-api"), **doc)
    rng = np.random.default_rng(5)
    X = rng.integers(0, 7, (N, T))
    params, _, rng = _problem(module, X, (3,))
    Y = np.eye(3)[rng.integers(0, 3, N)]
    _against_torch(arch, module, params, X, Y, rng)
    L, grads = module.loss_and_grads(params, X, Y)
    tp = {k: torch.tensor(v) for k, v in params.items()}
    L2, grads2 = xp_module.loss_and_grads(tp, torch.tensor(X), torch.tensor(Y))
    assert abs(float(L2) - L) < 1e-12
    for k in grads:
        np.testing.assert_allclose(grads2[k].numpy(), grads[k], rtol=1e-10, atol=1e-13)


def test_array_api_module_under_jax_jit_is_a_scan(tmp_path) -> None:
    """Under jax.jit the loops are lax.scan: the traced program has the same number of
    equations for T = 4 and T = 16 (a Python loop would repeat its body T times), and its
    gradients and hvp equal the NumPy module's."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    sizes = {}
    for positions in (4, 16):
        layers = [{"type": "lstm", "units": 3}, {"type": "gru", "units": 2, "return": "last"}]
        folder = tmp_path / f"T{positions}"
        arch, module, xp_module = _build(folder, layers, targets=("numpy", "array-api"),
                                         input=[positions, D])  # fmt: skip
        rng = np.random.default_rng(positions)
        X = rng.standard_normal((N, positions, D))
        params, Y, rng = _problem(module, X, (2,))
        direction = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        jp = {k: jnp.asarray(v) for k, v in params.items()}
        args = (jp, jnp.asarray(X), jnp.asarray(Y))
        sizes[positions] = len(jax.make_jaxpr(xp_module.loss_and_grads)(*args).eqns)
        assert "scan" in str(jax.make_jaxpr(xp_module.loss_and_grads)(*args))
        L, grads = jax.jit(xp_module.loss_and_grads)(*args)
        L0, grads0 = module.loss_and_grads(params, X, Y)
        assert abs(float(L) - L0) < 1e-12
        for k in grads0:
            np.testing.assert_allclose(np.asarray(grads[k]), grads0[k], rtol=1e-9, atol=1e-12)
        hv = jax.jit(xp_module.hvp)(*args, {k: jnp.asarray(v) for k, v in direction.items()})
        hv0 = module.hvp(params, X, Y, direction)
        for k in hv0:
            np.testing.assert_allclose(np.asarray(hv[k]), hv0[k], rtol=1e-8, atol=1e-11)
    assert sizes[4] == sizes[16]


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_float32_stays_float32_and_large_inputs_raise_nothing(tmp_path, kind) -> None:
    """dtype: float32 gives float32 gradients close to float64's; inputs x1000 (saturated
    gates) give finite values without a floating-point warning."""
    layers = [{"type": kind, "units": 4}, {"type": kind, "units": 3, "return": "last"},
              {"units": 2, "activation": "softmax"}]  # fmt: skip
    _, m64 = _build(tmp_path / "f64", layers, loss="cross_entropy")
    _, m32 = _build(tmp_path / "f32", layers, loss="cross_entropy", dtype="float32")
    rng = np.random.default_rng(9)
    X = rng.standard_normal((N, T, D))
    Y = np.eye(2)[rng.integers(0, 2, N)]
    params = m64.init_params(1)
    L64, g64 = m64.loss_and_grads(params, X, Y)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    L32, g32 = m32.loss_and_grads(p32, X.astype(np.float32), Y.astype(np.float32))
    assert abs(L32 - L64) < 1e-4
    for k in g64:
        assert g32[k].dtype == np.float32, k
        np.testing.assert_allclose(g32[k], g64[k], rtol=2e-3, atol=2e-5, err_msg=k)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        L, grads = m64.loss_and_grads(params, 1000 * X, Y)
        H = m64.hvp(params, 1000 * X, Y, params)
    assert np.isfinite(L) and all(np.isfinite(v).all() for v in (*grads.values(), *H.values()))


def test_gradients_match_central_differences(tmp_path) -> None:
    """The independent check: every gradient entry of a stacked lstm -> gru -> rnn network
    against central differences of the module's own loss (float64)."""
    layers = [{"type": "lstm", "units": 3}, {"type": "gru", "units": 2},
              {"type": "rnn", "units": 2, "return": "last"}, {"units": 2}]  # fmt: skip
    _, module = _build(tmp_path, layers)
    X = np.random.default_rng(4).standard_normal((2, T, D))
    params, _, rng = _problem(module, X, (2,))
    Y = rng.standard_normal((2, 2))
    _, grads = module.loss_and_grads(params, X, Y)
    step = 1e-6
    for k, value in params.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            up, down = {**params, k: value.copy()}, {**params, k: value.copy()}
            up[k][index] += step
            down[k][index] -= step
            numeric[index] = (module.loss(up, X, Y) - module.loss(down, X, Y)) / (2 * step)
        np.testing.assert_allclose(grads[k], numeric, rtol=1e-6, atol=1e-9, err_msg=k)


@pytest.mark.parametrize("name", CELLS)
def test_a_wrong_step_derivative_is_caught(name) -> None:
    """The check SymPy's step derivatives pass fails for a changed one (each cell)."""
    import dataclasses

    from symbp.errors import DerivationError

    good = cell(name)
    check(good)
    bad = dataclasses.replace(good)
    first = next(k for k, (_, e) in enumerate(good.adjoints) if e != 0 and k > 0)
    changed = list(good.adjoints)
    changed[first] = (changed[first][0], 2 * changed[first][1])
    bad.__dict__["adjoints"] = tuple(changed)
    with pytest.raises(DerivationError):
        check(bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input: 3\nlayers: [{type: lstm, units: 2}]\nloss: mse\n", "mixes the positions"),
        (
            "input: [1, 4, 4]\nlayout: row\nlayers: [{type: gru, units: 2}]\nloss: mse\n",
            "mixes the positions",
        ),
        ("input: [4, 2]\nlayers: [{type: rnn}]\nloss: mse\n", "units"),
        ("input: [4, 2]\nlayers: [{type: lstm, units: 2, return: first}]\nloss: mse\n", "return"),
        (
            "input: [4, 2]\nlayers: [{type: lstm, units: 2, nonlinearity: relu}]\nloss: mse\n",
            "nonlinearity",
        ),
        (
            "input: [4, 2]\nlayers: [{type: rnn, units: 2, nonlinearity: gelu}]\nloss: mse\n",
            "nonlinearity",
        ),
        (
            "input: [200000, 2]\nlayers: [{type: rnn, units: 1, return: last}]\nloss: mse\n",
            "one at a time",
        ),
        ("input: [1000, 2]\nlayers: [{type: lstm, units: 2000}]\nloss: mse\n", "values per"),
    ],
)
def test_recurrent_file_errors(tmp_path, capsys, text, message) -> None:
    assert message in _refused(tmp_path, capsys, "name: bad\n" + text)
