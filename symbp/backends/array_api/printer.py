"""SymPy -> array-API source text: the NumPy printer's nodes under the namespace `xp` (the
caller's arrays'), with only what the standard has.

What differs from NumPy: a few names (atan), no boolean arithmetic (a 0/1 mask is cast to
the computation's dtype, the local name `dtype` of every generated function), no array
methods but the operators and .T, and the runtime helpers take `xp` first.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from symbp.backends.numpy.printer import NumPyPrinter, _indicator
from symbp.ir.image_ops import Conv2dBackKernelColumns, Conv2dColumns, ImageOp, Unfold

# NumPy's name -> the standard's, where they differ.
RENAMED = {"arctan": "atan"}

# The operations on a convolution's unfolded input -> the runtime helpers that take what
# _kept keeps instead (the image itself where the library has convolution kernels).
KEPT = {
    Unfold: "_kept",
    Conv2dColumns: "_conv2d_kept",
    Conv2dBackKernelColumns: "_conv2d_back_kernel_kept",
}


class ArrayApiPrinter(NumPyPrinter):
    """Prints symbp's derived expressions against the array API standard (row layout)."""

    printmethod = "_symbp_array_api"
    NS = "xp"
    # set when a printed line reads the local name `dtype` (so a function defines it only
    # when it is read)
    dtype_used = False

    def fn(self, name: str) -> str:
        return f"{self.NS}.{RENAMED.get(name, name)}"

    def call(self, helper: str, *args: str) -> str:
        self.used.add(helper)
        return f"{helper}({', '.join((self.NS, *args))})"

    def image_helper(self, expr: ImageOp) -> str:
        """The unfolded input the NumPy module keeps for the kernel's gradient is, here,
        whatever the runtime's _kept keeps (the image itself on a library with its own
        convolution kernels)."""
        return KEPT.get(type(expr), expr.helper)

    def mask(self, condition: sp.Basic) -> str:
        """A boolean array as 0/1 numbers of the computation's dtype."""
        self.dtype_used = True
        return f"{self.fn('astype')}({self._print(condition)}, dtype)"

    def _typed(self, value: sp.Expr) -> str:
        # a Python number: the standard's where takes one for either branch
        return self._print(value)

    def _default(self, value: sp.Expr, taken: sp.Basic, condition: sp.Basic) -> str:
        """The last branch of nested where()s: an array shaped like the first condition
        when it is a number, so that no where() is given two numbers."""
        if value.is_Number:
            like = self._print(condition)
            self.dtype_used = True
            return f"{self.fn('full_like')}({like}, {self._print(value)}, dtype=dtype)"
        return self._branch(value, taken)

    def _steps(self, cond: sp.Basic, low: sp.Expr, jump: sp.Expr) -> str:
        mask = self.mask(cond)
        return f"({mask}*{self._print(jump)} + {self._print(low)})"

    def masked(self, text: str, condition: sp.Basic) -> str:
        """The array `text` times the 0/1 mask of `condition`: for u > 0 (a ReLU's
        derivative), the runtime's _where_positive; otherwise the mask as 0/1 numbers."""
        if isinstance(condition, sp.StrictGreaterThan) and condition.rhs == 0:
            return self.call("_where_positive", text, self._print(condition.lhs))
        return f"{text} * {self.mask(condition)}"

    def _print_Mul(self, expr: sp.Mul) -> str:
        """A 0/1 mask factor multiplies as 0/1 numbers (the standard has no boolean product);
        one mask of u > 0 times an array goes through the runtime's _where_positive."""
        masks = [f for f in expr.args if _indicator(f) is not None]
        if not masks:
            return super()._print_Mul(expr)
        rest = sp.Mul(*[f for f in expr.args if f not in masks])
        if len(masks) == 1 and not rest.is_Number:
            return self.masked(self.parenthesize(rest, PRECEDENCE["Mul"]), _indicator(masks[0]))
        conds = " * ".join(self.mask(_indicator(m)) for m in masks)
        return f"{self.parenthesize(rest, PRECEDENCE['Mul'])} * {conds}"

    def _print_Heaviside(self, expr: sp.Heaviside) -> str:
        at_zero = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        return self.call("_heaviside", self._print(expr.args[0]), self._print(at_zero))

    def _sum_over_samples(self, mat: sp.MatrixExpr) -> str:
        if isinstance(mat, sp.Transpose):
            return f"{self.fn('sum')}({self._print(mat.arg)}, axis=0)"
        return f"{self.fn('sum')}({self._print(mat)}, axis=1, keepdims=True)"
