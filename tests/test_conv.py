"""Image layers (conv2d, maxpool2d, avgpool2d, flatten, add on images): central differences
in float64, the workspace path, the Taylor test, jvp and hvp against central differences,
float32 against float64, a reference written here with plain loops from the definitions,
PyTorch where it is installed, SymPy's index-form derivatives evaluated entry by entry
against the module's helpers, and every bad file refused with its place and a fix."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import sympy as sp

from symbp.check.gradcheck import random_problem, taylor_test
from symbp.errors import SpecError
from tests.conftest import make_arch
from tests.test_gradients import (
    _assert_close,
    assert_float32_follows_float64,
    assert_jvp_and_hvp,
)

CASES: dict[str, dict[str, Any]] = {
    "stride-pad-rect": {
        "input": [2, 7, 6],
        "layers": [
            {"type": "conv2d", "filters": 3, "kernel": [3, 2], "stride": [2, 1],
             "padding": [1, 0], "activation": "tanh"},
            {"type": "flatten"},
            {"units": 3, "activation": "softmax"},
        ],
    },
    "same-no-bias-maxpool-overlap": {
        "input": [1, 6, 6],
        "layers": [
            {"type": "conv2d", "filters": 2, "kernel": 3, "padding": "same", "bias": False,
             "activation": "softplus"},
            {"type": "maxpool2d", "size": 3, "stride": 1},
            {"type": "flatten"},
            {"units": 3, "activation": "softmax"},
        ],
    },
    "avgpool-rect": {
        "input": [2, 5, 6],
        "layers": [
            {"type": "conv2d", "filters": 2, "kernel": 2, "activation": "sigmoid"},
            {"type": "avgpool2d", "size": [2, 1], "stride": [2, 2]},
            {"type": "flatten"},
            {"units": 2, "activation": "identity"},
        ],
        "loss": "mse",
    },
    "conv-batchnorm": {
        "input": [2, 5, 5],
        "layers": [
            {"type": "conv2d", "filters": 3, "kernel": 3, "padding": 1, "bias": False},
            {"type": "batchnorm", "activation": "tanh", "eps": 0.001, "name": "first"},
            {"type": "conv2d", "filters": 3, "kernel": 3, "padding": "same", "bias": False},
            {"type": "batchnorm"},
            {"type": "add", "from": "first", "activation": "relu"},
            {"type": "flatten"},
            {"units": 3, "activation": "softmax"},
        ],
    },
    "conv-layernorm": {
        "input": [2, 4, 3],
        "layers": [
            {"type": "conv2d", "filters": 2, "kernel": 3, "padding": 1, "name": "c"},
            {"type": "layernorm", "activation": "tanh", "eps": 0.01},
            {"type": "add", "from": "c"},
            {"type": "flatten"},
            {"units": 2, "activation": "softmax"},
        ],
    },
    "residual": {
        "input": [2, 5, 5],
        "layers": [
            {"type": "conv2d", "filters": 3, "kernel": 3, "padding": 1, "activation": "relu",
             "name": "stem"},
            {"type": "conv2d", "filters": 3, "kernel": 3, "padding": 1, "activation": "tanh"},
            {"type": "conv2d", "filters": 3, "kernel": 1, "bias": False},
            {"type": "add", "from": "stem", "activation": "swish"},
            {"type": "maxpool2d", "size": 2},
            {"type": "flatten"},
            {"units": 4, "activation": "softmax"},
        ],
    },
}  # fmt: skip


def _arch(case: str, **overrides: Any):
    doc = {"layout": "row", "loss": "cross_entropy", **CASES[case], **overrides}
    return make_arch(**doc)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("l2", [0.0, 0.03])
def test_gradients_match_central_differences(module_for, case: str, l2: float) -> None:
    arch = _arch(case, l2=l2, reduction="sum" if l2 else "mean")
    m = module_for(arch)
    _assert_close(m, arch)
    assert taylor_test(m, arch, seed=1).ok


@pytest.mark.parametrize("case", CASES)
def test_jvp_and_hvp_match_central_differences(module_for, case: str) -> None:
    arch = _arch(case, l2=0.02)
    assert_jvp_and_hvp(module_for(arch), arch, n=4)


@pytest.mark.parametrize("case", CASES)
def test_float32_follows_float64(module_for, case: str) -> None:
    m64, m32 = module_for(_arch(case)), module_for(_arch(case, dtype="float32"))
    assert_float32_follows_float64(m64, m32, _arch(case), n=4)


# --- a reference written from the definitions, with loops --------------------------------


def _conv_loops(x, w, b, stride, pad):
    """z[n,f,i,j] = b[f] + sum_{c,p,q} w[f,c,p,q] xpad[n,c,i*sh+p,j*sw+q]."""
    n, C, H, W = x.shape
    F, _, kh, kw = w.shape
    xp = np.zeros((n, C, H + 2 * pad[0], W + 2 * pad[1]))
    xp[:, :, pad[0] : pad[0] + H, pad[1] : pad[1] + W] = x
    Ho = (H + 2 * pad[0] - kh) // stride[0] + 1
    Wo = (W + 2 * pad[1] - kw) // stride[1] + 1
    z = np.zeros((n, F, Ho, Wo))
    for s, f, i, j in itertools.product(range(n), range(F), range(Ho), range(Wo)):
        window = xp[s, :, i * stride[0] : i * stride[0] + kh, j * stride[1] : j * stride[1] + kw]
        z[s, f, i, j] = (0 if b is None else b[f]) + np.sum(w[f] * window)
    return z


def _pool_loops(x, size, stride, reduce):
    n, C, H, W = x.shape
    Ho, Wo = (H - size[0]) // stride[0] + 1, (W - size[1]) // stride[1] + 1
    z = np.zeros((n, C, Ho, Wo))
    for s, c, i, j in itertools.product(range(n), range(C), range(Ho), range(Wo)):
        i0, j0 = i * stride[0], j * stride[1]
        z[s, c, i, j] = reduce(x[s, c, i0 : i0 + size[0], j0 : j0 + size[1]])
    return z


def test_forward_matches_loops_from_the_definition(module_for) -> None:
    """conv (stride, padding, rectangular kernel), overlapping max pool, avg pool, flatten."""
    layers = [
        {"type": "conv2d", "filters": 3, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 0]},
        {"type": "maxpool2d", "size": 2, "stride": 1},
        {"type": "avgpool2d", "size": [1, 2]},
        {"type": "flatten"},
    ]
    arch = make_arch(layout="row", input=[2, 7, 6], layers=[*layers, {"units": 2}])
    m = module_for(arch)
    params, X, _ = random_problem(m, arch, seed=2, n=3)
    x = X.reshape(3, 2, 7, 6)
    z = _conv_loops(x, params["W1"], params["b1"], (2, 1), (1, 0))
    z = _pool_loops(z, (2, 2), (1, 1), np.max)
    z = _pool_loops(z, (1, 2), (1, 2), np.mean)
    out = z.reshape(3, -1) @ params["W5"].T + params["b5"]
    np.testing.assert_allclose(m.forward(params, X), out, rtol=1e-12, atol=1e-12)
    # An image input may also be given as (n, C, H, W).
    np.testing.assert_array_equal(m.forward(params, x), m.forward(params, X))


def _against_pytorch(module_for, case: str, n: int, seed: int, logits, rtol: float) -> dict:
    """Loss and every gradient of `case` against PyTorch autograd in float64; `logits(t, x,
    F)` is the network written with torch from the parameters t and the NCHW batch x."""
    torch = pytest.importorskip("torch")
    arch = _arch(case)
    m = module_for(arch)
    params, X, Y = random_problem(m, arch, seed=seed, n=n)
    value, grads = m.loss_and_grads(params, X, Y)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    F = torch.nn.functional
    x = torch.tensor(X.reshape(n, *arch.input_shape))
    loss = -(torch.tensor(Y) * F.log_softmax(logits(t, x, F), dim=1)).sum() / n
    loss.backward()
    assert value == pytest.approx(loss.item(), rel=1e-12)
    for key, tensor in t.items():
        assert grads[key].shape == tensor.shape, key
        np.testing.assert_allclose(grads[key], tensor.grad.numpy(), rtol=rtol, atol=rtol * 1e-3)
    return {"module": m, "params": params, "X": X, "Y": Y}


def test_matches_pytorch(module_for) -> None:
    """Convolutions (with and without bias, 1x1), max pooling and a residual add."""

    def logits(t, x, F):
        stem = F.relu(F.conv2d(x, t["W1"], t["b1"], padding=1))
        h = F.conv2d(F.conv2d(stem, t["W2"], t["b2"], padding=1).tanh(), t["W3"])
        h = F.max_pool2d(F.silu(h + stem), 2)
        return h.flatten(1) @ t["W7"].T + t["b7"]

    _against_pytorch(module_for, "residual", 3, 4, logits, 1e-9)


def test_batch_norm_on_images_matches_pytorch(module_for) -> None:
    """Batch norm per channel over the batch and the positions (BatchNorm2d, training)."""

    def logits(t, x, F):
        def bn(h, key, eps):
            return F.batch_norm(h, None, None, t[f"gamma{key}"], t[f"beta{key}"], True, 0, eps)

        first = bn(F.conv2d(x, t["W1"], padding=1), 2, 1e-3).tanh()
        h = (bn(F.conv2d(first, t["W3"], padding=1), 4, 1e-5) + first).relu()
        return h.flatten(1) @ t["W7"].T + t["b7"]

    _against_pytorch(module_for, "conv-batchnorm", 4, 6, logits, 1e-8)


def test_layer_norm_on_images_matches_pytorch(module_for) -> None:
    """Layer norm over each sample's (C, H, W) with gamma, beta of that shape."""

    def logits(t, x, F):
        c = F.conv2d(x, t["W1"], t["b1"], padding=1)
        h = F.layer_norm(c, (2, 4, 3), t["gamma2"], t["beta2"], 0.01).tanh() + c
        return h.flatten(1) @ t["W5"].T + t["b5"]

    run = _against_pytorch(module_for, "conv-layernorm", 3, 8, logits, 1e-8)
    assert run["params"]["gamma2"].shape == (2, 4, 3)
    ones = {k: np.ones_like(v) for k, v in run["params"].items()}
    assert run["module"].hvp(run["params"], run["X"], run["Y"], ones)["gamma2"].shape == (2, 4, 3)


