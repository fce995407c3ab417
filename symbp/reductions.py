"""The reductions of whole-array expressions, kept unevaluated and printed per layout: sums
over the units of a sample or over the samples of a unit, and the log-sum-exps of a softmax.
They depend on SymPy only, so every module can read them (symbp.equal, symbp.output, ...).
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


__all__ = ["BatchSum", "LogOneMinusSoftmax", "LogSumExp", "UnitSum"]
