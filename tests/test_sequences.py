"""Sequence inputs (T, d): dense, layer norm, residual add and every activation act at each
position, the loss sums each position's units; checked against PyTorch autograd (float64)
for the loss, the gradients, jvp and hvp, on the NumPy module and the array-API module,
with one-hot and class-id targets; the file errors a sequence network can make."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_arch

from symbp.check.gradcheck import import_path
from symbp.cli import main
from symbp.pipeline import generate, write_files

T, D, N = 5, 3, 4

RESIDUAL = [
    {"units": 4, "activation": "tanh", "name": "h"},
    {"type": "layernorm"},
    {"type": "add", "from": "h"},
    {"units": 6, "activation": "gelu"},
    {"units": 4, "bias": False, "activation": "sigmoid"},
    {"type": "add", "from": "h", "activation": "relu"},
    {"type": "layernorm"},
    {"units": 3, "activation": "softmax"},
]

_TORCH_ACTIVATIONS = {
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "softmax": lambda x: torch.softmax(x, dim=-1),
}


def _modules(tmp_path, **overrides):
    arch = make_arch(name="seq", input=[T, D], layers=RESIDUAL, loss="cross_entropy", **overrides)
    result = generate(arch, targets=("numpy", "array-api"))
    write_files(result.files, tmp_path)
    return arch, import_path(tmp_path / "seq.py"), import_path(tmp_path / "seq_xp.py")


def _torch_loss(arch, params: dict, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """The loss of _torch_output's output: each position's units summed, mean over n*T
    (over n when a flatten made the output a vector)."""
    a = _torch_output(arch, params, X)
    if arch.loss.kind == "cross_entropy":
        per_position = -(Y * torch.log(a)).sum(-1)
    else:
        per_position = 0.5 * ((a - Y) ** 2).sum(-1)
    total = per_position.sum()
    return total / a[..., 0].numel() if arch.reduction == "mean" else total


def _problem(module, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        k: v + 0.3 * rng.standard_normal(v.shape) for k, v in module.init_params(seed).items()
    }
    X = rng.standard_normal((N, T, D))
    ids = rng.integers(0, 3, (N, T))
    return params, X, ids, np.eye(3)[ids]


def _torch(params):
    return {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
    return _modules(tmp_path_factory.mktemp("seq"))


def test_loss_and_gradients_match_pytorch(residual) -> None:
    arch, module, _ = residual
    params, X, ids, onehot = _problem(module)
    tp = _torch(params)
    expected = _torch_loss(arch, tp, torch.tensor(X), torch.tensor(onehot))
    expected.backward()
    for Y in (ids, onehot):
        value, grads = module.loss_and_grads(params, X, Y)
        assert value == pytest.approx(expected.item(), rel=1e-10)
        for key, g in grads.items():
            np.testing.assert_allclose(g, tp[key].grad.numpy(), rtol=1e-8, atol=1e-10)
    assert module.forward(params, X).shape == (N, T, 3)
    assert module.loss(params, X, ids) == pytest.approx(expected.item(), rel=1e-10)


def test_workspace_training_and_bad_targets(residual) -> None:
    _, module, _ = residual
    params, X, ids, _ = _problem(module, seed=1)
    value, grads = module.loss_and_grads(params, X, ids)
    ws = module.make_workspace(N)
    value_ws, grads_ws = module.loss_and_grads(params, X, ids, ws)
    assert value_ws == pytest.approx(value, rel=1e-12)
    for key in grads:
        np.testing.assert_allclose(grads_ws[key], grads[key], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 3\)"):
        module.loss(params, X, ids + 3)
    with pytest.raises(ValueError, match=r"shape \(n, 5, 3\)"):
        module.forward(params, X[:, :, :2])
    losses = []
    module.train(
        params, X, ids, 30, 0.05, batch_size=3, optimizer="adam",
        callback=lambda epoch, p, s, loss: losses.append(loss),
    )  # fmt: skip
    assert losses[-1] < 0.7 * losses[0]


def test_jvp_and_hvp_match_pytorch(residual) -> None:
    arch, module, _ = residual
    params, X, _, onehot = _problem(module, seed=2)
    rng = np.random.default_rng(3)
    direction = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    keys = list(params)

    def forward(*values):
        return _torch_output(arch, dict(zip(keys, values, strict=True)), torch.tensor(X))

    primals = tuple(torch.tensor(params[k]) for k in keys)
    tangents = tuple(torch.tensor(direction[k]) for k in keys)
    _, expected = torch.func.jvp(forward, primals, tangents)
    _, got = module.jvp(params, X, direction)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-8, atol=1e-10)

    def loss(*values):
        return _torch_loss(arch, dict(zip(keys, values, strict=True)), torch.tensor(X),
                           torch.tensor(onehot))  # fmt: skip

    _, hv = torch.func.jvp(torch.func.grad(loss, argnums=tuple(range(len(keys)))), primals,
                           tangents)  # fmt: skip
    got_h = module.hvp(params, X, onehot, direction)
    for k, h in zip(keys, hv, strict=True):
        np.testing.assert_allclose(got_h[k], h.numpy(), rtol=1e-7, atol=1e-9)


def _torch_output(arch, params, X):
    """The network written with PyTorch's functions, layer by layer: its output."""
    outputs = {"input": X}
    a = X
    for l, layer in enumerate(arch.layers, start=1):
        if layer.type == "embedding":
            a = F.embedding(X, params[f"E{l}"]) + _torch_positions(layer, params, l, X.shape[1])
        elif layer.type == "attention":
            a = _torch_attention(layer, params, l, a)
        elif layer.type == "dense" and layer.tie:
            owner = arch.layer_index[layer.tie]
            a = F.linear(a, params[f"E{owner}"], params.get(f"b{l}"))
        elif layer.type == "dense":
            a = F.linear(a, params[f"W{l}"], params.get(f"b{l}"))
        elif layer.type == "layernorm":
            a = F.layer_norm(a, a.shape[-1:], params[f"gamma{l}"], params[f"beta{l}"], layer.eps)
        elif layer.type == "add":
            a = a + outputs[layer.source]
        elif layer.type == "flatten":
            a = torch.flatten(a, 1)
        elif layer.type in _TORCH_RECURRENT:
            a = _torch_recurrent(layer, params, l, a)
        elif layer.type == "batchnorm":
            a = F.batch_norm(a, None, None, params[f"gamma{l}"], params[f"beta{l}"], True,
                             eps=layer.eps)  # fmt: skip
        a = _TORCH_ACTIVATIONS[layer.activation](a)
        if layer.name:
            outputs[layer.name] = a
    return a