def test_max_pool_ties_go_to_the_first_maximum(module_for) -> None:
    """A constant window: the whole error goes to its first entry (as PyTorch does), so a
    1x1 conv before it gets 4 (1 entry x 4) and not 16 (4 entries x 4)."""
    arch = make_arch(
        layout="row", input=[1, 2, 2], reduction="sum", loss="mse",
        layers=[{"type": "conv2d", "filters": 1, "kernel": 1, "bias": False},
                {"type": "maxpool2d", "size": 2}, {"type": "flatten"},
                {"units": 1, "bias": False}],
    )  # fmt: skip
    m = module_for(arch)
    params = {"W1": np.ones((1, 1, 1, 1)), "W4": np.array([[2.0]])}
    value, grads = m.loss_and_grads(params, np.ones((1, 4)), np.zeros((1, 1)))
    assert value == 2.0  # (1/2) (2 * max(1, 1, 1, 1))^2
    assert grads["W1"].tolist() == [[[[4.0]]]] and grads["W4"].tolist() == [[2.0]]


# --- SymPy's index forms, entry by entry, against the helpers ---------------------------


def test_sympy_index_forms_are_what_the_helpers_compute() -> None:
    """dL/dW, dL/db and dL/dx as SymPy derived them, evaluated with numbers at every entry
    (stride 2 by 1, padding 1 by 0), equal the runtime's helpers (which modules copy)."""
    from symbp.backends.numpy import runtime as m
    from symbp.symbolic import conv_calculus as cc

    rng = np.random.default_rng(0)
    n, C, H, W, F, kh, kw, sh, sw, ph, pw = 2, 2, 7, 6, 3, 3, 2, 2, 1, 1, 0
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    g = (C, H, W, F, Ho, Wo, kh, kw, sh, sw, ph, pw)
    x = rng.standard_normal((n, C, H, W))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    w = rng.standard_normal((F, C, kh, kw))
    delta = rng.standard_normal((n, F, Ho, Wo))
    d = cc.derive_conv()
    sizes = {cc.N: n, cc.F: F, cc.C: C, cc.KH: kh, cc.KW: kw, cc.HO: Ho, cc.WO: Wo,
             cc.SH: sh, cc.SW: sw}  # fmt: skip

    def value(expr: sp.Expr, at: dict) -> float:
        def number(e: sp.Indexed) -> sp.Expr:
            idx = tuple(int(k) for k in e.indices)
            table = {cc.X: xp, cc.W: w, cc.D: delta}[e.base]
            inside = all(0 <= k < s for k, s in zip(idx, table.shape, strict=True))
            return sp.Float(table[idx]) if inside else sp.S.Zero

        done = expr.subs({**sizes, **at}).doit()
        return float(done.replace(lambda e: isinstance(e, sp.Indexed), number))

    dW = m._conv2d_back_kernel(x.reshape(n, -1), delta.reshape(n, -1), g)
    db = m._channel_total(delta.reshape(n, -1), (F, Ho * Wo))
    dx = m._conv2d_back_input(delta.reshape(n, -1), w, g).reshape(n, C, H, W)
    for f2, c2, p2, q2 in [(0, 0, 0, 0), (2, 1, 2, 1), (1, 0, 1, 0)]:
        at = {cc.f2: f2, cc.c2: c2, cc.p2: p2, cc.q2: q2}
        assert value(d.dW, at) == pytest.approx(dW[f2, c2, p2, q2], rel=1e-12)
    assert value(d.db, {cc.f2: 1}) == pytest.approx(db[1], rel=1e-12)
    for s, c2, u, v in [(0, 0, 0, 0), (1, 1, 3, 5), (0, 1, 6, 2)]:
        at = {cc.n: s, cc.c2: c2, cc.u: u + ph, cc.v: v + pw}  # u, v index the padded input
        assert value(d.dx, at) == pytest.approx(dx[s, c2, u, v], rel=1e-12, abs=1e-14)


