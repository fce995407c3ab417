"""Training (issue 20, section 2): the generated train and step against torch.optim step
for step (float64, minibatches, 3 epochs), full-batch SGD bit for bit as before, batch
norm's running statistics through training, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_arch

torch = pytest.importorskip("torch")
F = torch.nn.functional

N, BATCH = 10, 4  # batches of 4, 4 and 2 samples


def _mlp(**extra):
    doc = dict(
        name="trained",
        layout="row",
        input=3,
        layers=[{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "sigmoid"}],
        loss="mse",
    )
    doc.update(extra)
    return make_arch(**doc)


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, 3)), rng.random((N, 2))


def _torch_run(params, X, Y, optimizer, settings, seed, epochs, forward, decayed):
    """The same training with torch.optim: the batches in the order numpy's generator gives."""
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    wd = settings.get("weight_decay", 0.0)
    groups = [
        {"params": [tensors[k] for k in tensors if k in decayed], "weight_decay": wd},
        {"params": [tensors[k] for k in tensors if k not in decayed], "weight_decay": 0.0},
    ]
    lr = settings["lr"]
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=settings.get("momentum", 0.0))
    elif optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=lr, betas=settings["betas"], eps=settings["eps"])
    else:
        opt = torch.optim.AdamW(groups, lr=lr, betas=settings["betas"], eps=settings["eps"])
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(N)
        for start in range(0, N, BATCH):
            index = order[start : start + BATCH]
            opt.zero_grad()
            loss = forward(tensors, torch.tensor(X[index]), torch.tensor(Y[index]))
            loss.backward()
            if settings.get("clip_norm") is not None:
                torch.nn.utils.clip_grad_norm_(list(tensors.values()), settings["clip_norm"])
            opt.step()
    return {k: v.detach().numpy() for k, v in tensors.items()}


def _mlp_loss(t, x, y):
    h = torch.tanh(x @ t["W1"].T + t["b1"])
    yhat = torch.sigmoid(h @ t["W2"].T + t["b2"])
    return 0.5 * ((yhat - y) ** 2).sum() / x.shape[0]


def _close(got: dict, want: dict) -> None:
    for key, value in want.items():
        scale = np.abs(value).max()
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-10 * scale, err_msg=key)