_TORCH_RECURRENT = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def _torch_recurrent(layer, params, l, x):
    """torch.nn.RNN / LSTM / GRU (batch_first, one layer) with symbp's parameters as its
    weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0: every step's h, or the last's."""
    options = {"nonlinearity": layer.nonlinearity} if layer.type == "rnn" else {}
    module = _TORCH_RECURRENT[layer.type](x.shape[-1], layer.out_shape[-1], batch_first=True,
                                          bias=layer.bias, dtype=x.dtype, **options)  # fmt: skip
    weights = {"weight_ih_l0": params[f"Wih{l}"], "weight_hh_l0": params[f"Whh{l}"]}
    if layer.bias:
        weights |= {"bias_ih_l0": params[f"bih{l}"], "bias_hh_l0": params[f"bhh{l}"]}
    out = torch.func.functional_call(module, weights, (x,))[0]
    return out[:, -1] if layer.returns == "last" else out


def _torch_attention(layer, params, l, x):
    """torch.nn.MultiheadAttention's own function, with in_proj = cat(Wq, Wk, Wv) and a
    causal mask (True above the diagonal: not attended); need_weights takes its explicit
    (unfused) path, which forward-mode AD supports."""
    d = x.shape[-1]
    w = torch.cat([params[f"W{p}{l}"] for p in "qkv"])
    b = torch.cat([params[f"b{p}{l}"] for p in "qkv"]) if layer.bias else None
    mask = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool), 1)
    out, _ = F.multi_head_attention_forward(
        x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), d, layer.heads, w, b,
        None, None, False, 0.0, params[f"Wo{l}"], params.get(f"bo{l}"), training=False,
        need_weights=True, attn_mask=mask if layer.causal else None,
    )  # fmt: skip
    return out.transpose(0, 1)


