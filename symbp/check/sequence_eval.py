"""The embedding's, attention's and the recurrent layers' operations (symbp.ir.sequence_ops,
symbp.ir.attention_ops, symbp.ir.recurrent_ops) evaluated entry by entry on SymPy matrices,
for `symbp verify`'s mirror of the generated code. A recurrent loop runs the cell's step
statements and its backward step (symbp.symbolic.cells: what the code prints) one unit of
one sample at a time.
Written from each operation's definition with plain loops (not from the module's helpers): a
batch of n sequences is n*T rows, row s T + t position t of sample s; token ids are one
integer per row; a score array holds, in row s T + t, head h's T scores in columns
h T .. h T + T - 1.
"""

from __future__ import annotations

import sympy as sp

from symbp.ir import attention_ops as att
from symbp.ir import recurrent_ops as rec
from symbp.ir import sequence_ops as seq
from symbp.symbolic.cells import Cell, adjoint, cell, incoming


class SequenceEvalError(Exception):
    """An operation this evaluator does not define."""


def evaluate(op: type, arrays: list, g: dict[str, int]) -> sp.Matrix:
    """The value of the operation of class `op` on `arrays` (SymPy matrices)."""
    if issubclass(op, seq.TokenOp):
        return _token_op(op, arrays, g)
    if issubclass(op, att.HeadOp):
        return _head_op(op, arrays, g)
    if issubclass(op, rec.RecurrentOp):
        return _recurrent_op(op, arrays, g)
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


def _entries(m: sp.Matrix | None, size: int) -> list:
    """A parameter vector's entries (either orientation), zeros when absent."""
    return [sp.S.Zero] * size if m is None else list(m)


def _recurrent_op(op: type, arrays: list, g: dict[str, int]) -> sp.Matrix:
    c = cell(rec.CELL_NAMES[g["cell"]])
    T, h, G = g["T"], g["h"], g["G"]
    if op is rec.RecurrentForward:
        return _forward_loop(c, arrays, T, h, G)
    if op is rec.RecurrentOutput:
        (S,) = arrays
        if g["last"]:
            return sp.Matrix(S.rows // T, h, lambda s, j: S[s * T + T - 1, j])
        return S[:, :h]
    if op is rec.PreviousOutputs:
        (S,) = arrays
        return sp.Matrix(S.rows, h, lambda r, j: S[r - 1, j] if r % T else sp.S.Zero)
    if op is rec.RecurrentBackward:
        return _backward_loop(c, arrays, g)
    if op is rec.GateErrors:
        return arrays[0][:, : G * h]
    if op is rec.HiddenGateErrors:
        E = arrays[0]
        return E[:, : G * h] if g["summed"] else E[:, G * h :]
    raise SequenceEvalError(f"no entry-by-entry definition of {op.__name__}")


def _forward_loop(c: Cell, arrays: list, T: int, h: int, G: int) -> sp.Matrix:
    """Each sample's steps in order: v = Whh h_(t-1) + bhh, the cell's statements for each
    unit, the kept values in blocks of h."""
    U, Whh, bhh = arrays
    bias = _entries(bhh, G * h)
    kept = sp.zeros(U.rows, len(c.kept) * h)
    for r in range(U.rows):
        t = r % T
        prev = [[kept[r - 1, k * h + j] if t else sp.S.Zero for j in range(h)]
                for k in range(len(c.carries))]  # fmt: skip
        v = [bias[i] + sp.Add(*[Whh[i, k] * prev[0][k] for k in range(h)]) for i in range(G * h)]
        for j in range(h):
            env = {x: U[r, q * h + j] for q, x in enumerate(c.u)}
            env.update({x: v[q * h + j] for q, x in enumerate(c.v)})
            env.update({x: prev[k][j] for k, x in enumerate(c.previous)})
            for st in c.statements:
                env[st.target] = st.value.xreplace(env)
            for b, x in enumerate(c.kept):
                kept[r, b * h + j] = env[x]
    return kept


def _backward_loop(c: Cell, arrays: list, g: dict[str, int]) -> sp.Matrix:
    """Each sample's steps in reverse: the carries' incoming errors (the rows of D, or D at
    the last step; plus Whh^T dv of the step after for h) through the cell's backward
    statements for each unit; dL/du (and dL/dv) of every row."""
    S, Whh, D = arrays
    T, h, G = g["T"], g["h"], g["G"]
    wide = G * h * (1 if g["summed"] else 2)
    out = sp.zeros(S.rows, wide)
    carries = len(c.carries)
    for s in range(S.rows // T):
        after = [[sp.S.Zero] * h for _ in range(carries)]
        for t in range(T - 1, -1, -1):
            r = s * T + t
            above = None
            if D is not None and not g["last"]:
                above = [D[r, j] for j in range(h)]
            elif D is not None and t == T - 1:
                above = [D[s, j] for j in range(h)]
            given = [[a + (above[j] if k == 0 and above else 0) for j, a in enumerate(row)]
                     for k, row in enumerate(after)]  # fmt: skip
            du, dv = [sp.S.Zero] * (G * h), [sp.S.Zero] * (G * h)
            before = [[sp.S.Zero] * h for _ in range(carries)]
            for j in range(h):
                env = {x: S[r, b * h + j] for b, x in enumerate(c.kept)}
                env.update({x: S[r - 1, k * h + j] if t else sp.S.Zero
                            for k, x in enumerate(c.previous)})  # fmt: skip
                env.update({incoming(x): given[k][j] for k, x in enumerate(c.carries)})
                for target, expr in c.adjoints:
                    env[target] = expr.xreplace(env)
                for q in range(G):
                    du[q * h + j] = env[adjoint(c.u[q])]
                    dv[q * h + j] = env[adjoint(c.v[q])]
                for k, x in enumerate(c.previous):
                    before[k][j] = env[adjoint(x)]
            for i in range(G * h):
                out[r, i] = du[i]
                if not g["summed"]:
                    out[r, G * h + i] = dv[i]
            sent = [sp.Add(*[dv[i] * Whh[i, k] for i in range(G * h)]) for k in range(h)]
            after = [[b + (sent[j] if k == 0 else 0) for j, b in enumerate(row)]
                     for k, row in enumerate(before)]  # fmt: skip
    return out
