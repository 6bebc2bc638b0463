"""Convolutions as modules: one neuron slid along a signal (``Conv1d``) or over an image
(``Conv2d``), the same weights at every position, then an activation.

A convolution's output at position p is a neuron's weighted sum of the window that starts
at p·stride: z[o, p] = b[o] + Σ_{c,k} W[o, c, k]·x[c, p·stride + k·dilation − padding]. Its
backward is the dense layer's, summed over positions: ∂W adds up every window's input times
that position's upstream gradient, ∂x scatters each upstream gradient back to the inputs
its window saw (a transposed convolution). The formulas live beside the op
(``neuronlab.functional.conv1d``/``conv2d``); the module holds the weights and the switch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..functional import get_activation
from .dense import _check_activation, _check_size, _Switchable
from .switch import op


def _pair(value: int | tuple[int, ...], dims: int, key: str) -> tuple[int, ...]:
    values = (value,) * dims if isinstance(value, int) else tuple(value)
    if len(values) != dims or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ValueError(f"{key}={value!r} must be an integer or {dims} integers")
    return values


class _ConvNd(_Switchable):
    """The shared body of ``Conv1d`` and ``Conv2d`` (``dims`` spatial axes)."""

    dims = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        activation: str = "identity",
        backprop: str = "manual",
    ) -> None:
        super().__init__()
        self.in_channels = _check_size("in_channels", in_channels)
        self.out_channels = _check_size("out_channels", out_channels)
        self.groups = _check_size("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.kernel_size = _pair(kernel_size, self.dims, "kernel_size")
        self.stride = _pair(stride, self.dims, "stride")
        self.dilation = _pair(dilation, self.dims, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding={padding!r} must be 'same', 'valid' or integers")
            self.padding: tuple[int, ...] | str = padding
        else:
            self.padding = _pair(padding, self.dims, "padding")
        for key in ("kernel_size", "stride", "dilation"):
            if min(getattr(self, key)) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be ≥ 1")
        if not isinstance(self.padding, str) and min(self.padding) < 0:
            raise ValueError(f"padding={self.padding} must be ≥ 0")
        self.activation = _check_activation(activation)
        self.backprop = backprop
        # (out_channels, in_channels / groups, *kernel_size): one neuron's weights per row
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups,
                                               *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        bound = 1 / self.fan_in**0.5  # a usable default; neuronlab.init.initialize_ sets the policy
        nn.init.uniform_(self.weight, -bound, bound)

    @property
    def fan_in(self) -> int:
        """Inputs one output sums: the channels of its group times the kernel's positions."""
        return self.in_channels // self.groups * math.prod(self.kernel_size)

    @property
    def fan_out(self) -> int:
        """Outputs one input reaches (stride 1): output channels of its group × kernel."""
        return self.out_channels // self.groups * math.prod(self.kernel_size)

    def pre_activation(self, x: Tensor) -> Tensor:
        """z = W ⋆ x + b: ``(B, C_in, *spatial)`` → ``(B, C_out, *spatial_out)``."""
        conv = op(f"conv{self.dims}d", self._backprop)
        return conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                    self.groups)

    def forward(self, x: Tensor) -> Tensor:
        return get_activation(self.activation, self._backprop)(self.pre_activation(x))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias is not None}, "
            f"activation={self.activation!r}, backprop={self._backprop!r}"
        )


class Conv1d(_ConvNd):
    """A 1-D convolution, then ``activation``: ``(B, C_in, L)`` → ``(B, C_out, L_out)`` with
    L_out = ⌊(L + 2·padding − dilation·(kernel_size − 1) − 1) / stride⌋ + 1.

    Args are ``torch.nn.Conv1d``'s, plus ``activation`` (a name from
    ``neuronlab.functional.ACTIVATIONS``) and ``backprop`` (``"manual"`` or ``"autograd"``).
    ``weight`` is ``(C_out, C_in / groups, kernel_size)``, ``bias`` ``(C_out,)``.
    """

    dims = 1


class Conv2d(_ConvNd):
    """A 2-D convolution, then ``activation``: ``(B, C_in, H, W)`` → ``(B, C_out, H_out, W_out)``.

    Args are ``torch.nn.Conv2d``'s, plus ``activation`` and ``backprop`` (see ``Conv1d``).
    ``weight`` is ``(C_out, C_in / groups, kH, kW)``, ``bias`` ``(C_out,)``.
    """

    dims = 2