def _torch_positions(layer, params, l, T):
    """Learned P, Vaswani's sinusoids (written here from the paper's formula), or none."""
    if layer.positions == "learned":
        return params[f"P{l}"]
    if layer.positions == "none":
        return 0.0
    dim = layer.out_shape[-1]
    t = torch.arange(T, dtype=torch.float64)[:, None]
    i = torch.arange(dim, dtype=torch.float64)
    angle = t / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.floor(i / 2) / dim)
    return torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_array_api_module_matches(tmp_path, loss, reduction) -> None:
    """Both losses and reductions, the NumPy module and the array-API module on PyTorch."""
    layers = RESIDUAL if loss == "cross_entropy" else [*RESIDUAL[:-1], {"units": 3}]
    arch = make_arch(name="seq", input=[T, D], layers=layers, loss=loss, reduction=reduction)
    write_files(generate(arch, targets=("numpy", "array-api")).files, tmp_path)
    module, xp_module = import_path(tmp_path / "seq.py"), import_path(tmp_path / "seq_xp.py")
    params, X, ids, onehot = _problem(module, seed=4)
    tp = _torch(params)
    expected = _torch_loss(arch, tp, torch.tensor(X), torch.tensor(onehot))
    expected.backward()
    value, grads = module.loss_and_grads(params, X, onehot)
    assert value == pytest.approx(expected.item(), rel=1e-10)
    targets = (ids, onehot) if loss == "cross_entropy" else (onehot,)
    for Y in targets:
        tvalue, tgrads = xp_module.loss_and_grads(
            {k: torch.tensor(v) for k, v in params.items()}, torch.tensor(X), torch.tensor(Y)
        )
        assert float(tvalue) == pytest.approx(expected.item(), rel=1e-10)
        for key in grads:
            np.testing.assert_allclose(tgrads[key].numpy(), tp[key].grad.numpy(), rtol=1e-8,
                                       atol=1e-10)  # fmt: skip
    assert tuple(xp_module.forward(params, X).shape) == (N, T, 3)


def _refused(tmp_path, capsys, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["generate", str(path), "-o", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bad.yaml:" in err
    return err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("layout: column\ninput: [4, 2]\nlayers: [{units: 2}]\nloss: mse\n", "is row layout"),
        ("input: [4, 2]\nlayers: [{type: batchnorm}]\nloss: mse\n", "use  type: layernorm"),
        (
            "input: [4, 2]\nlayers: [{type: conv2d, filters: 2, kernel: 1}]\nloss: mse\n",
            "its input is the sequence [4, 2]",
        ),
        ("input: [4, 2]\nlayers: [{type: maxpool2d, size: 2}]\nloss: mse\n", "is the sequence"),
        (
            "input: [4, 2]\nlayers: [{type: flatten}, {type: attention}]\nloss: mse\n",
            "its input is the vector (8,)",
        ),
        ("input: [4, 2, 3, 1]\nlayers: [{units: 2}]\nloss: mse\n", "a sequence input is [T, d]"),
        ("input: [4000, 300]\nlayers: [{units: 2}]\nloss: mse\n", "use a smaller sequence"),
        ("input: [4, 2]\nlayers: [{units: 400000}]\nloss: mse\n", "use fewer units"),
        ("input: {tokens: 4, vocab: 9}\nlayers: [{units: 2}]\nloss: mse\n", "add an embedding"),
        ("input: [4, 2]\nlayers: [{type: embedding, dim: 2}]\nloss: mse\n", "token input"),
        (
            "input: {tokens: 4, vocab: 9}\nlayers: [{type: embedding, dim: 2}, "
            "{type: embedding, dim: 2}]\nloss: mse\n",
            "keep one embedding",
        ),
        (
            "input: {tokens: 4, vocab: 9}\nlayers: [{type: embedding, dim: 2, name: e}, "
            "{units: 8, tie: e}]\nloss: mse\n",
            "needs units: 9",
        ),
        (
            "input: {tokens: 4, vocab: 9}\nlayers: [{type: embedding, dim: 2, name: e}, "
            "{units: 9, tie: nothing}]\nloss: mse\n",
            "not an earlier embedding",
        ),
        ("input: {tokens: 0, vocab: 9}\nlayers: [{units: 2}]\nloss: mse\n", "input.tokens"),
        ("input: {tokens: 4}\nlayers: [{units: 2}]\nloss: mse\n", "vocab"),
        (
            "input: [4, 6]\nlayers: [{type: attention, heads: 4}]\nloss: mse\n",
            "use one of 1, 2, 3, 6",
        ),
        ("input: 6\nlayers: [{type: attention}]\nloss: mse\n", "its input is the vector"),
        ("input: [4, 6]\nlayers: [{type: attention, causal: 1}]\nloss: mse\n", "causal must be"),
        ("input: [4, 6]\nlayers: [{type: attention, units: 6}]\nloss: mse\n", "takes no units"),
        (
            "input: [3000, 6]\nlayers: [{type: attention, heads: 2}]\nloss: mse\n",
            "scores per sample",
        ),
        (
            "input: {tokens: 4, vocab: 9}\nlayers: [{type: embedding, dim: 2, "
            "positions: rotary}]\nloss: mse\n",
            "positions",
        ),
    ],
)
def test_sequence_file_errors(tmp_path, capsys, text, message) -> None:
    assert message in _refused(tmp_path, capsys, text)


