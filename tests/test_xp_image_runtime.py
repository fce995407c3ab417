"""The array-API runtime's image helpers against the NumPy runtime's, helper by helper, on
NumPy and array-api-strict arrays: tiled pooling windows (the reshape path) and
overlapping or padded ones (the loop path), images whose size the windows do not divide,
ties in max pooling (a ReLU's zeros), and convolutions through what _kept keeps."""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest

from symbp.backends.array_api import runtime as xr
from symbp.backends.numpy import runtime as nr


def _geometry(C, H, W, F, k, s, p):
    Ho, Wo = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    return (C, H, W, F, Ho, Wo, *k, *s, *p)


# (C, H, W, F, kernel, stride, padding); the first three tile (stride = window, no padding)
POOLS = [
    (2, 8, 8, 2, (2, 2), (2, 2), (0, 0)),
    (3, 7, 9, 3, (2, 3), (2, 3), (0, 0)),  # rows and columns past the last window
    (1, 6, 6, 1, (6, 6), (6, 6), (0, 0)),  # one window: global pooling
    (2, 7, 7, 2, (3, 3), (2, 2), (0, 0)),  # overlapping
    (2, 5, 6, 2, (2, 2), (1, 1), (0, 0)),  # stride 1 (pooling has no padding)
]
CONVS = [
    (2, 6, 5, 3, (3, 3), (1, 1), (1, 1)),
    (3, 7, 7, 2, (2, 3), (2, 1), (0, 1)),
    (1, 4, 4, 2, (2, 2), (2, 2), (0, 0)),  # unfolding keeps as many entries as the image
]


def _arrays(g, seed):
    rng = np.random.default_rng(seed)
    n = 3
    A = np.maximum(rng.standard_normal((n, g[0] * g[1] * g[2])), 0.0)  # ties at 0
    A[0, : g[1] * g[2]] = 0.0  # a whole channel of ties
    D = rng.standard_normal((n, g[3] * g[4] * g[5]))
    T = rng.standard_normal(A.shape)  # a tangent, shaped like the input
    return A, D, T


@pytest.mark.parametrize("lib", ["numpy", "strict"])
@pytest.mark.parametrize("spec", POOLS)
def test_pooling_helpers_equal_the_numpy_runtimes(spec, lib: str) -> None:
    g = _geometry(*spec)
    xp = np if lib == "numpy" else array_api_strict
    A, D, T = _arrays(g, 1)
    a, d, t = (xp.asarray(v) for v in (A, D, T))
    M = nr._maxpool(A, g)
    cases = {
        "maxpool": (xr._maxpool(xp, a, g), M),
        "maxpool_route": (
            xr._maxpool_route(xp, a, xp.asarray(M), d, g),
            nr._maxpool_route(A, M, D, g),
        ),
        "maxpool_pick": (
            xr._maxpool_pick(xp, a, xp.asarray(M), t, g),
            nr._maxpool_pick(A, M, T, g),
        ),
        "avgpool": (xr._avgpool(xp, a, g), nr._avgpool(A, g)),
        "avgpool_back": (xr._avgpool_back(xp, d, g), nr._avgpool_back(D, g)),
    }
    for name, (got, want) in cases.items():
        got = np.asarray(got)
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("lib", ["numpy", "strict"])
@pytest.mark.parametrize("spec", CONVS)
def test_convolution_through_what_is_kept(spec, lib: str) -> None:
    g = _geometry(*spec)
    xp = np if lib == "numpy" else array_api_strict
    A, D, _ = _arrays(g, 2)
    rng = np.random.default_rng(3)
    Wk = rng.standard_normal((g[3], g[0], g[6], g[7]))
    b = rng.standard_normal(g[3])
    kept = xr._kept(xp, xp.asarray(A), g)
    got_z = xr._conv2d_kept(xp, kept, xp.asarray(Wk), xp.asarray(b), g)
    got_w = xr._conv2d_back_kernel_kept(xp, kept, xp.asarray(D), g)
    want_z, want_w = nr._conv2d(A, Wk, b, g), nr._conv2d_back_kernel(A, D, g)
    np.testing.assert_allclose(np.asarray(got_z), want_z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(got_w), want_w, rtol=1e-12, atol=1e-12)
