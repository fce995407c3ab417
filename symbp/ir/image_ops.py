"""Whole-array operations on images, as unevaluated SymPy functions of array symbols.

Each is the tensor form of an index equation that SymPy derived (symbp.derivation.kinds.conv,
symbp.derivation.kinds.pool); the code IR holds them like any other expression, the NumPy printer
prints each as a call of the module helper named by `helper`, and `per_sample` says whether the
result has one row per sample (an activation, an error term) or not (a kernel's or a bias's
gradient, a sum over the batch). Every image is stored per sample as its C*H*W entries in C order,
so an elementwise activation or an add reads it like a vector.

The last argument is the geometry, a Tuple of integers: (C, H, W, F, Ho, Wo, kh, kw, sh,
sw, ph, pw) for the input (C, H, W), the output (F, Ho, Wo) and the window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy as sp

from symbp.frontend.window import Window

if TYPE_CHECKING:
    from symbp.ir.graph import Node

GEOMETRY = ("C", "H", "W", "F", "Ho", "Wo", "kh", "kw", "sh", "sw", "ph", "pw")


def geometry(shape_in: tuple[int, ...], shape_out: tuple[int, ...], window: Window) -> sp.Tuple:
    """The geometry argument of an image operation."""
    values = (*shape_in, *shape_out, *window.kernel, *window.stride, *window.padding)
    return sp.Tuple(*map(sp.Integer, values))


def node_geometry(node: Node) -> sp.Tuple:
    """The geometry of a conv2d or pooling node: its input, its output and its window."""
    assert node.layer.window is not None
    return geometry(node.inputs[0].shape, node.z.shape, node.layer.window)


class ImageOp(sp.Function):
    """An operation on whole image arrays (kept unevaluated, printed as a helper call)."""

    helper = ""
    per_sample = True  # one row per sample in the result
    fills = True  # its helper can write the whole result into a buffer (out=)
    is_real = True

    @property
    def arrays(self) -> tuple[sp.Basic, ...]:
        return self.args[:-1]

    @property
    def window(self) -> dict[str, int]:
        return dict(zip(GEOMETRY, map(int, self.args[-1]), strict=True))

    @classmethod
    def eval(cls, *args: sp.Basic) -> sp.Expr | None:
        """Linear in its last array (the error term or the tangent moved): zero of zero."""
        return sp.S.Zero if args[-2].is_zero else None

    def _symbp_latex(self, printer) -> str:
        """The tensor form, each array in the document's notation."""
        parts = [printer._print(a) for a in self.arrays]
        return self.latex_form(*parts)

    def latex_form(self, *parts: str) -> str:
        raise NotImplementedError

    def _stride_pad(self) -> str:
        g = self.window
        text = f"S={g['sh']}" if g["sh"] == g["sw"] else f"S=({g['sh']},{g['sw']})"
        if g["ph"] or g["pw"]:
            text += f",P={g['ph']}" if g["ph"] == g["pw"] else f",P=({g['ph']},{g['pw']})"
        return text

    def _size(self) -> str:
        g = self.window
        return rf"{g['kh']} \times {g['kw']}"


class _Bilinear(ImageOp):
    """Linear in each of its first two arrays: zero when either is (a product of them)."""

    @classmethod
    def eval(cls, *args: sp.Basic) -> sp.Expr | None:
        return sp.S.Zero if args[0].is_zero or args[1].is_zero else None


class _Biased(ImageOp):
    """A product of its first two arrays plus its third (a bias, or 0): zero when the
    product and the bias are."""

    @classmethod
    def eval(cls, *args: sp.Basic) -> sp.Expr | None:
        x, w, b = args[:3]
        return sp.S.Zero if (x.is_zero or w.is_zero) and b.is_zero else None


class Conv2d(_Biased):
    """z = b + W (x) a: the cross-correlation of the zero-padded image with each filter,
    plus the filter's bias (args: A, W, b or 0, geometry)."""

    helper = "_conv2d"

    def latex_form(self, *parts: str) -> str:
        x, w, b = parts
        bias = "" if self.args[2] == 0 else f" + {b}"
        return rf"{w} \star_{{{self._stride_pad()}}} {x}{bias}"


class Unfold(ImageOp):
    """The zero-padded input unfolded: for each sample, its (C kh kw, Ho Wo) matrix whose
    column (i, j) holds the entries window (i, j) reads (args: A, geometry)."""

    helper = "_unfold"

    def latex_form(self, *parts: str) -> str:
        return rf"\operatorname{{unfold}}_{{{self._size()},{self._stride_pad()}}}({parts[0]})"


class Conv2dColumns(_Biased):
    """z = b + W times the unfolded input, sample by sample: the correlation
    (args: columns, W, b or 0, geometry)."""

    helper = "_conv2d_columns"

    def latex_form(self, *parts: str) -> str:
        cols, w, b = parts
        bias = "" if self.args[2] == 0 else f" + {b}"
        return rf"{w} {cols}{bias}"


