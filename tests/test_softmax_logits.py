"""A softmax output with a loss that holds log(1 - a) (bce): gradient, jvp and hvp at logit
gaps from 1 to 10^4 against a reference computed from the logits with 60-digit arithmetic.

Issue 18: SymPy's error term in a, a_j (dE/da_j - sum_k a_k dE/da_k), holds a_k / (1 - a_k);
at a gap of 36 it was 7% off with no warning, from 38 it divided by zero. The reference here
shares nothing with symbp: the loss is written from its definition with mpmath
(log a_k = z_k - log sum_m e^z_m, log(1 - a_k) = log sum_(m != k) e^z_m - log sum_m e^z_m),
and its derivatives in z are mpmath's numerical derivatives at 60 digits; the parameters
enter through z = x W^T + b, so dL/dW, jvp and hvp follow by the chain rule on numbers.
"""

from __future__ import annotations

import warnings
from typing import Any

import mpmath as mp
import numpy as np
import pytest
from conftest import make_arch

GAPS = (1.0, 5.0, 17.0, 20.0, 36.0, 38.0, 100.0, 745.0, 800.0, 5000.0, 1e4)
TARGETS = {
    2: [0.3, 0.7],
    5: [0.1, 0.2, 0.3, 0.15, 0.25],
}
# Logit directions: unit 0 dominates by the gap in the first sample, unit 1 in the second.
SLOPES = {2: [0.5, -0.5], 5: [0.5, -0.5, 0.25, 0.0, -1 / 3]}


def _arch(units: int, dtype: str, reduction: str = "sum"):
    return make_arch(
        name=f"smbce{units}_{dtype}",
        layout="row",
        dtype=dtype,
        input=1,
        layers=[{"units": units, "activation": "softmax"}],
        loss="bce",
        reduction=reduction,
    )


class HyperDual:
    """a + b e1 + c e2 + d e1 e2 with e1^2 = e2^2 = 0: one evaluation of f at z + e1 u + e2 w
    gives f, its derivatives along u and w, and the second derivative along u and w, exactly
    (no difference quotients), in mpmath's arithmetic."""

    def __init__(self, a: Any, b: Any = 0, c: Any = 0, d: Any = 0) -> None:
        self.a, self.b, self.c, self.d = (mp.mpf(x) for x in (a, b, c, d))

    def __add__(self, o: Any) -> HyperDual:
        o = _lift(o)
        return HyperDual(self.a + o.a, self.b + o.b, self.c + o.c, self.d + o.d)

    __radd__ = __add__

    def __neg__(self) -> HyperDual:
        return HyperDual(-self.a, -self.b, -self.c, -self.d)

    def __sub__(self, o: Any) -> HyperDual:
        return self + (-_lift(o))

    def __rsub__(self, o: Any) -> HyperDual:
        return _lift(o) - self

    def __mul__(self, o: Any) -> HyperDual:
        o = _lift(o)
        return HyperDual(
            self.a * o.a,
            self.a * o.b + self.b * o.a,
            self.a * o.c + self.c * o.a,
            self.a * o.d + self.b * o.c + self.c * o.b + self.d * o.a,
        )

    __rmul__ = __mul__

    def apply(self, f: Any, f1: Any, f2: Any) -> HyperDual:
        """g(self) for g with g' = f1 and g'' = f2 at self.a."""
        return HyperDual(f, f1 * self.b, f1 * self.c, f1 * self.d + f2 * self.b * self.c)


def _lift(x: Any) -> HyperDual:
    return x if isinstance(x, HyperDual) else HyperDual(x)


def _exp(x: HyperDual) -> HyperDual:
    e = mp.exp(x.a)
    return x.apply(e, e, e)


def _log(x: HyperDual) -> HyperDual:
    return x.apply(mp.log(x.a), 1 / x.a, -1 / x.a**2)


def _loss_of_z(z: list, y: list) -> Any:
    """bce after a softmax, from the logits: log a_k = z_k - log sum_m e^z_m and
    log(1 - a_k) = log sum_(m != k) e^z_m - log sum_m e^z_m."""
    lse = _log(sum((_exp(v) for v in z), HyperDual(0)))
    total = HyperDual(0)
    for k, (zk, yk) in enumerate(zip(z, y, strict=True)):
        others = _log(sum((_exp(v) for m, v in enumerate(z) if m != k), HyperDual(0)))
        total = total - (yk * (zk - lse) + (1 - yk) * (others - lse))
    return total


def _softmax(z: list) -> list:
    top = max(z)
    e = [mp.exp(v - top) for v in z]
    return [v / mp.fsum(e) for v in e]


