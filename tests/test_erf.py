"""The generated module's _erf (W. J. Cody's rational approximations, rendered for gelu).

Accuracy is measured in ulps of math.erf on a dense grid; negative controls (one coefficient
off by 1e-6, and the Gauss-Legendre quadrature the helper used before) show that the bound
is tight enough to fail.
"""

from __future__ import annotations

import math
import warnings
from types import ModuleType

import numpy as np
import pytest

import symbp
from symbp.check.gradcheck import import_path
from symbp.frontend.spec import arch_from_mapping

MAX_ULPS = 4  # float64, against math.erf (itself within 1 ulp); measured: 2
MAX_ULPS_32 = 2  # float32 (one rational function, bench/erf_fit.py), against math.erf rounded

# Coefficients whose 1e-6 relative error moves erf by more than MAX_ULPS somewhere on the
# grid. The others cannot show through erf in float64: C[8] x^8 is at most 5e-9 of its
# numerator (|x| <= 4), and P, Q only shape erfc(x) < 1.6e-8 for |x| >= 4.
SENSITIVE = [("A", i) for i in range(5)] + [("B", i) for i in range(4)]
SENSITIVE += [("C", i) for i in range(8)] + [("D", i) for i in range(8)]

TINY = float(np.finfo(np.float64).smallest_subnormal)
HUGE = float(np.finfo(np.float64).max)


