"""The reductions of whole-array expressions, kept unevaluated and printed per layout: sums
over the units of a sample or over the samples of a unit, and the log-sum-exps of a softmax. They
depend on SymPy only, so every module can read them (symbp.symbolic.equal, symbp.symbolic.output,
...).
"""

from __future__ import annotations

import sympy as sp


class UnitSum(sp.Function):
    """sum over the output units of one sample (kept unevaluated; printed per target)."""

    nargs = 1

    @classmethod
    def eval(cls, arg: sp.Expr) -> sp.Expr | None:
        """The sum of zeros is zero (the tangent of a sum over targets Y, for instance)."""
        return sp.S.Zero if arg.is_zero else None


class BatchSum(sp.Function):
    """sum over the samples of the batch, for each unit (kept unevaluated; printed per
    layout): the gradient of a per-unit parameter, and batch norm's statistics."""

    nargs = 1

    @classmethod
    def eval(cls, arg: sp.Expr) -> sp.Expr | None:
        return sp.S.Zero if arg.is_zero else None


class LogSumExp(sp.Function):
    """log sum_k exp(z_k) over the output units of one sample."""

    nargs = 1


class LogOneMinusSoftmax(sp.Function):
    """log(1 - a_k) for a = softmax(z), at every unit k of each sample (from the logits)."""

    nargs = 1


class ExclusiveSoftmaxSum(sp.Function):
    """(g, z) -> at each unit j of a sample, sum over the other units k != j of
    g_k a_j / (1 - a_k), with a = softmax(z).

    a_j / (1 - a_k) = exp(z_j) / sum_(m != k) exp(z_m) is the softmax of the units other than
    k, at j: at most 1, and evaluated from the logits it stays finite where 1 - a_k rounds to
    0 (the dominant unit of a sample with a large logit gap). The output error of a loss with
    log(1 - a) after a softmax is written with it (symbp.symbolic.output)."""

    nargs = 2

    @classmethod
    def eval(cls, g: sp.Expr, z: sp.Expr) -> sp.Expr | None:
        """A sum of zeros is zero."""
        return sp.S.Zero if g.is_zero else None


class ExclusiveSoftmaxMean(sp.Function):
    """(v, z) -> at each unit k of a sample, sum over the other units i != k of
    v_i a_i / (1 - a_k), with a = softmax(z): the mean of v under the softmax of the units
    other than k. It is the tangent of log sum_(m != k) exp(z_m) along v = z'."""

    nargs = 2

    @classmethod
    def eval(cls, g: sp.Expr, z: sp.Expr) -> sp.Expr | None:
        """A sum of zeros is zero."""
        return sp.S.Zero if g.is_zero else None


class ExclusiveSoftmaxSumTangent(sp.Function):
    """(g, v, z) -> the directional derivative of ExclusiveSoftmaxSum(g, z) along z' = v with g
    fixed: at each unit j, sum_(k != j) g_k q_jk (v_j - u_k), q_jk = a_j / (1 - a_k) and
    u_k = sum_(i != k) q_ik v_i. Its own node because v_j - u_k is a difference of nearly
    equal numbers when one unit dominates; its helper forms it without that cancellation."""

    nargs = 3

    @classmethod
    def eval(cls, g: sp.Expr, v: sp.Expr, z: sp.Expr) -> sp.Expr | None:
        """A sum of zeros is zero."""
        return sp.S.Zero if g.is_zero or v.is_zero else None


__all__ = [
    "BatchSum",
    "ExclusiveSoftmaxMean",
    "ExclusiveSoftmaxSum",
    "ExclusiveSoftmaxSumTangent",
    "LogOneMinusSoftmax",
    "LogSumExp",
    "UnitSum",
]