def test_array_api_module_under_jax_jit(residual) -> None:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    _, module, xp_module = residual
    params, X, ids, _ = _problem(module, seed=5)
    value, grads = module.loss_and_grads(params, X, ids)
    jp = {k: jax.numpy.asarray(v) for k, v in params.items()}
    jvalue, jgrads = jax.jit(xp_module.loss_and_grads)(jp, jax.numpy.asarray(X),
                                                       jax.numpy.asarray(ids))  # fmt: skip
    assert float(jvalue) == pytest.approx(value, rel=1e-10)
    for key in grads:
        np.testing.assert_allclose(np.asarray(jgrads[key]), grads[key], rtol=1e-8, atol=1e-10)


V = 11


def _token_layers(positions: str, dim: int, tie: bool) -> list:
    head = {"units": V, "activation": "softmax"}
    return [
        {"type": "embedding", "dim": dim, "positions": positions, "name": "emb"},
        {"type": "layernorm"},
        {"units": 5, "activation": "gelu_tanh"},
        {"units": dim, "name": "mix"},
        {"type": "add", "from": "emb"},
        {**head, "tie": "emb"} if tie else head,
    ]


@pytest.mark.parametrize(
    ("positions", "dim", "tie", "l2"),
    [
        ("learned", 6, False, 0.0),
        ("sinusoidal", 5, False, 0.0),
        ("none", 6, False, 0.0),
        ("learned", 5, True, 0.01),
        ("sinusoidal", 6, True, 0.0),
    ],
)
def test_token_embedding_matches_pytorch(tmp_path, positions, dim, tie, l2) -> None:
    """Every position mode (odd dim too), a tied LM head whose E gradient sums both uses,
    l2 on E and P; duplicate tokens in every batch (n T = 32 ids of 11)."""
    layers = _token_layers(positions, dim, tie)
    arch = make_arch(name="tok", input={"tokens": T, "vocab": V}, layers=layers,
                     loss="cross_entropy", l2=l2)  # fmt: skip
    write_files(generate(arch, targets=("numpy", "array-api")).files, tmp_path)
    module, xp_module = import_path(tmp_path / "tok.py"), import_path(tmp_path / "tok_xp.py")
    rng = np.random.default_rng(6)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in module.init_params(0).items()}
    assert ("P1" in params) == (positions == "learned") and ("W6" in params) == (not tie)
    X, ids = rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))
    tp = _torch(params)
    expected = _torch_loss(arch, tp, torch.tensor(X), torch.tensor(np.eye(V)[ids]))
    expected = expected + (l2 / 2) * sum((tp[k] ** 2).sum() for k in tp if k[0] in "WEP")
    expected.backward()
    value, grads = module.loss_and_grads(params, X, ids)
    assert value == pytest.approx(expected.item(), rel=1e-10)
    tvalue, tgrads = xp_module.loss_and_grads(_torch(params), torch.tensor(X), torch.tensor(ids))
    assert float(tvalue.detach()) == pytest.approx(expected.item(), rel=1e-10)
    for key in params:
        np.testing.assert_allclose(grads[key], tp[key].grad.numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(tgrads[key].detach().numpy(), tp[key].grad.numpy(),
                                   rtol=1e-8, atol=1e-10)  # fmt: skip
    # forward mode and the R-operator against PyTorch's
    keys = list(params)

    def loss(*values):
        tp = dict(zip(keys, values, strict=True))
        value = _torch_loss(arch, tp, torch.tensor(X), torch.tensor(np.eye(V)[ids]))
        return value + (l2 / 2) * sum((tp[k] ** 2).sum() for k in tp if k[0] in "WEP")

    _jvp_hvp_match_torch(arch, module, params, X, ids, loss, rng)


def test_token_ids_are_checked(tmp_path) -> None:
    arch = make_arch(name="tok", input={"tokens": T, "vocab": V},
                     layers=_token_layers("learned", 4, True), loss="cross_entropy")  # fmt: skip
    write_files(generate(arch).files, tmp_path)
    module = import_path(tmp_path / "tok.py")
    params = module.init_params(0)
    ids = np.zeros((2, T), dtype=int)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 11\)"):
        module.forward(params, ids + V)
    with pytest.raises(ValueError, match="token ids must be integers"):
        module.forward(params, ids.astype(float))
    assert module.forward(params, ids).shape == (2, T, V)


