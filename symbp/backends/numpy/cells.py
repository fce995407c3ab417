"""A recurrent cell's step functions, printed from SymPy's derivation (symbp.symbolic.cells)
with a backend's printer: the functions the runtime's loops (_recurrent_forward, ...) call
once per time step. Each takes and returns whole blocks of h entries a row: u and v hold the
G gates side by side (PyTorch's order), a kept row the cell's kept blocks, the carries h
(and c) side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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


def _blocks(names: Iterable[sp.Symbol], source: str, reads: set[sp.Symbol]) -> list[str]:
    """`a = source[:, :w]`, `b = source[:, w : 2 * w]`, ...: one block of w = h entries each,
    for the blocks the step reads (so the printed function defines no unused name)."""
    return [
        f"{x.name} = {source}[:, {k} * w : {k + 1} * w]" if k else f"{x.name} = {source}[:, :w]"
        for k, x in enumerate(names)
        if x in reads
    ]


def _live(pairs: Iterable[tuple[sp.Symbol, sp.Expr]], wanted: set) -> list[tuple]:
    """The statements of `pairs` (in order) that the symbols `wanted` need, zeros left out
    (the results print a zero block)."""
    needed, kept = set(wanted), []
    for target, expr in reversed(list(pairs)):
        if target in needed and expr != 0:
            kept.append((target, expr))
            needed |= expr.free_symbols
    return kept[::-1]


def _wanted(c: Cell, step: str) -> set[sp.Symbol]:
    """The symbols a step returns."""
    gates = [*c.u] if c.summed else [*c.u, *c.v]
    if step == "backward":
        return {adjoint(x) for x in (*gates, *c.previous)}
    hidden = c.u if c.summed else c.v
    return {
        *(r_of(adjoint(x)) for x in (*gates, *c.previous)),
        *(adjoint(x) for x in (*hidden, *c.previous)),
    }


def _plan(c: Cell, step: str) -> list[tuple[sp.Symbol, sp.Expr]]:
    """The statements a step prints."""
    if step == "forward":
        within = {u: sp.S.Zero for u in c.u} if c.summed else {}
        return [(st.target, st.value.xreplace(within)) for st in c.statements]
    if step == "tangent":
        return list(c.tangents)
    pairs = c.adjoints if step == "backward" else (*c.adjoints, *c.r_adjoints)
    return _live(pairs, _wanted(c, step))


def _reads(c: Cell, step: str) -> set[sp.Symbol]:
    """What the step's statements and results read (the first previous carry gives the
    shape of a zero block)."""
    plan = _plan(c, step)
    found = set().union(*(e.free_symbols for _, e in plan))
    results = {"forward": set(c.kept), "tangent": {dot(x) for x in c.kept}}.get(step)
    found |= results if results is not None else _wanted(c, step)
    zero_block = results is None and not _wanted(c, step) <= {s for s, _ in plan}
    like = {c.previous[0]} if zero_block else set()
    return {*found, *like, *(c.v if c.summed and step == "forward" else ())}


def _joined(p: NumPyPrinter, values: list[sp.Basic], like: str) -> str:
    """The blocks side by side, always a new array (the loops update it in place): a lone
    block computed as it is, a lone name copied, zero as zeros."""
    texts = [f"{p.fn('zeros_like')}({like})" if v == 0 else p._print(v) for v in values]
    if len(texts) == 1:
        fresh = not isinstance(values[0], sp.Symbol)
        return texts[0] if fresh else f"{p.fn('asarray')}({texts[0]}, copy=True)"
    concat = "concatenate" if _numpy(p) else "concat"
    return f"{p.fn(concat)}(({', '.join(texts)}), axis=1)"


def _statements(p: NumPyPrinter, pairs: Iterable[tuple[sp.Symbol, sp.Expr]]) -> list[str]:
    """`s = e` for each pair but the zeros (the results print them as zeros)."""
    return [f"{s.name} = {p._print(e)}" for s, e in pairs if e != 0]


def _values(pairs: Iterable[tuple[sp.Symbol, sp.Expr]], symbols: Iterable[sp.Symbol]) -> list:
    """Each symbol, or 0 where its statement is 0."""
    known = dict(pairs)
    return [sp.S.Zero if known.get(s) == 0 else s for s in symbols]


def _numpy(p: NumPyPrinter) -> bool:
    """NumPy's module: its steps write their result into `out` (a row block of the loop's
    array) instead of returning a new array the loop would copy."""
    return p.NS == "np"


def _into(p: NumPyPrinter, values: list[sp.Basic], like: str) -> str:
    """The blocks side by side written into out (NumPy)."""
    if len(values) == 1:
        return f"out[...] = {p._print(values[0])}"
    texts = [f"{p.fn('zeros_like')}({like})" if v == 0 else p._print(v) for v in values]
    return f"{p.fn('concatenate')}(({', '.join(texts)}), axis=1, out=out)"


def _forward(c: Cell, p: NumPyPrinter, reads: set[sp.Symbol]) -> list[str]:
    """When every gate reads u + v only (c.summed), the sum is formed once, in v (a new
    array the loop made for this step), and the statements read it in place of u + v."""
    if c.summed:
        lines = ["v += u" if _numpy(p) else "v = v + u"]
        lines += [*_blocks(c.v, "v", reads), *_blocks(c.previous, "prev", reads)]
    else:
        lines = [
            *_blocks(c.u, "u", reads),
            *_blocks(c.v, "v", reads),
            *_blocks(c.previous, "prev", reads),
        ]
    lines += _statements(p, _plan(c, "forward"))
    if _numpy(p):
        return [*lines, _into(p, list(c.kept), c.previous[0].name)]
    return [*lines, f"return {_joined(p, list(c.kept), 'u')}"]


def _unpack(c: Cell, reads: set[sp.Symbol]) -> list[str]:
    return [*_blocks(c.kept, "row", reads), *_blocks(c.previous, "prev", reads)]


def _gate_errors(c: Cell, pairs: tuple, of: Callable[[sp.Symbol], sp.Symbol]) -> tuple:
    """dL/du's blocks and dL/dv's (the same when summed), from `pairs`' statements."""
    du = _values(pairs, [of(x) for x in c.u])
    return du, du if c.summed else _values(pairs, [of(x) for x in c.v])