class Conv2dBackKernelColumns(_Bilinear):
    """dL/dW = delta times the unfolded input transposed, summed over the batch: the
    correlation of the input with delta (args: columns, delta, geometry)."""

    helper = "_conv2d_back_kernel_columns"
    per_sample = False

    def _symbp_latex(self, printer) -> str:
        """The sum of outer products, with the printer's transpose symbol."""
        cols, d = (printer._print(a) for a in self.arrays)
        return rf"\sum_{{s}} {d}_s \left({cols}_s\right){printer.transpose}"


class Conv2dBackInput(_Bilinear):
    """dL/da = the full correlation of delta with the flipped kernel, cropped to the
    unpadded input (args: delta, W, geometry)."""

    helper = "_conv2d_back_input"

    def latex_form(self, *parts: str) -> str:
        d, w = parts
        flipped = rf"\operatorname{{rot}}_{{180}}({w})"
        return rf"{d} \mathbin{{\tilde\star}}_{{{self._stride_pad()}}} {flipped}"


class Conv2dBackKernel(_Bilinear):
    """dL/dW = the correlation of the padded input with delta, summed over the batch
    (args: A, delta, geometry)."""

    helper = "_conv2d_back_kernel"
    per_sample = False

    def latex_form(self, *parts: str) -> str:
        x, d = parts
        return rf"\sum_{{s}} {x}_s \star_{{{self._stride_pad()}}} {d}_s"


class MaxPool(ImageOp):
    """The maximum of each window (args: A, geometry)."""

    helper = "_maxpool"

    def latex_form(self, *parts: str) -> str:
        (x,) = parts
        return rf"\operatorname{{maxpool}}_{{{self._size()},{self._stride_pad()}}}({x})"


class MaxPoolRoute(ImageOp):
    """Each entry of D sent to the first maximum of its window of A (args: A, the pooled
    maxima M of the forward pass, D, geometry): dL/da from delta."""

    helper = "_maxpool_route"

    def latex_form(self, *parts: str) -> str:
        x, _, d = parts
        return rf"\operatorname{{route}}_{{\max {x}}}({d})"


class MaxPoolPick(ImageOp):
    """The entry of D at the first maximum of each window of A (args: A, the pooled maxima
    M, D, geometry): the forward-mode tangent of a max pooling."""

    helper = "_maxpool_pick"

    def latex_form(self, *parts: str) -> str:
        x, _, d = parts
        return rf"\operatorname{{pick}}_{{\max {x}}}({d})"


class AvgPool(ImageOp):
    """The mean of each window (args: A, geometry)."""

    helper = "_avgpool"

    def latex_form(self, *parts: str) -> str:
        (x,) = parts
        return rf"\operatorname{{avgpool}}_{{{self._size()},{self._stride_pad()}}}({x})"


class AvgPoolBack(ImageOp):
    """Each entry of D spread evenly over its window, 1/(kh kw) to each (args: D, geometry)."""

    helper = "_avgpool_back"

    def latex_form(self, *parts: str) -> str:
        (d,) = parts
        return rf"\operatorname{{spread}}_{{{self._size()},{self._stride_pad()}}}({d})"


def channels(shape: tuple[int, ...]) -> sp.Tuple:
    """The geometry of a per-channel operation on an image (C, H, W): (C, H*W)."""
    return sp.Tuple(sp.Integer(shape[0]), sp.Integer(shape[1] * shape[2]))


class ChannelOp(ImageOp):
    """A per-channel operation of batch norm on images (args: array, (C, H*W)): what a
    vector's BatchSum and per-unit parameters are to a vector, channel by channel."""

    per_sample = False
    fills = False  # a vector broadcast over the samples, not an array of its own

    @property
    def window(self) -> dict[str, int]:
        return {"C": int(self.args[-1][0]), "HW": int(self.args[-1][1])}


class PerChannel(ChannelOp):
    """A per-channel vector (C,) repeated over each channel's H*W positions: (C*H*W,)."""

    helper = "_per_channel"

    def latex_form(self, *parts: str) -> str:
        return parts[0]


class ChannelBatchSum(ChannelOp):
    """The sum over the batch and the positions of each channel, repeated over the
    channel's positions (C*H*W,): batch norm's sums on an image. In an entry's formula the
    channel c is the entry's own."""

    helper = "_channel_batch_sum"

    def latex_form(self, *parts: str) -> str:
        return rf"\sum_{{s,i,j}} \left[{parts[0]}\right]_{{s,c,i,j}}"


class ChannelTotal(ChannelOp):
    """The sum over the batch and the positions of each channel, one per channel (C,):
    the gradient of batch norm's gamma and beta on an image. Printed as the vector over
    the channel index (`letter`), which the brackets bind."""

    helper = "_channel_total"
    fills = True
    letter = "c"

    def latex_form(self, *parts: str) -> str:
        k = self.letter
        return rf"\left[\sum_{{s,i,j}} \left({parts[0]}\right)_{{s,{k},i,j}}\right]_{{{k}}}"


class FilterTotal(ChannelTotal):
    """The same sum for a conv's bias, whose channels are its filters o: dL/db_o."""

    letter = "o"
