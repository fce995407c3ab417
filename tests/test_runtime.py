"""The NumPy runtime (symbp/backends/numpy/runtime.py) on its own, and its copying into
generated modules (symbp/backends/numpy/inline.py).

Each softmax helper is checked against its definition evaluated with mpmath at enough digits,
at ordinary logits and at logit gaps far past where exp() overflows, in both layouts."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

from symbp.backends.numpy import inline, runtime


@pytest.fixture(params=[1, 0], ids=["row", "column"])
def axis(request: pytest.FixtureRequest):
    runtime.configure(np.float64, request.param)
    yield request.param
    runtime.configure(np.float64, 1)


def _samples(axis: int, scale: float, seed: int = 0, logits: bool = True) -> np.ndarray:
    """5 samples of 4 units of the given scale (units along `axis`); logits have one sample
    with a dominant unit then a second one, and one with a tie at the top."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(5, 4)) * scale
    if logits:
        z[1] = [scale, 0.0, -scale, scale / 2]
        z[2] = [scale, scale, 0.0, -scale]
    return z if axis == 1 else z.T


def _by_sample(z: np.ndarray, axis: int) -> list[list[mp.mpf]]:
    rows = z if axis == 1 else z.T
    return [[mp.mpf(float(v)) for v in row] for row in rows]


def _others(z: list, k: int) -> mp.mpf:
    return mp.fsum(mp.exp(v) for m, v in enumerate(z) if m != k)


def _q(z: list, i: int, k: int) -> mp.mpf:
    """a_i / (1 - a_k): the softmax of the units other than k, at i."""
    return mp.exp(z[i]) / _others(z, k)


def _close(got: np.ndarray, want: list[list[mp.mpf]], axis: int, rtol: float = 1e-13) -> bool:
    want_arr = np.array([[float(v) for v in row] for row in want])
    if axis == 0:
        want_arr = want_arr.T
    scale = np.abs(want_arr).max(axis=axis, keepdims=True)
    return bool(np.all(np.abs(got - want_arr) <= rtol * scale + 1e-300))


@pytest.mark.parametrize("scale", [1.0, 30.0, 800.0])
def test_exclusive_softmax_sums_match_their_definitions(axis: int, scale: float) -> None:
    mp.mp.dps = 50 + int(scale)  # the smallest q is about e^-2 scale
    z = _samples(axis, scale)
    # g and v are drawn at random: where v is equal at two tied units, H v is a difference
    # of terms of the order of the Hessian and can be 1e-13 of them (only a relative
    # accuracy of the order of the Hessian's scale is then to be had).
    g = _samples(axis, 1.0, seed=1, logits=False)
    v = _samples(axis, 1.0, seed=2, logits=False)
    over, mean, tangent = [], [], []
    for zs, gs, vs in zip(*(_by_sample(a, axis) for a in (z, g, v)), strict=True):
        K = range(len(zs))
        u = [mp.fsum(vs[i] * _q(zs, i, k) for i in K if i != k) for k in K]
        over.append([mp.fsum(gs[k] * _q(zs, j, k) for k in K if k != j) for j in K])
        mean.append(u)
        tangent.append(
            [mp.fsum(gs[k] * _q(zs, j, k) * (vs[j] - u[k]) for k in K if k != j) for j in K]
        )
    with np.errstate(all="raise", under="ignore"):
        assert _close(runtime._exclusive_softmax(g, z, True), over, axis)
        assert _close(runtime._exclusive_softmax(v, z, False), mean, axis)
        assert _close(runtime._exclusive_softmax_tangent(g, v, z), tangent, axis, 1e-12)


@pytest.mark.parametrize("scale", [1.0, 800.0])
def test_log_sums_of_a_softmax(axis: int, scale: float) -> None:
    mp.mp.dps = 60
    z = _samples(axis, scale)
    lse, l1m = [], []
    for zs in _by_sample(z, axis):
        total = mp.log(mp.fsum(mp.exp(v) for v in zs))
        lse.append([total] * len(zs))
        l1m.append([mp.log(_others(zs, k)) - total for k in range(len(zs))])
    with np.errstate(all="raise", under="ignore"):
        assert _close(np.broadcast_to(runtime._logsumexp(z), z.shape), lse, axis)
        assert _close(runtime._log1m_softmax(z), l1m, axis, 1e-12)


def test_log_softplus_is_finite_where_softplus_underflows() -> None:
    mp.mp.dps = 40
    u = np.array([-1e4, -800.0, -40.0, -1.0, 0.0, 1e-8, 3.0, 700.0, 1e4])
    want = np.array([float(mp.log(mp.log1p(mp.exp(mp.mpf(x))))) for x in u])
    with np.errstate(all="raise", under="ignore"):
        got = runtime._log_softplus(u)
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_a_copied_helper_brings_everything_it_calls() -> None:
    """Each helper, copied alone with what inline.needed adds, runs in a namespace that holds
    only numpy and the generated module's configuration."""
    for name in inline.definitions():
        namespace = {"np": np, **{key: getattr(runtime, key) for key in runtime.CONFIGURATION}}
        exec(inline.helper_source([name]), namespace)  # noqa: S102 - symbp's own runtime source
        assert name in namespace
        loaded = {n for d in inline.needed([name]) for n in inline.definitions()[d].uses}
        assert loaded <= set(namespace), (name, loaded - set(namespace))


def test_an_unknown_helper_is_refused() -> None:
    from symbp.errors import DerivationError

    with pytest.raises(DerivationError, match="_no_such_helper"):
        inline.needed(["_no_such_helper"])


def test_a_module_copies_only_the_helpers_it_calls(tmp_path) -> None:
    from conftest import make_arch

    from symbp.pipeline import generate

    files = generate(make_arch(name="plain", layers=[{"units": 2, "activation": "tanh"}])).files
    assert "def _erf" not in files["plain.py"] and "def _conv2d" not in files["plain.py"]
    files = generate(make_arch(name="smooth", layers=[{"units": 2, "activation": "gelu"}])).files
    assert "def _erf(" in files["smooth.py"] and "_ERF_A = " in files["smooth.py"]