CASES = {
    "sgd momentum": ("sgd", {"lr": 0.3, "momentum": 0.9, "weight_decay": 0.01}),
    "adam": ("adam", {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-7, "weight_decay": 0.02}),
    "adamw clipped": (
        "adamw",
        {"lr": 0.05, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1, "clip_norm": 0.5},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_minibatch_training_matches_torch_optim(module_for, case: str) -> None:
    optimizer, settings = CASES[case]
    m = module_for(_mlp())
    X, Y = _data()
    params = {k: v.astype(np.float64) for k, v in m.init_params(1).items()}
    losses = []
    got = m.train(params, X, Y, 3, optimizer=optimizer, batch_size=BATCH, seed=7,
                  callback=lambda epoch, p, s, loss: losses.append(loss),
                  **settings)  # fmt: skip
    want = _torch_run(params, X, Y, optimizer, settings, 7, 3, _mlp_loss, set(m.DECAYED))
    _close(got, want)
    assert m.DECAYED == ["W1", "W2"] and len(losses) == 3
    assert all(np.isfinite(losses))


def test_full_batch_sgd_is_unchanged_bit_for_bit(module_for) -> None:
    m = module_for(_mlp())
    X, Y = _data(1)
    params = m.init_params(0)
    got = m.train(params, X, Y, 5, 0.2)
    old = {k: np.array(v) for k, v in params.items()}  # what train did before minibatches
    workspace = m.make_workspace(N)
    for _ in range(5):
        _, grads = m.loss_and_grads(old, X, Y, workspace)
        for key in old:
            old[key] -= 0.2 * grads[key]
    assert all(np.array_equal(got[k], old[k]) for k in old)


def test_the_epoch_loss_is_the_sample_weighted_mean(module_for) -> None:
    m = module_for(_mlp())
    X, Y = _data(2)
    params = m.init_params(0)
    seen = []
    m.train(params, X, Y, 1, 0.0, batch_size=BATCH, seed=3,
            callback=lambda epoch, p, s, loss: seen.append(loss))  # fmt: skip
    order = np.random.default_rng(3).permutation(N)
    batches = [order[i : i + BATCH] for i in range(0, N, BATCH)]
    want = sum(m.loss(params, X[b], Y[b]) * len(b) for b in batches) / N
    assert seen == [pytest.approx(want, rel=1e-12)]


def _bn_arch():
    return make_arch(
        name="trained_bn",
        layout="row",
        input=3,
        layers=[
            {"units": 4, "activation": "identity", "bias": False},
            {"type": "batchnorm", "activation": "tanh", "momentum": 0.2},
            {"units": 2, "activation": "sigmoid"},
        ],
        loss="mse",
    )


def test_batch_norm_state_follows_training(module_for) -> None:
    m = module_for(_bn_arch())
    X, Y = _data(4)
    params = {k: v.astype(np.float64) for k, v in m.init_params(2).items()}
    settings = {"lr": 0.05, "betas": (0.9, 0.999), "eps": 1e-8}
    got, state = m.train(params, X, Y, 3, optimizer="adam", batch_size=BATCH, seed=5,
                         state=m.init_state(), **settings)  # fmt: skip
    rm, rv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)

    def forward(t, x, y):
        h = x @ t["W1"].T
        z = torch.tanh(F.batch_norm(h, rm, rv, t["gamma2"], t["beta2"], training=True,
                                    momentum=0.2, eps=1e-5))  # fmt: skip
        yhat = torch.sigmoid(z @ t["W3"].T + t["b3"])
        return 0.5 * ((yhat - y) ** 2).sum() / x.shape[0]

    want = _torch_run(params, X, Y, "adam", settings, 5, 3, forward, set(m.DECAYED))
    _close(got, want)
    _close(state, {"running_mean2": rm.numpy(), "running_var2": rv.numpy()})


def test_refusals(module_for) -> None:
    m = module_for(_bn_arch())
    X, Y = _data(0)
    with pytest.raises(ValueError, match="batch_size other than 3"):
        m.train(m.init_params(0), X, Y, 1, 0.1, batch_size=3)  # 10 = 3 + 3 + 3 + 1
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        m.train(m.init_params(0), X, Y, 1, 0.1, optimizer="rmsprop")


def test_step_changes_nothing_it_is_given(module_for) -> None:
    m = module_for(_mlp())
    X, Y = _data(0)
    params = m.init_params(0)
    copy = {k: v.copy() for k, v in params.items()}
    new, opt, _, value = m.step(params, None, X, Y, 0.1, optimizer="adam")
    assert all(np.array_equal(copy[k], params[k]) for k in params)
    assert opt["step"] == 1 and value == pytest.approx(m.loss(params, X, Y))
    assert not np.array_equal(new["W1"], params["W1"])


@pytest.mark.parametrize(
    "optimizer, settings",
    [
        ("sgd", {"momentum": 0.9}),
        ("adam", {"weight_decay": 0.01}),
        ("adamw", {"weight_decay": 0.1}),
    ],
)
def test_a_float32_network_stays_float32(module_for, optimizer: str, settings: dict) -> None:
    """Every optimizer keeps the network's dtype, also given NumPy float64 scalars (a
    learning rate from np.cos, say): NumPy would promote float32 arrays times them."""
    m = module_for(_mlp(dtype="float32"))
    X, Y = (a.astype(np.float32) for a in _data(0))
    params, opt = m.init_params(0), None
    assert {p.dtype for p in params.values()} == {np.dtype(np.float32)}
    for k in range(3):
        lr = np.float64(0.05) * np.cos(np.float64(k) / 10)
        settings = {**settings, "momentum": np.float64(settings.get("momentum", 0.0))}
        params, opt, _, value = m.step(params, opt, X, Y, lr, optimizer=optimizer, **settings)
        assert {p.dtype for p in params.values()} == {np.dtype(np.float32)}, (k, optimizer)
        assert np.isfinite(value)
    trained = m.train(
        m.init_params(0), X, Y, 2, np.float64(0.05), optimizer=optimizer, batch_size=5
    )
    assert {p.dtype for p in trained.values()} == {np.dtype(np.float32)}