@pytest.fixture(scope="module")
def erf_module(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    arch = arch_from_mapping(
        {
            "name": "g",
            "input": 2,
            "layers": [{"units": 3, "activation": "gelu"}, {"units": 1}],
            "loss": "mse",
        }
    )
    folder = tmp_path_factory.mktemp("erf")
    symbp.write_files(symbp.generate(arch).files, folder)
    return import_path(folder / "g.py")


def _grid() -> np.ndarray:
    """200,001 points on [-7, 7], both sides of each range boundary, small and huge |x|."""
    edges = np.array([0.5, 4.0, 6.0])
    steps = np.arange(-64, 65)
    near_edges = (edges[:, None] + steps * np.spacing(edges)[:, None]).ravel()
    positive = np.concatenate(
        [
            near_edges,
            np.geomspace(TINY, 0.5, 4000),
            np.linspace(7, 40, 2000),
            [1e4, 1e10, 1e300, HUGE],
        ]
    )
    return np.concatenate([np.linspace(-7, 7, 200_001), positive, -positive])


GRID = _grid()
REFERENCE = np.array([math.erf(v) for v in GRID.tolist()])


def _max_ulps(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| in units of the spacing of the floats (of ref's dtype) at ref."""
    assert got.dtype == ref.dtype and got.shape == ref.shape
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    return float(np.max(diff / np.spacing(np.abs(ref)).astype(np.float64)))


def _reference(x: np.ndarray) -> np.ndarray:
    """math.erf of each entry, rounded to x's dtype."""
    values = x.astype(np.float64).ravel().tolist()
    return np.array([math.erf(v) for v in values]).astype(x.dtype).reshape(x.shape)


def _quadrature_erf(u):
    """The helper before Cody's approximations: 48-point Gauss-Legendre on [0, min(|u|, 6)]."""
    t_nodes, weights = np.polynomial.legendre.leggauss(48)
    u = np.asarray(u)
    h = np.minimum(np.abs(u), 6.0)[..., None] / 2
    t = h * (t_nodes + 1)
    total = (h * (weights * np.exp(-t * t))).sum(axis=-1)
    return (np.sign(u) * total * (2 / np.sqrt(np.pi))).astype(u.dtype, copy=False)


def test_float64_is_within_a_few_ulp_of_math_erf(erf_module: ModuleType) -> None:
    got = erf_module._erf(GRID)
    assert got.dtype == np.float64
    assert _max_ulps(got, REFERENCE) <= MAX_ULPS


@pytest.mark.parametrize(("name", "index"), SENSITIVE, ids=[f"{n}{i}" for n, i in SENSITIVE])
@pytest.mark.parametrize("factor", [1 + 1e-6, 1 - 1e-6])
def test_a_coefficient_off_by_1e_6_fails_the_ulp_bound(
    erf_module: ModuleType, monkeypatch: pytest.MonkeyPatch, name: str, index: int, factor: float
) -> None:
    coefficients = list(getattr(erf_module, f"_ERF_{name}"))
    coefficients[index] *= factor
    monkeypatch.setattr(erf_module, f"_ERF_{name}", tuple(coefficients))
    assert _max_ulps(erf_module._erf(GRID), REFERENCE) > MAX_ULPS


def test_the_former_quadrature_fails_the_ulp_bound() -> None:
    assert _max_ulps(_quadrature_erf(GRID), REFERENCE) > MAX_ULPS


def test_float32_in_float32_out_and_correct_to_float32_precision(
    erf_module: ModuleType,
) -> None:
    x = np.unique(GRID[np.abs(GRID) < 1e38].astype(np.float32))
    got = erf_module._erf(x)
    ref = _reference(x)
    assert got.dtype == np.float32
    assert _max_ulps(got, ref) <= MAX_ULPS_32


@pytest.mark.parametrize("index", range(5))
def test_a_float32_coefficient_off_by_1e_5_fails_the_ulp_bound(
    erf_module: ModuleType, monkeypatch: pytest.MonkeyPatch, index: int
) -> None:
    x = np.unique(GRID[np.abs(GRID) < 1e38].astype(np.float32))
    coefficients = list(erf_module._ERF_SP)
    coefficients[index] *= 1 + 1e-5
    monkeypatch.setattr(erf_module, "_ERF_SP", tuple(coefficients))
    assert _max_ulps(erf_module._erf(x), _reference(x)) > MAX_ULPS_32


def test_odd_symmetry_is_exact(erf_module: ModuleType) -> None:
    x = GRID[(GRID >= 0) & (GRID < 1e38)]
    for dtype in (np.float64, np.float32):
        v = x.astype(dtype)
        assert np.array_equal(erf_module._erf(-v), -erf_module._erf(v))


def test_special_values(erf_module: ModuleType) -> None:
    erf = erf_module._erf
    for dtype in (np.float64, np.float32):
        one = dtype(1)
        zero = erf(dtype(0.0))
        assert zero == 0 and not np.signbit(zero)
        minus_zero = erf(dtype(-0.0))
        assert minus_zero == 0 and np.signbit(minus_zero)
        assert erf(dtype(np.inf)) == one and erf(dtype(-np.inf)) == -one
        assert np.isnan(erf(dtype(np.nan)))
        big = np.array([6, 1e4, np.finfo(dtype).max], dtype)
        assert np.all(erf(big) == one) and np.all(erf(-big) == -one)
    nan_inside = erf(np.array([0.1, np.nan, 2.0, np.nan, 5.0]))
    assert np.array_equal(np.isnan(nan_inside), [False, True, False, True, False])
    for x in (TINY, 1e-300, float(np.finfo(np.float64).tiny), 1e-8):
        assert abs(erf(x) - math.erf(x)) <= np.spacing(math.erf(x)) and erf(-x) == -erf(x)


def _hostile(dtype: type) -> np.ndarray:
    """Zeros, subnormals, the range boundaries, huge values, infinities and NaN, both signs."""
    info = np.finfo(dtype)
    magnitudes = [0.0, info.smallest_subnormal, info.tiny, 1e-30, 0.5, 4.0, 6.0, 30.0, 1e4]
    magnitudes += [info.max, np.inf]
    positive = np.array(magnitudes, dtype)
    return np.concatenate([positive, -positive, np.array([np.nan], dtype)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_no_floating_point_warning_for_any_input(erf_module: ModuleType, dtype: type) -> None:
    values = _hostile(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            together = erf_module._erf(values)
            one_by_one = np.array([erf_module._erf(v) for v in values])  # each range alone
    assert together.dtype == one_by_one.dtype == dtype
    assert np.array_equal(np.isnan(together), np.isnan(values))
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(one_by_one, together, rtol=2 * eps, atol=0)


def test_shapes_and_dtypes(erf_module: ModuleType) -> None:
    erf = erf_module._erf
    scalar = erf(0.3)
    assert isinstance(scalar, np.float64) and abs(scalar - math.erf(0.3)) < 1e-16
    assert isinstance(erf(np.float32(0.3)), np.float32)
    zero_d = erf(np.array(-1.5))
    assert isinstance(zero_d, np.float64) and abs(zero_d - math.erf(-1.5)) < 1e-15
    assert erf(np.array([0, 2])).dtype == np.float64  # integers give float64
    assert erf(np.zeros((0, 3), np.float32)).shape == (0, 3)
    # More entries than one block of the helper, every range among them.
    a = np.random.default_rng(0).standard_normal((3, 150, 97)) * 3
    a[0, 0, :4] = [np.inf, -np.inf, 7.0, -0.0]
    for dtype, bound in ((np.float64, MAX_ULPS), (np.float32, MAX_ULPS_32), (np.float16, 1)):
        x = a.astype(dtype)
        got = erf(x)
        assert got.dtype == dtype and got.shape == x.shape
        assert _max_ulps(got, _reference(x)) <= bound
    x = a[1]
    for view in (x.T, x[::3, ::-2], np.asfortranarray(x)):
        assert _max_ulps(erf(view), _reference(view)) <= MAX_ULPS
    x.flags.writeable = False
    before = x.copy()
    erf(x)
    assert np.array_equal(x, before)
