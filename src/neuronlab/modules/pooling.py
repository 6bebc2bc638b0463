"""Pooling as modules: each window of a signal (``dims=1``) or image (``dims=2``) reduced to
one number, no weights.

Max pooling keeps the largest input of each window, so its backward routes the upstream
gradient to that argmax alone; average pooling takes the mean, so its backward spreads the
upstream gradient evenly, 1/k to each input of the window. The formulas live beside the ops
(``neuronlab.functional.max_pool1d`` …); the module holds the window and the switch.
"""

from __future__ import annotations

from torch import Tensor

from .dense import _Switchable
from .switch import op


def _window(key: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}={value!r} must be an integer ≥ {minimum}")
    return value


class _Pool(_Switchable):
    kind = "max"

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0,
                 dims: int = 1, backprop: str = "manual") -> None:
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims={dims!r} must be 1 (signals) or 2 (images)")
        self.dims = dims
        self.kernel_size = _window("kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _window("stride", stride, 1)
        self.padding = _window("padding", padding, 0)
        if 2 * self.padding > self.kernel_size:
            raise ValueError(f"padding={padding} must be at most half of "
                             f"kernel_size={kernel_size}")
        self.backprop = backprop

    def forward(self, x: Tensor) -> Tensor:
        pool = op(f"{self.kind}_pool{self.dims}d", self._backprop)
        return pool(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dims={self.dims}, backprop={self._backprop!r}")


class MaxPool(_Pool):
    """The largest value of each window: ``(B, C, L)`` → ``(B, C, L_out)`` (``dims=1``) or
    ``(B, C, H, W)`` → ``(B, C, H_out, W_out)`` (``dims=2``); L_out =
    ⌊(L + 2·padding − kernel_size) / stride⌋ + 1. ``stride`` defaults to ``kernel_size``.
    The gradient goes to each window's argmax."""

    kind = "max"


class AvgPool(_Pool):
    """The mean of each window (padding counts as zeros), shapes as ``MaxPool``'s. The
    gradient is spread evenly over each window."""

    kind = "avg"
