"""A recurrent cell's step functions, printed from SymPy's derivation (symbp.symbolic.cells)
with a backend's printer: the functions the runtime's loops (_recurrent_forward, ...) call
once per time step. Each takes and returns whole blocks of h entries a row: u and v hold the
G gates side by side (PyTorch's order), a kept row the cell's kept blocks, the carries h
(and c) side by side.
"""

from __future__ import annotations

from collections.abc import Iterable

import sympy as sp

from symbp.backends.numpy.printer import NumPyPrinter, cell_step_name
from symbp.symbolic.cells import Cell, adjoint, cell, dot, incoming, r_of

STEPS = ("forward", "backward", "tangent", "r_backward")
_WHAT = {
    "forward": "one step forward: the kept row from u = x_t W_ih^T + b_ih, "
    "v = h_(t-1) W_hh^T + b_hh and the carries of the step before",
    "backward": "one step of backpropagation through time: dL/du, dL/dv and the carries of "
    "the step before's errors (but d_v W_hh), from the kept row and the new carries' errors",
    "tangent": "one step of the tangents: the kept row's tangent from u', v' and the carries "
    "of the step before's tangents",
    "r_backward": "one step of the R-operator of backpropagation through time: the backward "
    "step and, beside it, R{dL/du}, R{dL/dv} and the R of the carries' errors",
}


def _blocks(names: Iterable[sp.Symbol], source: str) -> list[str]:
    """`a = source[:, :w]`, `b = source[:, w : 2 * w]`, ...: one block of w = h entries each."""
    return [
        f"{x.name} = {source}[:, {k} * w : {k + 1} * w]" if k else f"{x.name} = {source}[:, :w]"
        for k, x in enumerate(names)
    ]


def _joined(p: NumPyPrinter, values: list[sp.Basic], like: str) -> str:
    """The blocks side by side, always a new array (the loops update it in place): a lone
    block computed as it is, a lone name copied, zero as zeros."""
    texts = [f"{p.fn('zeros_like')}({like})" if v == 0 else p._print(v) for v in values]
    if len(texts) == 1:
        fresh = not isinstance(values[0], sp.Symbol)
        return texts[0] if fresh else f"{p.fn('asarray')}({texts[0]}, copy=True)"
    concat = "concatenate" if p.NS == "np" else "concat"
    return f"{p.fn(concat)}(({', '.join(texts)}), axis=1)"


def _statements(
    p: NumPyPrinter, pairs: Iterable[tuple[sp.Symbol, sp.Expr]], skip: Iterable[sp.Symbol] = ()
) -> list[str]:
    """`s = e` for each pair but the zeros (the results print them as zeros) and `skip`."""
    skipped = set(skip)
    return [f"{s.name} = {p._print(e)}" for s, e in pairs if e != 0 and s not in skipped]


def _values(pairs: Iterable[tuple[sp.Symbol, sp.Expr]], symbols: Iterable[sp.Symbol]) -> list:
    """Each symbol, or 0 where its statement is 0."""
    known = dict(pairs)
    return [sp.S.Zero if known.get(s) == 0 else s for s in symbols]


def _forward(c: Cell, p: NumPyPrinter) -> list[str]:
    lines = [*_blocks(c.u, "u"), *_blocks(c.v, "v"), *_blocks(c.previous, "prev")]
    lines += [f"{st.target.name} = {p._print(st.value)}" for st in c.statements]
    return [*lines, f"return {_joined(p, list(c.kept), 'u')}"]


def _unpack(c: Cell) -> list[str]:
    return [*_blocks(c.kept, "row"), *_blocks(c.previous, "prev")]