def _backward_results(c: Cell, p: NumPyPrinter) -> tuple[tuple, str]:
    """dL/du's and dL/dv's blocks, and the previous carries' errors (printed)."""
    before = _joined(p, _values(c.adjoints, [adjoint(x) for x in c.previous]), c.previous[0].name)
    return _gate_errors(c, c.adjoints, adjoint), before


def _results(c: Cell, p: NumPyPrinter, gates: tuple, name: str) -> tuple[list[str], str, str]:
    """Lines forming dL/du and dL/dv (into out on NumPy, where the loop keeps them), and
    the names of the two (the same when summed)."""
    du, dv = gates
    like = c.previous[0].name
    if _numpy(p):
        blocks = du if c.summed else [*du, *dv]
        line = _into(p, blocks, like)
        if c.summed:
            return [line], "out", "out"
        return [line], f"out[:, : {c.G} * w]", f"out[:, {c.G} * w :]"
    lines = [f"{name}u = {_joined(p, du, like)}"]
    if c.summed:
        return lines, f"{name}u", f"{name}u"
    return [*lines, f"{name}v = {_joined(p, dv, like)}"], f"{name}u", f"{name}v"


def _backward(c: Cell, p: NumPyPrinter, reads: set[sp.Symbol]) -> list[str]:
    gates, before = _backward_results(c, p)
    made, du, dv = _results(c, p, gates, "d")
    done = f"return {dv}, {before}" if _numpy(p) else f"return {du}, {dv}, {before}"
    lines = [*_unpack(c, reads), *_blocks([incoming(x) for x in c.carries], "incoming", reads)]
    return [*lines, *_statements(p, _plan(c, "backward")), *made, done]


def _tangent(c: Cell, p: NumPyPrinter, reads: set[sp.Symbol]) -> list[str]:
    lines = [
        *_unpack(c, reads),
        *_blocks([dot(x) for x in c.u], "ud", reads),
        *_blocks([dot(x) for x in c.v], "vd", reads),
        *_blocks([dot(x) for x in c.previous], "prev_d", reads),
        *_statements(p, c.tangents),
    ]
    if _numpy(p):
        return [*lines, _into(p, [dot(x) for x in c.kept], c.previous[0].name)]
    return [*lines, f"return {_joined(p, [dot(x) for x in c.kept], 'prev')}"]


def _r_backward(c: Cell, p: NumPyPrinter, reads: set[sp.Symbol]) -> list[str]:
    (du, dv), before = _backward_results(c, p)
    lines = [*_unpack(c, reads), *_blocks([dot(x) for x in c.kept], "row_d", reads),
             *_blocks([dot(x) for x in c.previous], "prev_d", reads),
             *_blocks([incoming(x) for x in c.carries], "incoming", reads),
             *_blocks([r_of(incoming(x)) for x in c.carries], "r_incoming", reads),
             *_statements(p, _plan(c, "r_backward"))]  # fmt: skip
    r = c.r_adjoints
    r_before = _joined(p, _values(r, [r_of(adjoint(x)) for x in c.previous]), c.previous[0].name)
    made, rdu, rdv = _results(c, p, _gate_errors(c, r, lambda x: r_of(adjoint(x))), "rd")
    lines += [f"dv = {_joined(p, dv, c.previous[0].name)}", *made]
    if _numpy(p):
        return [*lines, f"return dv, {before}, {rdv}, {r_before}"]
    return [*lines, f"return dv, {before}, {rdu}, {rdv}, {r_before}"]


_BODIES = {"forward": _forward, "backward": _backward, "tangent": _tangent,
           "r_backward": _r_backward}  # fmt: skip
# the arguments of each step; NumPy's also take `out`, the loop's row block they fill
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
    body = _BODIES[step](c, p, _reads(c, step))
    carries = len(c.carries)
    width = "prev.shape[1]" if carries == 1 else f"prev.shape[1] // {carries}"
    xp = "" if _numpy(p) else "xp, "
    doc = f'"""{c.name}: {_WHAT[step]} (printed from SymPy\'s derivation of the cell)."""'
    out = ", out" if _numpy(p) else ""
    lines = [f"def {cell_step_name(cell_name, step)}({xp}{_ARGS[step]}{out}):", f"    {doc}",
             f"    w = {width}"]  # fmt: skip
    return "\n".join([*lines, *(f"    {line}" for line in body)])


def cells_source(used: Iterable[tuple[str, str]], p: NumPyPrinter) -> str:
    """The step functions a module calls, in a fixed order (cell, then step)."""
    wanted = sorted(set(used), key=lambda cs: (cs[0], STEPS.index(cs[1])))
    return "\n\n\n".join(step_source(name, step, p) for name, step in wanted)
