"""The geometry of image layers (conv2d, maxpool2d, avgpool2d): kernel or window, stride,
zero padding, and the output-size arithmetic. No SymPy: the file validator reads it.

Images are NCHW as in PyTorch; per sample a tensor is (C, H, W). Along each spatial axis
the output size is floor((H + 2 p - k) / s) + 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

MAX_SIDE = 65_536  # one spatial side or a kernel side
MAX_COLUMNS = 16_000_000  # entries per sample of a conv's unfolded input (C kh kw Ho Wo)

Fail = Callable[[str, str, str], Exception]  # (key, message, fix) -> a located error


@dataclass(frozen=True)
class Window:
    """A kernel (conv) or pooling window with its stride and zero padding, (rows, cols)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)

    def out_side(self, axis: int, side: int) -> int:
        """floor((side + 2 p - k) / s) + 1 along axis 0 (height) or 1 (width)."""
        k, s, p = self.kernel[axis], self.stride[axis], self.padding[axis]
        return (side + 2 * p - k) // s + 1

    def out_shape(self, channels: int, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(channels, Ho, Wo) for an input (C, H, W)."""
        return (channels, self.out_side(0, shape[1]), self.out_side(1, shape[2]))

    @property
    def area(self) -> int:
        return self.kernel[0] * self.kernel[1]

    def __repr__(self) -> str:
        return f"Window(k={self.kernel}, s={self.stride}, p={self.padding})"


def _pair(value: Any, key: str, low: int, fail: Fail) -> tuple[int, int]:
    """k or [kh, kw], each a whole number in [low, MAX_SIDE]."""
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    example = f"e.g. {key}: {max(low, 2)} or {key}: [{max(low, 2)}, {max(low, 1)}] (rows, columns)"
    if len(items) not in (1, 2):
        raise fail(key, f"{key} must be a number or a list of two, got {len(items)} items", example)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, Integral):
            raise fail(key, f"{key} must be whole numbers, got {item!r}", example)
        if not low <= int(item) <= MAX_SIDE:
            raise fail(key, f"{key} must be between {low} and {MAX_SIDE:,}, got {item}", example)
    out = [int(item) for item in items]
    return (out[0], out[-1])


def check_window(
    entry: Mapping[str, Any], kind: str, shape: tuple[int, ...], fail: Fail
) -> tuple[Window, tuple[int, int, int]]:
    """The window of a conv2d or pooling entry on an input of `shape` (C, H, W), with the
    output shape; every impossible size is refused through `fail`."""
    conv = kind == "conv2d"
    size_key = "kernel" if conv else "size"
    kernel = _pair(entry[size_key], size_key, 1, fail)
    stride = _pair(entry.get("stride", 1 if conv else list(kernel)), "stride", 1, fail)
    padding: tuple[int, int] = (0, 0)
    if conv and entry.get("padding", 0) == "same":
        if stride != (1, 1):
            raise fail("padding", "padding: same needs stride 1", "use stride: 1, or give padding")
        if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise fail(
                "padding",
                f"padding: same needs an odd kernel, got {list(kernel)}",
                "use an odd kernel (3, 5, ...) or give the padding as numbers",
            )
        padding = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    elif conv:
        padding = _pair(entry.get("padding", 0), "padding", 0, fail)
    window = Window(kernel, stride, padding)
    for axis, name in ((0, "height"), (1, "width")):
        side = shape[1 + axis] + 2 * padding[axis]
        if kernel[axis] > side:
            raise fail(
                size_key,
                f"the {size_key} {list(kernel)} is larger than the {'padded ' * conv}input "
                f"({name} {side}) of this layer, whose input is {list(shape)}",
                f"use a smaller {size_key}" + (" or more padding" if conv else ""),
            )
    channels = int(entry["filters"]) if conv else shape[0]
    return window, window.out_shape(channels, shape)