# --- bad files -----------------------------------------------------------------------

CONV = {"type": "conv2d", "filters": 2, "kernel": 3}
HEAD = [{"type": "flatten"}, {"units": 2}]
BAD = [
    ({"layout": "column", "input": [1, 5, 5]}, [CONV, *HEAD], "layout", "needs layout: row"),
    ({"input": 25}, [CONV, *HEAD], "layers[0].type", "reads an image"),
    ({"input": [1, 2, 2]}, [CONV, *HEAD], "layers[0].kernel", "larger than the padded input"),
    ({}, [{**CONV, "stride": 0}, *HEAD], "layers[0].stride", "between 1"),
    ({}, [{**CONV, "padding": "same", "stride": 2}, *HEAD], "layers[0].padding", "stride 1"),
    ({}, [{**CONV, "kernel": 2, "padding": "same"}, *HEAD], "layers[0].padding", "odd kernel"),
    ({}, [{"type": "maxpool2d", "size": 2, "activation": "relu"}, *HEAD],
     "layers[0].activation", "takes no activation"),
    ({}, [CONV], "layers[0]", "add a flatten and a dense layer"),
    ({}, [CONV, {"units": 3}], "layers[1]", "put a - {type: flatten}"),
    ({"input": [1, 5]}, [CONV, *HEAD], "layers[0].type", "its input is the sequence [1, 5]"),
    ({"input": [1, 5, 2, 2]}, [CONV, *HEAD], "input", "[C, H, W]"),
    ({"input": [64, 4096, 4096]}, [CONV, *HEAD], "input", "values per sample"),
    ({"input": [3, 500, 500]}, [{**CONV, "filters": 64, "padding": 1}, *HEAD],
     "layers[0]", "values per sample"),
    ({}, [{**CONV, "kernel": [3, 3, 3]}, *HEAD], "layers[0].kernel", "list of two"),
    ({}, [{**CONV, "filters": 0}, *HEAD], "layers[0].filters", "between 1"),
]  # fmt: skip