def _backward_body(c: Cell, p: NumPyPrinter) -> tuple[list[str], list[str]]:
    """The adjoints' statements, and the three results (du, dv, the previous carries')."""
    lines = _blocks([incoming(x) for x in c.carries], "incoming")
    unused = [adjoint(x) for x in c.v] if c.summed else []
    lines += _statements(p, c.adjoints, unused)
    du = _joined(p, _values(c.adjoints, [adjoint(x) for x in c.u]), c.previous[0].name)
    dv = (
        "du"
        if c.summed
        else _joined(p, _values(c.adjoints, [adjoint(x) for x in c.v]), c.previous[0].name)
    )
    before = _joined(p, _values(c.adjoints, [adjoint(x) for x in c.previous]), c.previous[0].name)
    return lines, [du, dv, before]


def _backward(c: Cell, p: NumPyPrinter) -> list[str]:
    lines, (du, dv, before) = _backward_body(c, p)
    return [*_unpack(c), *lines, f"du = {du}", f"return du, {dv}, {before}"]


def _tangent(c: Cell, p: NumPyPrinter) -> list[str]:
    lines = [
        *_unpack(c),
        *_blocks([dot(x) for x in c.u], "ud"),
        *_blocks([dot(x) for x in c.v], "vd"),
        *_blocks([dot(x) for x in c.previous], "prev_d"),
        *_statements(p, c.tangents),
    ]
    return [*lines, f"return {_joined(p, [dot(x) for x in c.kept], 'prev')}"]


def _r_backward(c: Cell, p: NumPyPrinter) -> list[str]:
    lines, (du, dv, before) = _backward_body(c, p)
    lines = [*_unpack(c), *_blocks([dot(x) for x in c.kept], "row_d"),
             *_blocks([dot(x) for x in c.previous], "prev_d"), *lines]  # fmt: skip
    lines += _blocks([r_of(incoming(x)) for x in c.carries], "r_incoming")
    unused = [r_of(adjoint(x)) for x in c.v] if c.summed else []
    lines += _statements(p, c.r_adjoints, unused)
    r = c.r_adjoints
    rdu = _joined(p, _values(r, [r_of(adjoint(x)) for x in c.u]), c.previous[0].name)
    rdv = (
        "rdu"
        if c.summed
        else _joined(p, _values(r, [r_of(adjoint(x)) for x in c.v]), c.previous[0].name)
    )
    r_before = _joined(p, _values(r, [r_of(adjoint(x)) for x in c.previous]), c.previous[0].name)
    return [*lines, f"du = {du}", f"rdu = {rdu}",
            f"return du, {dv}, {before}, rdu, {rdv}, {r_before}"]  # fmt: skip


_BODIES = {"forward": _forward, "backward": _backward, "tangent": _tangent,
           "r_backward": _r_backward}  # fmt: skip
_ARGS = {
    "forward": "u, v, prev",
    "backward": "row, prev, incoming",
    "tangent": "row, prev, ud, vd, prev_d",
    "r_backward": "row, prev, row_d, prev_d, incoming, r_incoming",
}


def step_source(cell_name: str, step: str, p: NumPyPrinter) -> str:
    """The function of one step of the cell, printed with p (whose `used` records the
    runtime helpers it calls)."""
    c = cell(cell_name)
    body = _BODIES[step](c, p)
    carries = len(c.carries)
    width = "prev.shape[1]" if carries == 1 else f"prev.shape[1] // {carries}"
    xp = "xp, " if p.NS != "np" else ""
    doc = f'"""{c.name}: {_WHAT[step]} (printed from SymPy\'s derivation of the cell)."""'
    lines = [f"def {cell_step_name(cell_name, step)}({xp}{_ARGS[step]}):", f"    {doc}",
             f"    w = {width}"]  # fmt: skip
    return "\n".join([*lines, *(f"    {line}" for line in body)])


def cells_source(used: Iterable[tuple[str, str]], p: NumPyPrinter) -> str:
    """The step functions a module calls, in a fixed order (cell, then step)."""
    wanted = sorted(set(used), key=lambda cs: (cs[0], STEPS.index(cs[1])))
    return "\n\n\n".join(step_source(name, step, p) for name, step in wanted)
