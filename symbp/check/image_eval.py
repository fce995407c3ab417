"""The image operations of symbp.ir.image_ops evaluated entry by entry on SymPy matrices,
for `symbp verify`'s mirror of the generated code. Written from each operation's
definition with plain loops (not from the NumPy helpers): per-sample arrays are (n, C*H*W)
rows in C order, a kernel is its (F, C kh kw) matrix, a bias an (F, 1) column.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import sympy as sp

from symbp.ir import image_ops as ops

Grid = Callable[[int, int, int], sp.Expr]


def _reader(row: sp.Matrix, C: int, H: int, W: int) -> Grid:
    """x(c, u, v) of one sample (u, v in the unpadded image; zero outside it)."""

    def x(c: int, u: int, v: int) -> sp.Expr:
        return row[(c * H + u) * W + v] if 0 <= u < H and 0 <= v < W else sp.S.Zero

    return x


def _windows(g: dict[str, int]):
    """(i, j, [(p, q, u, v), ...]): each output position and the input entries it reads."""
    for i, j in itertools.product(range(g["Ho"]), range(g["Wo"])):
        yield (
            i,
            j,
            [
                (p, q, i * g["sh"] + p - g["ph"], j * g["sw"] + q - g["pw"])
                for p in range(g["kh"])
                for q in range(g["kw"])
            ],
        )


def _first_max(values: list[sp.Expr]) -> int:
    """The index of the first largest value."""
    best = 0
    for k, value in enumerate(values):
        if bool(value > values[best]):
            best = k
    return best


def evaluate(op: type, arrays: list, g: dict[str, int]) -> sp.Matrix:
    """The value of the image operation of class `op` (symbp.ir.image_ops) on `arrays`."""
    C, H, W, F, Ho, Wo = (g[k] for k in ("C", "H", "W", "F", "Ho", "Wo"))
    k_area = g["kh"] * g["kw"]
    first = next(a for a in arrays if a is not None)
    n = first.rows if op not in (ops.Conv2dBackKernel,) else arrays[0].rows
    if op is ops.Conv2d:
        a, w, b = arrays
        out = sp.zeros(n, F * Ho * Wo)
        for s in range(n):
            x = _reader(a[s, :], C, H, W)
            for f, (i, j, cells) in itertools.product(range(F), _windows(g)):
                total = sp.Add(
                    *[
                        w[f, c * k_area + p * g["kw"] + q] * x(c, u, v)
                        for c in range(C)
                        for p, q, u, v in cells
                    ]
                )
                out[s, (f * Ho + i) * Wo + j] = total + (b[f] if b is not None else 0)
        return out
    if op is ops.Conv2dBackKernel:
        a, d = arrays
        out = sp.zeros(F, C * k_area)
        for s in range(n):
            x = _reader(a[s, :], C, H, W)
            for f, (i, j, cells) in itertools.product(range(F), _windows(g)):
                delta = d[s, (f * Ho + i) * Wo + j]
                for c in range(C):
                    for p, q, u, v in cells:
                        out[f, c * k_area + p * g["kw"] + q] += delta * x(c, u, v)
        return out
    if op is ops.Unfold:
        (a,) = arrays
        out = sp.zeros(n, C * k_area * Ho * Wo)
        for s in range(n):
            x = _reader(a[s, :], C, H, W)
            for c, (i, j, cells) in itertools.product(range(C), _windows(g)):
                for p, q, u, v in cells:
                    row = (c * g["kh"] + p) * g["kw"] + q
                    out[s, row * Ho * Wo + i * Wo + j] = x(c, u, v)
        return out
    if op in (ops.Conv2dColumns, ops.Conv2dBackKernelColumns):
        return _from_columns(op, arrays, g)
    return _backward_or_pool(op, arrays, g, n)


def _from_columns(op: type, arrays: list, g: dict[str, int]) -> sp.Matrix:
    """The conv's product with its unfolded input: z (n, F Ho Wo) or dL/dW (F, C kh kw)."""
    cols, other = arrays[0], arrays[1]
    F, positions = g["F"], g["Ho"] * g["Wo"]
    rows = g["C"] * g["kh"] * g["kw"]
    n = cols.rows
    if op is ops.Conv2dColumns:
        b = arrays[2]
        out = sp.zeros(n, F * positions)
        for s, f, k in itertools.product(range(n), range(F), range(positions)):
            total = sp.Add(*[other[f, r] * cols[s, r * positions + k] for r in range(rows)])
            out[s, f * positions + k] = total + (b[f] if b is not None else 0)
        return out
    out = sp.zeros(F, rows)
    for f, r in itertools.product(range(F), range(rows)):
        out[f, r] = sp.Add(*[other[s, f * positions + k] * cols[s, r * positions + k]
                             for s in range(n) for k in range(positions)])  # fmt: skip
    return out


def _backward_or_pool(op: type, arrays: list, g: dict[str, int], n: int) -> sp.Matrix:
    """What goes back to a conv's input, and the poolings with their derivatives."""
    C, H, W, F, Ho, Wo = (g[k] for k in ("C", "H", "W", "F", "Ho", "Wo"))
    k_area = g["kh"] * g["kw"]
    pooled = op in (ops.MaxPool, ops.AvgPool, ops.MaxPoolPick)
    out = sp.zeros(n, C * Ho * Wo if pooled else C * H * W)

    def add(s: int, c: int, u: int, v: int, value: sp.Expr) -> None:
        if 0 <= u < H and 0 <= v < W:
            out[s, (c * H + u) * W + v] += value

    for s in range(n):
        for i, j, cells in _windows(g):
            for f in range(F):
                if op is ops.Conv2dBackInput:
                    d, w = arrays
                    delta = d[s, (f * Ho + i) * Wo + j]
                    for c in range(C):
                        for p, q, u, v in cells:
                            add(s, c, u, v, delta * w[f, c * k_area + p * g["kw"] + q])
                    continue
                c, at = f, (f * Ho + i) * Wo + j  # pooling: channel by channel
                if op is ops.AvgPoolBack:
                    for _, _, u, v in cells:
                        add(s, c, u, v, arrays[0][s, at] / k_area)
                    continue
                x = _reader(arrays[0][s, :], C, H, W)
                values = [x(c, u, v) for _, _, u, v in cells]
                if op is ops.MaxPool:
                    out[s, at] = values[_first_max(values)]
                elif op is ops.AvgPool:
                    out[s, at] = sp.Add(*values) / k_area
                elif op is ops.MaxPoolPick:  # arrays: A, the pooled maxima, D
                    _, _, u, v = cells[_first_max(values)]
                    out[s, at] = _reader(arrays[2][s, :], C, H, W)(c, u, v)
                elif op is ops.MaxPoolRoute:
                    _, _, u, v = cells[_first_max(values)]
                    add(s, c, u, v, arrays[2][s, at])
                else:
                    raise ValueError(f"unknown image operation {op}")
    return out
