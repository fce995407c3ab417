"""The array-API target (issue 20, section 3): <name>_xp.py equals the NumPy module on
NumPy, array-api-strict (which refuses anything outside the standard), PyTorch and JAX
arrays, with and without jax.jit; it is functional, imports only the standard library at
module level, trains as the NumPy module does, and refuses what it cannot print."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache, partial
from pathlib import Path

import array_api_strict
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import EXAMPLES, GENERATED, XP_GOLDEN, make_arch
from hypothesis import HealthCheck, given, settings

from symbp.check.gradcheck import import_path
from symbp.cli import main
from symbp.frontend.spec import load_arch
from symbp.pipeline import generate, write_files
from tests.fuzzing import _problem_data, image_graphs

jax.config.update("jax_enable_x64", True)

# every example the target takes (row layout)
XP_EXAMPLES = [
    "c1_mnist_sigmoid",
    "c2_seed_mse",
    "c3_deep_tanh",
    "c4_small_relu",
    "digits",
    "lenet",
    "mnist_mlp",
    "res_cnn",
    "resmlp",
    "smooth_mlp",
    "lstm_seq",
]
TOLERANCE = {"float64": 1e-10, "float32": 2e-4}


@cache
def _modules(stem: str, folder: str):
    arch = load_arch(EXAMPLES / f"{stem}.yaml")
    result = generate(arch, targets=("numpy", "array-api"))
    out = Path(folder) / stem
    write_files(result.files, out)
    return arch, import_path(out / f"{arch.name}.py"), import_path(out / f"{arch.name}_xp.py")


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("xp"))
    return lambda stem: _modules(stem, folder)


class Namespace:
    """How a test hands arrays to a library and reads them back."""

    def __init__(self, name: str):
        self.name = name
        self.jit = name == "jax-jit"

    def to(self, a):
        a = np.asarray(a)
        if self.name == "numpy":
            return a
        if self.name == "strict":
            return array_api_strict.asarray(a)
        if self.name == "torch":
            return torch.asarray(a)
        return jnp.asarray(a)

    def tree(self, d: dict) -> dict:
        return {k: self.to(v) for k, v in d.items()}

    def call(self, f, *args, **kwargs):
        if self.jit:
            return jax.jit(partial(f, **kwargs))(*args)
        return f(*args, **kwargs)

    def back(self, a) -> np.ndarray:
        if self.name == "torch":
            return a.detach().numpy()
        return np.asarray(a)


NAMESPACES = ["numpy", "strict", "torch", "jax", "jax-jit"]


def _problem(module, seed: int = 1, n: int = 7):
    rng = np.random.default_rng(seed)
    params = module.init_params(0)
    # a sequence (lstm_seq) as (n, T, d); a vector or an image as its entries
    shape = module.LAYER_SHAPES[0] if hasattr(module, "POSITIONS") else (module.LAYER_SIZES[0],)
    X = rng.standard_normal((n, *shape)).astype(module.DTYPE)
    raw = np.exp(rng.standard_normal((n, module.LAYER_SIZES[-1])))
    Y = (raw / raw.sum(axis=1, keepdims=True)).astype(X.dtype)
    V = {k: rng.standard_normal(np.shape(p)).astype(X.dtype) for k, p in params.items()}
    return params, X, Y, V


def _agree(got, want, tol: float, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = max(float(np.max(np.abs(want))), 1e-300)
    error = float(np.max(np.abs(got - want))) / scale
    assert error <= tol, f"{what}: {error:.2e} relative to the largest entry"


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("stem", XP_EXAMPLES)
def test_the_xp_module_equals_the_numpy_module(modules, stem: str, namespace: str) -> None:
    arch, m, x = modules(stem)
    ns = Namespace(namespace)
    tol = TOLERANCE[arch.dtype]
    params, X, Y, V = _problem(m)
    p, Xs, Ys, Vs = ns.tree(params), ns.to(X), ns.to(Y), ns.tree(V)
    _agree(ns.back(ns.call(x.forward, p, Xs)), m.forward(params, X), tol, "forward")
    value = ns.call(x.loss, p, Xs, Ys)
    assert ns.back(value).shape == ()  # a 0-d array of the caller's library
    _agree(ns.back(value), m.loss(params, X, Y), tol, "loss")
    want_value, want = m.loss_and_grads(params, X, Y)
    got_value, got = ns.call(x.loss_and_grads, p, Xs, Ys)
    _agree(ns.back(got_value), want_value, tol, "loss of loss_and_grads")
    assert set(got) == set(want)
    for key in want:
        assert type(got[key]) is type(p[key]) and got[key].dtype == p[key].dtype, key
        _agree(ns.back(got[key]), want[key], tol, f"gradient {key}")
    out, tangent = ns.call(x.jvp, p, Xs, Vs)
    want_out, want_tangent = m.jvp(params, X, V)
    _agree(ns.back(out), want_out, tol, "jvp's output")
    _agree(ns.back(tangent), want_tangent, tol, "jvp")
    got_h, want_h = ns.call(x.hvp, p, Xs, Ys, Vs), m.hvp(params, X, Y, V)
    for key in want_h:
        _agree(ns.back(got_h[key]), want_h[key], tol, f"hvp {key}")
    state = m.init_state()
    if state:
        _, _, want_state = m.loss_and_grads(params, X, Y, state=state)
        _, _, got_state = ns.call(x.loss_and_grads, p, Xs, Ys, state=ns.tree(state))
        for key in want_state:
            _agree(ns.back(got_state[key]), want_state[key], tol, f"state {key}")
        evaluated = ns.call(x.forward, p, Xs, state=got_state)
        _agree(ns.back(evaluated), m.forward(params, X, state=want_state), tol, "evaluation")
        value = ns.call(x.loss, p, Xs, Ys, state=got_state)
        _agree(ns.back(value), m.loss(params, X, Y, state=want_state), tol, "evaluation loss")


def test_nothing_the_caller_passed_is_changed(modules) -> None:
    """PyTorch tensors (mutable, unlike JAX arrays) are the same after every function."""
    _, m, x = modules("digits")
    params, X, Y, V = _problem(m)
    tensors = ({k: torch.tensor(v) for k, v in d.items()} for d in (params, {"X": X}, {"Y": Y}, V))
    p, Xs, Ys, Vs = tensors
    state = {k: torch.tensor(v) for k, v in x.init_state().items()}
    before = [{k: v.clone() for k, v in d.items()} for d in (p, Xs, Ys, Vs, state)]
    x.loss_and_grads(p, Xs["X"], Ys["Y"], state=state)
    x.hvp(p, Xs["X"], Ys["Y"], Vs)
    x.jvp(p, Xs["X"], Vs)
    x.step(p, None, Xs["X"], Ys["Y"], 0.1, optimizer="adam", state=state, clip_norm=1.0)
    for old, new in zip(before, (p, Xs, Ys, Vs, state), strict=True):
        for key in old:
            assert torch.equal(old[key], new[key]), key


@pytest.mark.parametrize("stem", ["c4_small_relu", "digits"])
def test_the_file_is_functional_and_imports_only_the_standard_library(modules, stem) -> None:
    arch, _, x = modules(stem)
    tree = ast.parse(Path(x.__file__).read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert {a.name for n in top for a in n.names} <= {"math"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.AugAssign)]
    keywords = {k.arg for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords}
    assert "out" not in keywords
    # importing the module loaded none of the array libraries it serves
    libraries = ("numpy", "torch", "jax", "array_api_compat")
    code = (
        f"import sys; sys.path.insert(0, {str(Path(x.__file__).parent)!r}); "
        f"import {arch.name}_xp; print([m for m in {libraries!r} if m in sys.modules])"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]", run.stdout


def test_every_examples_xp_module_passes_ruff(modules) -> None:
    """No unused or undefined name in any example's module (a name like `dtype` or an
    import is written only where it is read)."""
    ruff = pytest.importorskip("ruff")
    assert ruff
    files = [str(Path(modules(stem)[2].__file__)) for stem in XP_EXAMPLES]
    args = ["check", "--no-cache", "--isolated", "--select", "E9,F", *files]
    run = subprocess.run([sys.executable, "-m", "ruff", *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_init_params_gives_the_numpy_modules_numbers_in_the_namespace_asked_for(modules) -> None:
    _, m, x = modules("c4_small_relu")  # float32
    want = m.init_params(3)
    got = x.init_params(3)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in got.values())
    assert all(np.array_equal(got[k], want[k]) for k in want)
    t = x.init_params(3, xp=torch, dtype=torch.float64)
    assert all(v.dtype == torch.float64 for v in t.values())
    assert all(np.array_equal(t[k].numpy(), want[k].astype(np.float64)) for k in want)
    j = x.init_params(3, xp=jnp)
    assert all(v.dtype == jnp.float32 for v in j.values())
    assert all(np.array_equal(np.asarray(j[k]), want[k]) for k in want)


def test_jax_without_x64_is_told_how_to_get_float64(modules) -> None:
    _, _, x = modules("digits")  # float64
    code = (
        f"import sys; sys.path.insert(0, {str(Path(x.__file__).parent)!r}); "
        "import jax.numpy as jnp, digits_xp; digits_xp.init_params(xp=jnp)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 1
    assert "jax_enable_x64" in run.stderr.splitlines()[-1]


TRAINING = {
    "sgd momentum": dict(optimizer="sgd", lr=0.2, momentum=0.9, weight_decay=0.01),
    "adam clipped": dict(optimizer="adam", lr=0.01, betas=(0.8, 0.95), clip_norm=0.5),
    "adamw": dict(optimizer="adamw", lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("namespace", ["torch", "jax-jit"])
@pytest.mark.parametrize("case", list(TRAINING))
def test_training_follows_the_numpy_module(modules, case: str, namespace: str) -> None:
    """Minibatches of 16 (the last smaller), 2 epochs, batch norm's state: the parameters,
    the state and the epoch losses of the NumPy module's train."""
    _, m, x = modules("digits")
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((70, 64)), np.eye(10)[rng.integers(0, 10, 70)]
    params, settings = m.init_params(2), TRAINING[case]
    losses, got_losses = [], []
    want, want_state = m.train(
        params, X, Y, 2, batch_size=16, seed=5, state=m.init_state(),
        callback=lambda e, p, s, loss: losses.append(loss), **settings,
    )  # fmt: skip
    ns = Namespace(namespace)
    step_fn = None
    if ns.jit:
        static = ("optimizer", "momentum", "betas", "eps", "weight_decay", "clip_norm")
        step_fn = jax.jit(x.step, static_argnames=static)
    got, got_state = x.train(
        ns.tree(params), ns.to(X), ns.to(Y), 2, batch_size=16, seed=5,
        state=ns.tree(m.init_state()), step_fn=step_fn,
        callback=lambda e, p, s, loss: got_losses.append(loss), **settings,
    )  # fmt: skip
    for key in want:
        _agree(ns.back(got[key]), want[key], 1e-10, key)
    for key in want_state:
        _agree(ns.back(got_state[key]), want_state[key], 1e-10, key)
    np.testing.assert_allclose(got_losses, losses, rtol=1e-10)


