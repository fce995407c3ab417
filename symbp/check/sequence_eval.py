"""The embedding's and attention's operations (symbp.ir.sequence_ops, symbp.ir.attention_ops)
evaluated entry by entry on SymPy matrices, for `symbp verify`'s mirror of the generated code.
Written from each operation's definition with plain loops (not from the module's helpers): a
batch of n sequences is n*T rows, row s T + t position t of sample s; token ids are one
integer per row; a score array holds, in row s T + t, head h's T scores in columns
h T .. h T + T - 1.
"""

from __future__ import annotations

import sympy as sp

from symbp.ir import attention_ops as att
from symbp.ir import sequence_ops as seq


class SequenceEvalError(Exception):
    """An operation this evaluator does not define."""


def evaluate(op: type, arrays: list, g: dict[str, int]) -> sp.Matrix:
    """The value of the operation of class `op` on `arrays` (SymPy matrices)."""
    if issubclass(op, seq.TokenOp):
        return _token_op(op, arrays, g)
    if issubclass(op, att.HeadOp):
        return _head_op(op, arrays, g)
    raise SequenceEvalError(f"no entry-by-entry definition of {op.__name__}")


def _ids(matrix: sp.Matrix) -> list[int]:
    return [int(v) for v in matrix]


def _token_op(op: type, arrays: list, g: dict[str, int]) -> sp.Matrix:
    V, dim, T = g["V"], g["dim"], g["T"]
    if op is seq.Lookup:
        E, ids = arrays
        rows = _ids(ids)
        return sp.Matrix(len(rows), dim, lambda r, j: E[rows[r], j])
    if op is seq.TilePositions:
        P, ids = arrays
        return sp.Matrix(len(ids), dim, lambda r, j: P[r % T, j])
    if op is seq.Sinusoid:
        _, ids = arrays

        def entry(r: int, j: int) -> sp.Expr:
            angle = sp.Integer(r % T) / sp.Integer(10000) ** sp.Rational(2 * (j // 2), dim)
            return sp.sin(angle) if j % 2 == 0 else sp.cos(angle)

        return sp.Matrix(len(ids), dim, entry)
    if op is seq.ScatterRows:
        D, ids = arrays
        rows = _ids(ids)
        out = sp.zeros(V, dim)
        for r, v in enumerate(rows):
            out[v, :] += D[r, :]
        return out
    if op is seq.PositionTotal:
        (D,) = arrays
        out = sp.zeros(T, dim)
        for r in range(D.rows):
            out[r % T, :] += D[r, :]
        return out
    raise SequenceEvalError(f"no entry-by-entry definition of {op.__name__}")


def _head_op(op: type, arrays: list, g: dict[str, int]) -> sp.Matrix:
    T, d, heads, causal = g["T"], g["d"], g["heads"], bool(g["causal"])
    width = d // heads
    rows = arrays[0].rows
    samples = rows // T

    def head(i: int) -> int:
        return i // width

    if op is att.HeadOuter:
        A, B = arrays
        out = sp.zeros(rows, heads * T)
        for s in range(samples):
            for h in range(heads):
                cols = range(h * width, (h + 1) * width)
                for t in range(T):
                    for u in range(T):
                        out[s * T + t, h * T + u] = sp.Add(
                            *[A[s * T + t, i] * B[s * T + u, i] for i in cols]
                        )
        return out
    if op is att.HeadSoftmax:
        (S,) = arrays
        out = sp.zeros(rows, heads * T)
        for r in range(rows):
            t = r % T
            for h in range(heads):
                keys = range(t + 1) if causal else range(T)
                e = {u: sp.exp(S[r, h * T + u]) for u in keys}
                total = sp.Add(*e.values())
                for u in keys:
                    out[r, h * T + u] = e[u] / total
        return out
    if op is att.HeadMix:  # row s T + t, column i of head h: sum_u P[t, u] V[u, i]
        P, Vv = arrays
        return sp.Matrix(
            rows,
            d,
            lambda r, i: sp.Add(
                *[P[r, head(i) * T + u] * Vv[(r // T) * T + u, i] for u in range(T)]
            ),
        )
    if op is att.HeadMixT:  # row s T + u, column i of head h: sum_t P[t, u] D[t, i]
        P, D = arrays
        return sp.Matrix(
            rows,
            d,
            lambda r, i: sp.Add(
                *[
                    P[(r // T) * T + t, head(i) * T + r % T] * D[(r // T) * T + t, i]
                    for t in range(T)
                ]
            ),
        )
    if op is att.HeadRowSum:
        (X,) = arrays
        return sp.Matrix(
            rows,
            heads * T,
            lambda r, c: sp.Add(*[X[r, (c // T) * T + u] for u in range(T)]),
        )
    raise SequenceEvalError(f"no entry-by-entry definition of {op.__name__}")