@pytest.mark.parametrize(("top", "layers", "path", "words"), BAD)
def test_bad_image_files_are_refused_with_place_and_fix(top, layers, path, words) -> None:
    doc = {"layout": "row", "input": [1, 5, 5], "layers": layers, "loss": "mse", **top}
    with pytest.raises(SpecError) as info:
        make_arch(**doc)
    assert info.value.path == path, info.value
    assert words in str(info.value), info.value
    assert info.value.fix


def test_cli_refuses_a_bad_image_file_with_exit_2(tmp_path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "layout: row\ninput: [1, 4, 4]\nlayers:\n  - {type: conv2d, filters: 2, kernel: 5}\n"
        "  - {type: flatten}\n  - {units: 2}\nloss: mse\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "symbp", "generate", str(bad), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "bad.yaml:4:" in run.stderr and "fix:" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


# --- random small CNN graphs -----------------------------------------------------------

import hypothesis.strategies as st  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

from symbp.check.gradcheck import check_module, workspace_problems  # noqa: E402
from symbp.frontend.spec import arch_from_mapping  # noqa: E402
from tests.conftest import build_module  # noqa: E402

SMOOTH = ["identity", "tanh", "sigmoid", "softplus", "swish", "gelu"]


@st.composite
def cnn_graphs(draw) -> dict:
    """A valid random CNN: image layers whose windows fit, an optional residual add over
    a same-padded conv, then flatten and a dense output."""
    C, H, W = draw(st.integers(1, 2)), draw(st.integers(4, 7)), draw(st.integers(4, 7))
    layers: list[dict] = []
    shape = (C, H, W)
    for k in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv2d", "conv2d", "maxpool2d", "avgpool2d", "residual"]))
        act = draw(st.sampled_from(SMOOTH))
        if kind == "residual":
            name = f"r{k}"
            layers[-1:] = [{**layers[-1], "name": name}] if layers else []
            source = name if layers else "input"
            layers += [
                {"type": "conv2d", "filters": shape[0], "kernel": 3, "padding": "same",
                 "bias": draw(st.booleans()), "activation": act},
                {"type": "add", "from": source, "activation": draw(st.sampled_from(SMOOTH))},
            ]  # fmt: skip
            continue
        side = min(shape[1], shape[2])
        if kind == "conv2d":
            kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
            pad = draw(st.integers(0, 1))
            if min(kh, kw) > side + 2 * pad:
                continue
            kh, kw = min(kh, shape[1] + 2 * pad), min(kw, shape[2] + 2 * pad)
            layer = {"type": "conv2d", "filters": draw(st.integers(1, 3)), "kernel": [kh, kw],
                     "stride": [draw(st.integers(1, 2)), draw(st.integers(1, 2))],
                     "padding": pad, "bias": draw(st.booleans()), "activation": act}  # fmt: skip
        else:
            size = draw(st.integers(1, min(2, side)))
            layer = {"type": kind, "size": size, "stride": draw(st.integers(1, 2))}
        layers.append(layer)
        shape = arch_from_mapping(_doc((C, H, W), layers)).layer_shapes[len(layers)]
    output = draw(st.sampled_from([("softmax", "cross_entropy"), ("identity", "mse")]))
    layers += [{"type": "flatten"}, {"units": 2, "activation": output[0]}]
    return {"name": "cnn", "layout": "row", "input": [C, H, W], "layers": layers, "loss": output[1]}


def _doc(shape: tuple, layers: list[dict]) -> dict:
    tail = [] if layers and layers[-1].get("type") == "flatten" else [{"type": "flatten"}]
    return {"name": "cnn", "layout": "row", "input": list(shape),
            "layers": [*layers, *tail, {"units": 2}], "loss": "mse"}  # fmt: skip


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=cnn_graphs(), seed=st.integers(0, 1000))
def test_random_cnn_graphs_pass_finite_differences(tmp_path_factory, doc: dict, seed: int) -> None:
    arch = arch_from_mapping(doc)
    module = build_module(arch, tmp_path_factory.mktemp("cnn"))
    rows = check_module(module, arch, seed=seed, n=3)
    assert all(r.ok for r in rows), [(r.name, r.max_rel) for r in rows]
    assert workspace_problems(module, arch, seed=seed, n=3) == []


@pytest.mark.parametrize("case", CASES)
def test_verify_proves_every_case(case: str) -> None:
    """symbp verify: the IR evaluated like the code, against the chain rule over sympy.diff
    of each layer written out from its definition, on the smallest image it fits."""
    from symbp.check.verify import verify_arch

    result = verify_arch(_arch(case, l2=0.01), max_units=2, simplify_seconds=0, points=2)
    assert result.ok, [(r.parameter, r.detail) for r in result.rows if not r.ok]
