"""embedding: token ids to vectors, z_t = E[x_t] + P_t, the first layer of a token input.

SymPy differentiates the index equation z_{r,j} = sum_v [x_r = v] E_{v,j} + P_{t,j} (row r is
position t of its sample): dz_{r,j}/dE_{q,k} = [x_r = q][j = k], so
dL/dE_{q,k} = sum_r [x_r = q] delta_{r,k}, a scatter-add of the error rows by token (a token
that occurs several times adds up), and dz_{r,j}/dP_{q,k} = [t = q][j = k], so dL/dP is the sum
over the samples of each position's error row. The ids are integers: nothing goes back to
them. The layer is linear in E and P, so its tangent is the same lookup of the directions and
R{dL/dE} is the scatter of R{delta}. The sinusoidal positions are a constant table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from symbp.derivation.context import Context, Cost, node_symbols
from symbp.derivation.derive import L2_WEIGHT
from symbp.errors import DerivationError
from symbp.ir.bindings import Family, Kind
from symbp.ir.graph import Node
from symbp.ir.naming import Role, array
from symbp.ir.sequence_ops import (
    Lookup,
    PositionTotal,
    ScatterRows,
    Sinusoid,
    TilePositions,
    embedding_geometry,
)
from symbp.symbolic.indexed import in_range

# z is not one product: it keeps its own array
Z_IN_ONE_PRODUCT = False
KEYS = ("dim", "positions")


@dataclass(frozen=True)
class EmbeddingCalculus:
    """The index equation and SymPy's derivatives of it (row r at position t)."""

    z: sp.Expr
    dz_dE: sp.Expr
    dz_dP: sp.Expr
    dL_dE: sp.Expr
    dL_dP: sp.Expr

    def __repr__(self) -> str:
        return f"EmbeddingCalculus(dL/dE = {self.dL_dE})"


R, V_, Q, J, K, T_, S = sp.symbols("r v q j k t s", integer=True, nonnegative=True)
VOCAB, DIM, ROWS, SAMPLES = sp.symbols("V d_m R m", integer=True, positive=True)
X, E, P, DELTA = (sp.IndexedBase(n) for n in ("x", "E", "P", r"\delta"))


@functools.lru_cache(maxsize=1)
def embedding_calculus() -> EmbeddingCalculus:
    """SymPy's derivatives of z_{r,j} = sum_v [x_r = v] E_{v,j} + P_{t,j}, summed against
    delta; checked on a small instance against the scatter-add and the sum over samples
    the code evaluates (duplicate tokens included)."""
    z = sp.Sum(sp.KroneckerDelta(X[R], V_) * E[V_, J], (V_, 0, VOCAB - 1)) + P[T_, J]
    dz_dE = in_range(sp.diff(z, E[Q, K]).doit())
    dz_dP = sp.diff(z, P[Q, K])
    dL_dE = in_range(sp.Sum(DELTA[R, J] * dz_dE, (J, 0, DIM - 1)).doit())
    dL_dP = in_range(sp.Sum(DELTA[R, J] * dz_dP, (J, 0, DIM - 1)).doit())
    calc = EmbeddingCalculus(z, dz_dE, dz_dP, dL_dE, dL_dP)
    _check(calc)
    return calc


