"""The rational approximation the generated modules use for erf in float32 (_ERF_SP, _ERF_SQ).

erf(x) ~ x P(x^2) / Q(x^2), Q(0) = 1, degrees 6 and 4 in s = x^2, fitted on [0, 4] for small
relative error: a linearised least-squares fit (Sanathanan-Koerner: divide by the previous Q),
then reweighting towards the points of largest error (Lawson). Prints the coefficients, the
largest relative error on the grid and the largest error in float32 ulps after rounding.

    python bench/erf_fit.py
"""

from __future__ import annotations

import math

import numpy as np

X_MAX, P_TERMS, Q_TERMS = 4.0, 7, 5


def fit() -> tuple[np.ndarray, np.ndarray, float]:
    x = np.sort(np.concatenate([np.linspace(1e-4, X_MAX, 6000), np.geomspace(1e-8, 1e-4, 50)]))
    f = np.array([math.erf(v) for v in x])
    s, g = x * x, f / x
    weights, q_values = np.ones_like(x), np.ones_like(x)
    for step in range(60):
        columns = [np.vander(s, P_TERMS, increasing=True)]
        columns.append(-g[:, None] * np.vander(s, Q_TERMS, increasing=True)[:, 1:])
        scale = weights / (q_values * np.abs(g))
        coef, *_ = np.linalg.lstsq(np.hstack(columns) * scale[:, None], g * scale, rcond=None)
        p, q = coef[:P_TERMS], np.concatenate([[1.0], coef[P_TERMS:]])
        q_values = np.polyval(q[::-1], s)
        error = np.abs(x * np.polyval(p[::-1], s) / q_values - f) / f
        if step >= 10:
            weights = weights * (error / error.max()) ** 0.3 + 1e-12
    return p, q, float(error.max())


def float32_ulps(p: np.ndarray, q: np.ndarray) -> float:
    x = np.linspace(-6, 6, 200_001).astype(np.float32)
    v = np.clip(x.astype(np.float64), -X_MAX, X_MAX)
    got = (v * np.polyval(p[::-1], v * v) / np.polyval(q[::-1], v * v)).astype(np.float32)
    ref = np.array([math.erf(t) for t in x.astype(np.float64)]).astype(np.float32)
    spacing = np.spacing(np.abs(ref)).astype(np.float64)
    return float(np.max(np.abs(got.astype(np.float64) - ref) / spacing))


def main() -> None:
    p, q, error = fit()
    print("_ERF_SP =", tuple(float(c) for c in p))
    print("_ERF_SQ =", tuple(float(c) for c in q))
    print(f"largest relative error on [0, {X_MAX}]: {error:.2e}")
    print(f"largest error in float32 ulps: {float32_ulps(p, q):.2f}")


if __name__ == "__main__":
    main()