D_MODEL = 6


def _block(heads: int, causal: bool, bias: bool) -> list:
    """A pre-LN transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""
    return [
        {"units": D_MODEL, "name": "x0"},
        {"type": "layernorm"},
        {"type": "attention", "heads": heads, "causal": causal, "bias": bias},
        {"type": "add", "from": "x0", "name": "x1"},
        {"type": "layernorm"},
        {"units": 8, "activation": "gelu_tanh"},
        {"units": D_MODEL},
        {"type": "add", "from": "x1"},
        {"units": 3, "activation": "softmax"},
    ]


@pytest.mark.parametrize(
    ("heads", "causal", "bias"),
    [(1, False, True), (2, True, True), (3, True, False), (6, False, False)],
)
def test_attention_block_matches_pytorch(tmp_path, heads, causal, bias) -> None:
    """A pre-LN block with residuals: loss, gradients (both targets), jvp and hvp against
    torch.nn.functional.multi_head_attention_forward and autograd, float64."""
    arch = make_arch(name="att", input=[T, D], layers=_block(heads, causal, bias),
                     loss="cross_entropy", l2=0.01)  # fmt: skip
    write_files(generate(arch, targets=("numpy", "array-api")).files, tmp_path)
    module, xp_module = import_path(tmp_path / "att.py"), import_path(tmp_path / "att_xp.py")
    rng = np.random.default_rng(heads)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in module.init_params(0).items()}
    X, ids = rng.standard_normal((N, T, D)), rng.integers(0, 3, (N, T))
    Y = np.eye(3)[ids]
    keys = list(params)

    def loss(*values):
        tp = dict(zip(keys, values, strict=True))
        value = _torch_loss(arch, tp, torch.tensor(X), torch.tensor(Y))
        return value + 0.005 * sum((tp[k] ** 2).sum() for k in tp if k[0] == "W")

    tp = _torch(params)
    expected = loss(*tp.values())
    expected.backward()
    value, grads = module.loss_and_grads(params, X, ids)
    assert value == pytest.approx(expected.item(), rel=1e-10)
    tvalue, tgrads = xp_module.loss_and_grads(_torch(params), torch.tensor(X), torch.tensor(ids))
    assert float(tvalue.detach()) == pytest.approx(expected.item(), rel=1e-10)
    for key in params:
        np.testing.assert_allclose(grads[key], tp[key].grad.numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(tgrads[key].detach().numpy(), tp[key].grad.numpy(),
                                   rtol=1e-8, atol=1e-10)  # fmt: skip
    _jvp_hvp_match_torch(arch, module, params, X, ids, loss, rng)


def test_attention_under_jax_jit_and_in_float32(tmp_path) -> None:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    arch = make_arch(name="att", input=[T, D], layers=_block(2, True, True), loss="cross_entropy")
    write_files(generate(arch, targets=("numpy", "array-api")).files, tmp_path)
    module, xp_module = import_path(tmp_path / "att.py"), import_path(tmp_path / "att_xp.py")
    rng = np.random.default_rng(9)
    params = module.init_params(1)
    X, ids = rng.standard_normal((N, T, D)), rng.integers(0, 3, (N, T))
    value, grads = module.loss_and_grads(params, X, ids)
    jp = {k: jax.numpy.asarray(v) for k, v in params.items()}
    jvalue, jgrads = jax.jit(xp_module.loss_and_grads)(jp, jax.numpy.asarray(X),
                                                       jax.numpy.asarray(ids))  # fmt: skip
    assert float(jvalue) == pytest.approx(value, rel=1e-10)
    for key in grads:
        np.testing.assert_allclose(np.asarray(jgrads[key]), grads[key], rtol=1e-8, atol=1e-10)
    arch32 = make_arch(name="att32", input=[T, D], layers=_block(2, True, True),
                       loss="cross_entropy", dtype="float32")  # fmt: skip
    write_files(generate(arch32).files, tmp_path)
    module32 = import_path(tmp_path / "att32.py")
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    with np.errstate(all="raise"):
        value32, grads32 = module32.loss_and_grads(p32, X.astype(np.float32), ids)
    assert value32 == pytest.approx(value, rel=1e-5)
    for key in grads:
        assert grads32[key].dtype == np.float32
        np.testing.assert_allclose(grads32[key], grads[key], rtol=2e-3, atol=2e-5)


def _jvp_hvp_match_torch(arch, module, params, X, targets, loss, rng) -> None:
    """module.jvp against torch.func.jvp of the network's output, module.hvp against the
    forward-mode derivative of torch.func.grad of `loss` (a function of the parameters in
    the order of params), along one random direction."""
    keys = list(params)
    direction = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    primals = tuple(torch.tensor(params[k]) for k in keys)
    tangents = tuple(torch.tensor(direction[k]) for k in keys)

    def output(*values):
        return _torch_output(arch, dict(zip(keys, values, strict=True)), torch.tensor(X))

    _, out_dot = torch.func.jvp(output, primals, tangents)
    np.testing.assert_allclose(module.jvp(params, X, direction)[1], out_dot.numpy(), rtol=1e-8,
                               atol=1e-10)  # fmt: skip
    _, hv = torch.func.jvp(torch.func.grad(loss, argnums=tuple(range(len(keys)))), primals,
                           tangents)  # fmt: skip
    got = module.hvp(params, X, targets, direction)
    for k, h in zip(keys, hv, strict=True):
        np.testing.assert_allclose(got[k], h.numpy(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("tokens", [True, False])
def test_flatten_of_a_sequence_matches_pytorch(tmp_path, tokens) -> None:
    """A sequence classifier: positions mixed by attention, then flatten (T*d per sample, the
    rows change from n*T to n), dense, a batch norm over the n samples and a softmax;
    class ids (n,) or one-hot targets; loss, gradients (both targets, with and without a
    workspace), jvp and hvp against PyTorch."""
    first = [{"type": "embedding", "dim": D_MODEL}] if tokens else []
    layers = [*first, *_block(2, True, True)[:-1], {"type": "flatten"},
              {"units": 4, "activation": "relu"}, {"type": "batchnorm"},
              {"units": 3, "activation": "softmax"}]  # fmt: skip
    source = {"tokens": T, "vocab": V} if tokens else [T, D]
    arch = make_arch(name="cls", input=source, layers=layers, loss="cross_entropy")
    write_files(generate(arch, targets=("numpy", "array-api")).files, tmp_path)
    module, xp_module = import_path(tmp_path / "cls.py"), import_path(tmp_path / "cls_xp.py")
    rng = np.random.default_rng(11)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in module.init_params(0).items()}
    X = rng.integers(0, V, (N, T)) if tokens else rng.standard_normal((N, T, D))
    ids = rng.integers(0, 3, N)
    tp = _torch(params)
    expected = _torch_loss(arch, tp, torch.tensor(X), torch.tensor(np.eye(3)[ids]))
    expected.backward()
    assert module.forward(params, X).shape == (N, 3)
    for Y in (ids, np.eye(3)[ids]):
        value, grads = module.loss_and_grads(params, X, Y)
        value_ws, grads_ws = module.loss_and_grads(params, X, Y, module.make_workspace(N))
        assert value == pytest.approx(expected.item(), rel=1e-10) and value_ws == value
        for key in params:
            np.testing.assert_allclose(grads[key], tp[key].grad.numpy(), rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(grads_ws[key], grads[key], rtol=1e-13, atol=1e-15)
    tvalue, tgrads = xp_module.loss_and_grads(_torch(params), torch.tensor(X), torch.tensor(ids))
    assert float(tvalue.detach()) == pytest.approx(expected.item(), rel=1e-10)
    for key in params:
        np.testing.assert_allclose(tgrads[key].detach().numpy(), tp[key].grad.numpy(),
                                   rtol=1e-8, atol=1e-10)  # fmt: skip
    keys = list(params)

    def loss(*values):
        tp = dict(zip(keys, values, strict=True))
        return _torch_loss(arch, tp, torch.tensor(X), torch.tensor(np.eye(3)[ids]))

    _jvp_hvp_match_torch(arch, module, params, X, ids, loss, rng)


@pytest.mark.parametrize("sequence", [True, False])
def test_softmax_on_a_hidden_layer_matches_pytorch(tmp_path, sequence) -> None:
    """softmax on hidden layers (over the last axis: each position of a sequence, each sample
    of a vector), its error term SymPy's sum of the Jacobian against G: loss, gradients
    (with and without a workspace; the array-API module on torch), jvp and hvp."""
    layers = [{"units": 5, "activation": "softmax", "name": "p"}, {"units": 5},
              {"type": "add", "from": "p", "activation": "softmax"},
              {"units": 4, "activation": "tanh"},
              {"units": 3, "activation": "softmax"}]  # fmt: skip
    arch = make_arch(name="hs", input=[T, D] if sequence else D, layers=layers,
                     loss="cross_entropy", layout="row")  # fmt: skip
    write_files(generate(arch, targets=("numpy", "array-api")).files, tmp_path)
    module, xp_module = import_path(tmp_path / "hs.py"), import_path(tmp_path / "hs_xp.py")
    rng = np.random.default_rng(4)
    params = {k: v + 0.5 * rng.standard_normal(v.shape) for k, v in module.init_params(0).items()}
    X = rng.standard_normal((N, T, D) if sequence else (N, D))
    ids = rng.integers(0, 3, (N, T) if sequence else N)
    Y = np.eye(3)[ids]
    tp = _torch(params)
    expected = _torch_loss(arch, tp, torch.tensor(X), torch.tensor(Y))
    expected.backward()
    value, grads = module.loss_and_grads(params, X, Y)
    value_ws, grads_ws = module.loss_and_grads(params, X, Y, module.make_workspace(N))
    tvalue, tgrads = xp_module.loss_and_grads(_torch(params), torch.tensor(X), torch.tensor(Y))
    assert value == pytest.approx(expected.item(), rel=1e-10) and value_ws == value
    assert float(tvalue.detach()) == pytest.approx(expected.item(), rel=1e-10)
    for key in params:
        np.testing.assert_allclose(grads[key], tp[key].grad.numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(grads_ws[key], grads[key], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(tgrads[key].detach().numpy(), tp[key].grad.numpy(),
                                   rtol=1e-8, atol=1e-10)  # fmt: skip
    keys = list(params)

    def loss(*values):
        return _torch_loss(arch, dict(zip(keys, values, strict=True)), torch.tensor(X),
                           torch.tensor(Y))  # fmt: skip

    _jvp_hvp_match_torch(arch, module, params, X, Y, loss, rng)
