#!/usr/bin/env python
"""Backpropagation through time: a shared weight's gradient accumulated step by step in the
reverse loop, or formed in one product of all rows after it (what symbp's code does).

    python bench/bptt_weights.py [--repeat N]

dW_hh = sum_t dV_t^T h_(t-1) for the benchmark's LSTM (T 32, batch 64, 4 x 128 gates,
128 units, float32): 32 products of (512 x 64)(64 x 128) added into one array, against
one (512 x 2048)(2048 x 128) product. Both in this process, medians of N runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

T, N, GATES, UNITS = 32, 64, 512, 128


def _median_ms(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return sorted(times)[repeat // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=31)
    repeat = parser.parse_args().repeat
    rng = np.random.default_rng(0)
    dV = rng.standard_normal((N, T, GATES)).astype(np.float32)
    H = rng.standard_normal((N, T, UNITS)).astype(np.float32)
    rows_dV, rows_H = dV.reshape(N * T, GATES), H.reshape(N * T, UNITS)

    def accumulated() -> np.ndarray:
        total = np.zeros((GATES, UNITS), np.float32)
        for t in range(T):
            total += dV[:, t].T @ H[:, t]
        return total

    def after() -> np.ndarray:
        return rows_dV.T @ rows_H

    gap = float(np.abs(accumulated() - after()).max() / np.abs(after()).max())
    a, b = _median_ms(accumulated, repeat), _median_ms(after, repeat)
    print(f"accumulated in the loop {a:.2f} ms, one product after it {b:.2f} ms: "
          f"{a / b:.2f}x (largest difference {gap:.1e} of the largest entry)")  # fmt: skip


if __name__ == "__main__":
    main()