def test_unsupported_networks_are_refused_with_the_fix(tmp_path: Path, capsys) -> None:
    for example, words in (("seed.yaml", "layout: row"), ("bn_mlp.yaml", "layout: row")):
        args = [str(EXAMPLES / example), "--target", "array-api", "-o", str(tmp_path)]
        code = main(["generate", *args])
        err = capsys.readouterr().err
        assert code == 2 and words in err and "Traceback" not in err, err
        assert "fix:" in err
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_the_cli_writes_and_checks_the_xp_module(tmp_path: Path, capsys) -> None:
    arch = str(EXAMPLES / "c2_seed_mse.yaml")
    assert main(["generate", arch, "--target", "array-api", "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c2_seed_mse.md", "c2_seed_mse.tex", "c2_seed_mse_xp.py"
    ]  # fmt: skip
    text = (tmp_path / "c2_seed_mse_xp.py").read_text(encoding="utf-8")
    assert "Target: array-api." in text and "template: network_xp.py.j2" in text
    assert main(["generate", arch, "-o", str(tmp_path)]) == 0  # the NumPy module beside it
    capsys.readouterr()
    assert main(["generate", arch, "--check", "-o", str(tmp_path)]) == 0
    stale = tmp_path / "c2_seed_mse_xp.py"
    stale.write_text(text.replace("TARGET = ", "TARGET  = "), encoding="utf-8")
    # --check without --target checks every module the folder holds, the xp one included
    assert main(["generate", arch, "--check", "-o", str(tmp_path)]) == 1
    assert "c2_seed_mse_xp.py" in capsys.readouterr().out


def test_with_tests_needs_the_numpy_module(tmp_path: Path, capsys) -> None:
    arch = str(EXAMPLES / "c2_seed_mse.yaml")
    code = main(["generate", arch, "--target", "array-api", "--with-tests", "-o", str(tmp_path)])
    assert code == 2 and "--target numpy" in capsys.readouterr().err


def test_a_custom_activation_and_loss_print_within_the_standard(tmp_path: Path) -> None:
    """min, max and abs (whose derivatives are branches and 0/1 masks), erf and l2, on
    array-api-strict against the NumPy module."""
    arch = make_arch(
        name="custom",
        layout="row",
        input=3,
        l2=0.01,
        activations={"hat": "min(max(x, -1), 1) + erf(x)/4", "kink": "max(x, x/10) + abs(x - 1)/2"},
        layers=[
            {"units": 4, "activation": "hat"},
            {"units": 3, "activation": "kink"},
            {"units": 2, "activation": "softmax"},
        ],
        loss="cross_entropy",
    )  # fmt: skip
    result = generate(arch, targets=("numpy", "array-api"))
    write_files(result.files, tmp_path)
    m, x = import_path(tmp_path / "custom.py"), import_path(tmp_path / "custom_xp.py")
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(v.shape) for k, v in m.init_params(0).items()}
    X = rng.standard_normal((5, 3)) * 2
    Y = np.eye(2)[rng.integers(0, 2, 5)]
    ns = Namespace("strict")
    want_value, want = m.loss_and_grads(params, X, Y)
    got_value, got = x.loss_and_grads(ns.tree(params), ns.to(X), ns.to(Y))
    _agree(ns.back(got_value), want_value, 1e-12, "loss")
    for key in want:
        _agree(ns.back(got[key]), want[key], 1e-12, key)
    V = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    got_h, want_h = x.hvp(ns.tree(params), ns.to(X), ns.to(Y), ns.tree(V)), m.hvp(params, X, Y, V)
    for key in want_h:
        _agree(ns.back(got_h[key]), want_h[key], 1e-12, f"hvp {key}")