def _check(calc: EmbeddingCalculus) -> None:
    """dL/dE summed over the rows, and dL/dP over the samples, at one point: the code's
    scatter-add and position sums must give the same numbers."""
    ids, positions, dim = [2, 0, 2, 1, 2, 0], 3, 2  # two samples of three tokens, 2 repeats
    rng = np.random.default_rng(0)
    delta = rng.integers(-5, 6, (len(ids), dim))
    scatter = np.zeros((3, dim), dtype=int)
    np.add.at(scatter, ids, delta)
    totals = delta.reshape(-1, positions, dim).sum(axis=0)
    for q in range(3):
        for k in range(dim):
            terms = [calc.dL_dE.subs({R: r, Q: q, K: k, X[R]: ids[r]}) for r in range(len(ids))]
            got = sum(term.subs({DELTA[r, k]: int(delta[r, k]) for r in range(len(ids))})
                      for term in terms)  # fmt: skip
            if got != scatter[q, k]:
                raise DerivationError(f"dL/dE[{q},{k}] came out as {got}, not {scatter[q, k]}")
    for q in range(positions):
        for k in range(dim):
            rows = [r for r in range(len(ids)) if r % positions == q]
            got = sum(calc.dL_dP.subs({R: r, T_: q, Q: q, K: k}) for r in rows)
            got = got.subs({DELTA[r, k]: int(delta[r, k]) for r in rows})
            if got != totals[q, k]:
                raise DerivationError(f"dL/dP[{q},{k}] came out as {got}, not {totals[q, k]}")


def _geometry(node: Node) -> sp.Tuple:
    return embedding_geometry(node.layer.vocab, node.z.shape[-1], node.z.shape[0])


def _tables(ctx: Context, node: Node, direction: bool = False) -> tuple[sp.Symbol, sp.Basic]:
    """E<l> and P<l> (0 without learned positions), or with `direction` their directions."""
    l = node.index
    family = Family.DIRECTION if direction else Family.PARAMETER
    what = "direction of the " if direction else ""
    E_, *P_ = node.params
    e_role = Role.EMBEDDING_DIRECTION if direction else Role.EMBEDDING
    table = ctx.bindings.add(
        array(e_role, l), Kind.MATRIX, E_.shape[0], f"{what}embedding table of layer {l}",
        family, E_,
    )  # fmt: skip
    positions: sp.Basic = sp.S.Zero
    if P_:
        p_role = Role.POSITION_DIRECTION if direction else Role.POSITION
        positions = ctx.bindings.add(
            array(p_role, l), Kind.MATRIX, P_[0].shape[0], f"{what}positions of layer {l}",
            family, P_[0],
        )  # fmt: skip
    return table, positions


def forward(ctx: Context, node: Node) -> tuple:
    """(Z<l>, the rows of E for the ids, plus the positions' rows)."""
    embedding_calculus()
    table, positions = _tables(ctx, node)
    ids = ctx.activation_symbol(node.inputs[0])
    g = _geometry(node)
    z = Lookup(table, ids, g)
    if node.layer.positions == "learned":
        z = z + TilePositions(positions, ids, g)
    elif node.layer.positions == "sinusoidal":
        z = z + Sinusoid(table, ids, g)
    return ((node_symbols(ctx, node)[Role.PRE_ACTIVATION], z),)


def backward(ctx: Context, node: Node) -> tuple[tuple, tuple]:
    """dL/dE, the scatter-add of delta by token (+ lambda E); dL/dP, delta summed over the
    samples (+ lambda P); nothing goes back to the ids."""
    table, positions = _tables(ctx, node)
    delta = node_symbols(ctx, node)[Role.ERROR]
    ids = ctx.activation_symbol(node.inputs[0])
    g = _geometry(node)
    dE = ScatterRows(delta, ids, g)
    if ctx.decays(node.params[0], node):
        dE = dE + L2_WEIGHT * table
    grads = [(node.params[0], dE)]
    if node.layer.positions == "learned":
        dP = PositionTotal(delta, g)
        if ctx.decays(node.params[1], node):
            dP = dP + L2_WEIGHT * positions
        grads.append((node.params[1], dP))
    return tuple(grads), ()