def _reference(params: dict, X: np.ndarray, Y: np.ndarray, v: dict, scale: float):
    """dL/dW, dL/db, the output's tangent and H v, each per sample summed, in float64.

    H v is as small as the smaller units' share (e^-gap/4 here) while the loss is of the
    order of the gap: enough digits that sums of terms of both sizes resolve it."""
    spread = float(np.abs(params["W1"]).max() * np.abs(X).max() * 2)
    mp.mp.dps = 40 + int(spread / 2.3)
    K = params["b1"].shape[0]
    W, b = params["W1"][:, 0], params["b1"]
    Wd, bd = v["W1"][:, 0], v["b1"]
    grads = {"W1": np.zeros((K, 1)), "b1": np.zeros(K)}
    hv = {"W1": np.zeros((K, 1)), "b1": np.zeros(K)}
    tangent = np.zeros((X.shape[0], K))
    for s in range(X.shape[0]):
        x = mp.mpf(float(X[s, 0]))
        y = [mp.mpf(repr(float(t))) for t in Y[s]]
        z = [mp.mpf(float(W[k])) * x + mp.mpf(float(b[k])) for k in range(K)]
        zd = [mp.mpf(float(Wd[k])) * x + mp.mpf(float(bd[k])) for k in range(K)]
        for j in range(K):
            # along e_j (first) and z' (second): dL/dz_j and (H z')_j
            moved = [HyperDual(z[k], int(k == j), zd[k], 0) for k in range(K)]
            out = _loss_of_z(moved, y)
            grads["W1"][j, 0] += scale * float(out.b * x)
            grads["b1"][j] += scale * float(out.b)
            hv["W1"][j, 0] += scale * float(out.d * x)
            hv["b1"][j] += scale * float(out.d)
        a = _softmax(z)
        # a_k' = a_k (z'_k - sum_j a_j z'_j), summed with enough digits
        mean = mp.fsum(a[j] * zd[j] for j in range(K))
        tangent[s] = [float(a[k] * (zd[k] - mean)) for k in range(K)]
    return grads, tangent, hv


def _close(got: np.ndarray, want: np.ndarray, rtol: float, tiny: float) -> bool:
    """Within rtol of the reference, relative to its largest entry. The module clips exp()
    at the smallest normal number instead of underflowing (its _EXP_FLOOR): where the
    reference underflows to 0, a small multiple of that number is allowed."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return bool(np.all(np.abs(got - want) <= rtol * np.abs(want).max() + 100 * tiny))


@pytest.mark.parametrize("units", [2, 5])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_bce_at_every_gap(module_for, units: int, dtype: str) -> None:
    module = module_for(_arch(units, dtype))
    rtol = 1e-12 if dtype == "float64" else 1e-5
    tiny = float(np.finfo(dtype).tiny)
    slope = np.array(SLOPES[units])
    for gap, x in ((gap, x) for gap in GAPS for x in (1.0, -1.0)):
        # x = 1 and x = -1: the dominant unit changes; one sample at a time, so that no
        # gradient is a difference of the samples' contributions.
        params = {"W1": (gap * slope)[:, None].astype(dtype), "b1": np.zeros(units, dtype)}
        X = np.array([[x]], dtype)
        Y = np.array([TARGETS[units]])
        v = {"W1": np.linspace(0.3, -0.4, units)[:, None], "b1": np.linspace(0.1, 0.5, units)}
        v = {k: a.astype(dtype) for k, a in v.items()}
        with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
            warnings.simplefilter("error")
            loss, grads = module.loss_and_grads(params, X, Y.astype(dtype))
            _, a_dot = module.jvp(params, X, v)
            hv = module.hvp(params, X, Y.astype(dtype), v)
        want_g, want_t, want_hv = _reference(params, X, Y, v, 1.0)
        assert np.isfinite(loss), gap
        for key in ("W1", "b1"):
            assert grads[key].dtype == np.dtype(dtype)
            assert _close(grads[key], want_g[key], rtol, tiny), (gap, key, grads[key], want_g)
            assert _close(hv[key], want_hv[key], rtol, tiny), (gap, key, hv[key], want_hv)
        assert _close(a_dot, want_t, rtol, tiny), (gap, a_dot, want_t)


def test_the_old_form_fails_where_the_new_one_holds() -> None:
    """The reference above would have caught issue 18: SymPy's form in a, evaluated as the
    code did before (a from the softmax, 1 - a as a difference), is 7% off at a gap of 36."""
    mp.mp.dps = 60
    z = np.array([18.0, -18.0])
    y = np.array([0.3, 0.7])
    e = np.exp(z - z.max())
    a = e / e.sum()
    with np.errstate(all="ignore"):
        dl_da = -y / a + (1 - y) / (1 - a)
        old = a * (dl_da - np.sum(a * dl_da))
    moved = [[HyperDual(18, 1, 0), HyperDual(-18)], [HyperDual(18), HyperDual(-18, 1, 0)]]
    want = [float(_loss_of_z(m, [mp.mpf("0.3"), mp.mpf("0.7")]).b) for m in moved]
    assert not _close(old, want, 1e-3, 0.0)
    assert _close(want, [1.4, -1.4], 1e-12, 0.0)


def test_the_document_shows_the_error_from_the_logits(tmp_path) -> None:
    from symbp.pipeline import generate

    files = generate(_arch(3, "float64")).files
    tex = next(text for name, text in files.items() if name.endswith(".tex"))
    assert r"\sum_{k \neq j}" in tex  # the error term, per unit
    assert r"q_{jk} = a_j / (1 - a_k)" in tex  # q is defined where it is used
