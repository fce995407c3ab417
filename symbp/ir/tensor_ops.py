"""Shaped tensors in whole-array expressions: a reduction over named per-sample axes and the
movement operations (reshape, permute, slice, and slice's adjoint, embed).

A per-sample tensor of shape S (a vector (d,), a sequence (T, d), an image (C, H, W)) is
stored as one row of its prod(S) entries in C order, so elementwise operations read it like
a vector. These nodes carry S, so a backend can view a row as S: a reshape moves nothing in
that storage (the same entries in the same order); a permutation or a slice does. Each node
is linear in its array and knows its vector-Jacobian product (`vjp`) and its tangent
(`jvp`), so a layer kind built from them gets its backward and forward-mode equations by
composition, as JAX's primitives and tinygrad's movement ops do, rather than from a new
opaque helper per kind.
"""

from __future__ import annotations

import math

import sympy as sp


def _ints(values: sp.Tuple) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


class TensorOp(sp.Function):
    """An operation on a per-sample tensor: args (array, shape, ...)."""

    is_real = True

    @property
    def array(self) -> sp.Expr:
        return self.args[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """The per-sample shape of the array read."""
        return _ints(self.args[1])

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The per-sample shape of the result."""
        return self.shape

    def jvp(self, tangent: sp.Expr) -> sp.Expr:
        """The tangent of the result along the array's tangent (every op is linear)."""
        return self.func(tangent, *self.args[1:])

    @classmethod
    def eval(cls, x: sp.Expr, *rest: sp.Basic) -> sp.Expr | None:
        """Linear: zero of zero."""
        return sp.S.Zero if x.is_zero else None


class AxisSum(TensorOp):
    """(x, shape, axes): the sum of x over the per-sample `axes`, broadcast back to x's
    shape (keepdims), so that it combines entry by entry with x: a softmax's denominator
    over the last axis of a sequence, a norm's mean over (C, H, W) or over (H, W)."""

    @property
    def axes(self) -> tuple[int, ...]:
        return _ints(self.args[2])

    def vjp(self, g: sp.Expr) -> sp.Expr:
        """d sum_group x / d x_i = 1 on the group: each entry receives the group's sum of g."""
        return AxisSum(g, *self.args[1:])


class Reshape(TensorOp):
    """(x, shape, new_shape): the same entries in the same (C) order, viewed as new_shape."""

    @classmethod
    def eval(cls, x: sp.Expr, shape: sp.Tuple, new: sp.Tuple) -> sp.Expr | None:
        if math.prod(_ints(shape)) != math.prod(_ints(new)):
            raise ValueError(f"cannot reshape {tuple(shape)} to {tuple(new)}")
        return x if x.is_zero or tuple(shape) == tuple(new) else None

    @property
    def out_shape(self) -> tuple[int, ...]:
        return _ints(self.args[2])

    def vjp(self, g: sp.Expr) -> sp.Expr:
        return Reshape(g, self.args[2], self.args[1])


class Permute(TensorOp):
    """(x, shape, order): the per-sample axes in `order` (numpy.transpose of each sample)."""

    @property
    def order(self) -> tuple[int, ...]:
        return _ints(self.args[2])

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[k] for k in self.order)

    def vjp(self, g: sp.Expr) -> sp.Expr:
        inverse = sorted(range(len(self.order)), key=lambda k: self.order[k])
        return Permute(g, sp.Tuple(*self.out_shape), sp.Tuple(*inverse))


class Slice(TensorOp):
    """(x, shape, axis, start, stop): entries start..stop-1 along a per-sample axis (a
    head's columns of Q, K and V)."""

    @property
    def bounds(self) -> tuple[int, int, int]:
        return int(self.args[2]), int(self.args[3]), int(self.args[4])

    @property
    def out_shape(self) -> tuple[int, ...]:
        axis, start, stop = self.bounds
        return tuple(stop - start if k == axis else n for k, n in enumerate(self.shape))

    def vjp(self, g: sp.Expr) -> sp.Expr:
        return Embed(g, sp.Tuple(*self.out_shape), *self.args[2:], self.args[1])


class Embed(TensorOp):
    """(x, shape, axis, start, stop, full_shape): x placed at start..stop-1 along the axis
    of a tensor of full_shape, zero elsewhere: the adjoint of Slice."""

    @property
    def bounds(self) -> tuple[int, int, int]:
        return int(self.args[2]), int(self.args[3]), int(self.args[4])

    @property
    def out_shape(self) -> tuple[int, ...]:
        return _ints(self.args[5])

    def vjp(self, g: sp.Expr) -> sp.Expr:
        axis, start, stop = self.bounds
        return Slice(g, self.args[5], axis, start, stop)


class Step(TensorOp):
    """(x, shape, axis, index): one entry along a per-sample axis, that axis dropped: the
    step t of a sequence inside a loop over time (index is then the loop's symbol)."""

    @property
    def axis(self) -> int:
        return int(self.args[2])

    @property
    def index(self) -> sp.Expr:
        return self.args[3]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(n for k, n in enumerate(self.shape) if k != self.axis)


TENSOR_OPS = (AxisSum, Reshape, Permute, Slice, Embed, Step)

__all__ = ["TENSOR_OPS", "AxisSum", "Embed", "Permute", "Reshape", "Slice", "Step", "TensorOp"]