def test_committed_xp_examples_are_current() -> None:
    """The committed <name>_xp.py files are the examples' (test_golden compares every byte)."""
    assert XP_GOLDEN and all(stem in XP_EXAMPLES for stem in XP_GOLDEN)
    for stem in XP_GOLDEN:
        files = generate(EXAMPLES / f"{stem}.yaml", targets=("array-api",)).files
        assert files[f"{stem}_xp.py"] == (GENERATED / f"{stem}_xp.py").read_text(encoding="utf-8")


@settings(max_examples=8, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(doc=image_graphs(), seed=st.integers(0, 2**16))
def test_random_cnns_on_the_libraries_own_kernels(tmp_path_factory, doc: dict, seed: int) -> None:
    """Strides, paddings, rectangular kernels, pools and residual adds on images: PyTorch's
    conv2d and its gradients, and jax.lax.conv_general_dilated (under jit), against the NumPy
    module (whose image helpers the fuzzer checks against its own loops)."""
    from symbp.frontend.spec import arch_from_mapping

    folder = tmp_path_factory.mktemp("cnn")
    arch = arch_from_mapping({**doc, "dtype": "float64"})
    write_files(generate(arch, targets=("numpy", "array-api")).files, folder)
    m, x = import_path(folder / f"{arch.name}.py"), import_path(folder / f"{arch.name}_xp.py")
    params, X, Y = _problem_data(doc, seed)
    V = {k: np.random.default_rng(seed).standard_normal(np.shape(v)) for k, v in params.items()}
    want_value, want = m.loss_and_grads(params, X, Y)
    want_h = m.hvp(params, X, Y, V)
    for name in ("torch", "jax-jit"):
        ns = Namespace(name)
        p = ns.tree(params)
        got_value, got = ns.call(x.loss_and_grads, p, ns.to(X), ns.to(Y))
        _agree(ns.back(got_value), want_value, 1e-10, f"{name} loss")
        for key in want:
            _agree(ns.back(got[key]), want[key], 1e-10, f"{name} gradient {key}")
        got_h = ns.call(x.hvp, p, ns.to(X), ns.to(Y), ns.tree(V))
        for key in want_h:
            _agree(ns.back(got_h[key]), want_h[key], 1e-10, f"{name} hvp {key}")