def tangents(ctx: Context, node: Node) -> tuple[tuple, tuple, tuple]:
    """z' = the rows of E' for the ids + P' (linear in E and P); R{dE} = the scatter of
    R{delta} (+ lambda E'), R{dP} its sum over the samples (+ lambda P')."""
    table_d, positions_d = _tables(ctx, node, direction=True)
    s = node_symbols(ctx, node)
    ids = ctx.activation_symbol(node.inputs[0])
    g = _geometry(node)
    z_dot = Lookup(table_d, ids, g)
    if node.layer.positions == "learned":
        z_dot = z_dot + TilePositions(positions_d, ids, g)
    r_dE = ScatterRows(s[Role.R_ERROR], ids, g)
    if ctx.decays(node.params[0], node):
        r_dE = r_dE + L2_WEIGHT * table_d
    r_grads = [(node.params[0], r_dE)]
    if node.layer.positions == "learned":
        r_dP = PositionTotal(s[Role.R_ERROR], g)
        if ctx.decays(node.params[1], node):
            r_dP = r_dP + L2_WEIGHT * positions_d
        r_grads.append((node.params[1], r_dP))
    return ((s[Role.TANGENT_Z], z_dot),), tuple(r_grads), ()


def cost(node: Node) -> Cost:
    """No multiply-adds: a row copied per position forward, added per position backward."""
    return Cost(0, 0)


FRAGMENT = "embedding"


def notation(kind: str, doc: Any) -> list[tuple[str, str]]:
    """The symbols the kind adds to the document's notation table."""
    return [
        (r"$x_r$, $V$, $T$, $E^{(\ell)}$, $P^{(\ell)}$",
         "row $r$'s token id in $[0, V)$, the vocabulary, the positions; the embedding table "
         "($V \\times d_m$) and the positions ($T \\times d_m$)"),
        (r"$\operatorname{rows}_x(E)$", "the rows $E_{x_r}$, one per position"),
    ]  # fmt: skip


def document_labels(kind: str) -> tuple[str, ...]:
    """The numbered equations of the kind's section, in order (the box last)."""
    return ("eq:embedding-index", "eq:embedding-box")


def tangent_labels(kind: str) -> tuple[str, ...]:
    return ("eq:embedding-r",)


def document_section(kind: str, doc: Any) -> dict:
    """SymPy's index derivation and the box (row layout: one row per position)."""
    calc = embedding_calculus()
    t = doc.tex
    Z, D = doc.arr("Z", "l"), doc.arr("Delta", "l")
    Et, Pt = doc.arr("E", "l"), doc.arr("P", "l")
    R_D = doc.R(D)
    scatter = rf"\left[\sum_{{r}} [x_r = v] \, ({D})_{{r}}\right]_{{v}}"
    positions = rf"\left[\sum_{{s}} ({D})_{{s,t}}\right]_{{t}}"
    return {
        "z": r"z_{r,j} = " + t(calc.z),
        "dz_dE": r"\frac{\partial z_{r,j}}{\partial E_{q,k}} = " + t(calc.dz_dE),
        "dz_dP": r"\frac{\partial z_{r,j}}{\partial P_{q,k}} = " + t(calc.dz_dP),
        "dL_dE": r"\frac{\partial L}{\partial E_{q,k}} = \sum_{r} " + t(calc.dL_dE),
        "box": [
            (Z, rf"\operatorname{{rows}}_{{x}}\left({Et}\right) + \mathbf{{1}}_B \otimes {Pt}"),
            (doc.grad(Et), scatter + doc.decay(Et)),
            (doc.grad(Pt), positions + doc.decay(Pt)),
        ],
        "shapes": [
            rf"{Z}, {D} \in \mathbb{{R}}^{{n \times d_m}}",
            rf"{Et} \in \mathbb{{R}}^{{V \times d_m}}, \ {Pt} \in \mathbb{{R}}^{{T \times d_m}}",
        ],
        "r": [
            rf"{doc.R(doc.grad(Et))} = \left[\sum_{{r}} [x_r = v] \, ({R_D})_{{r}}\right]_{{v}}",
            rf"{doc.R(doc.grad(Pt))} = \left[\sum_{{s}} ({R_D})_{{s,t}}\right]_{{t}}",
        ],
        "send": "",
        "learned": any(layer.positions == "learned" for layer in doc.layers),
        "sinusoidal": any(layer.positions == "sinusoidal" for layer in doc.layers),
        "grads": [(Et, scatter), (Pt, positions)],
    }
