"""Pooling: max pooling routes the gradient to the argmax, average pooling spreads it.

A window w of the input (kernel k, stride s, padding p, dilation d per spatial axis) gives one
output. For max pooling z_w = x[a(w)] with a(w) the argmax of the window (the first one on a
tie, NaN counting as the largest, as torch), so with g = ∂L/∂z::

    ∂L/∂x[i] = Σ_{w : a(w) = i} g_w           # each window hands its g to its winner alone

(a scatter-add of g at the argmax indices, which torch's forward returns). For average pooling
z_w = Σ_{i ∈ w} x[i] / D_w with D_w the divisor (the window's size, padding counted or not, or
``divisor_override``), so::

    ∂L/∂x[i] = Σ_{w ∋ i} g_w / D_w            # each window spreads g_w evenly over its inputs

written with one window-membership matrix per axis, M[t, i] = 1 if input i lies in window t:
∂x = (g / D) M in 1-D, M_hᵀ (g / D) M_w in 2-D. Both backwards are differentiable torch ops
(scatter-add, matmul), so double backward and vmap work; both accept unbatched inputs.

Dtypes: pooling is on no autocast list (it keeps its input's dtype); bfloat16/float16 gradients
are summed in float32 and rounded once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .dispatch import ChainRuleFunction
from .precision import INPUT_DTYPE, DtypeRule, autocast_inputs, opmath

POOL = DtypeRule(INPUT_DTYPE)

_MAX = {1: F.max_pool1d, 2: F.max_pool2d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d}


# ---- the math: plain functions (the network-level loop calls these too) ------------------


def max_pool_forward(input: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
                     padding: tuple[int, ...], dilation: tuple[int, ...],
                     ceil_mode: bool) -> tuple[Tensor, Tensor]:
    """z = the max of each window, and where it is (the flat index into each input plane):
    the indices are all backward needs."""
    return _MAX[len(kernel)](input, kernel, stride, padding, dilation, ceil_mode,
                             return_indices=True)


def max_pool_backward(grad_output: Tensor, indices: Tensor, input_shape: tuple[int, ...],
                      dims: int) -> Tensor:
    """∂L/∂x: each window's g scatter-added at its argmax (summed where windows share one);
    ``dims`` spatial axes, flattened into one plane."""
    plane = math.prod(input_shape[-dims:])
    windows = math.prod(indices.shape[-dims:])
    g = opmath(grad_output).reshape(*grad_output.shape[:-dims], windows)
    idx = indices.reshape(*indices.shape[:-dims], windows)
    grad = g.new_zeros(*input_shape[:-dims], plane).scatter_add(-1, idx, g)
    return grad.reshape(input_shape).to(grad_output.dtype)


def windows(size: int, windows: int, kernel: int, stride: int, padding: int,
            device: torch.device) -> tuple[Tensor, Tensor]:
    """Along one axis of ``size`` inputs: M (windows × size), M[t, i] = 1 if input i is in
    window t, and each window's extent counting the padding (cut at the padded edge)."""
    start = torch.arange(windows, device=device) * stride - padding  # (T,)
    end = torch.clamp(start + kernel, max=size + padding)  # (T,)
    i = torch.arange(size, device=device)
    member = (i >= start[:, None]) & (i < end[:, None])  # (T, size)
    return member, end - start


def avg_pool_divisor(member: list[Tensor], extent: list[Tensor], count_include_pad: bool,
                     divisor_override: int | None) -> Tensor:
    """D per output position (an outer product over the axes): the override, the window's
    extent with its padding, or the count of real inputs in it."""
    if divisor_override is not None:
        return torch.tensor(float(divisor_override), device=member[0].device)
    per_axis = extent if count_include_pad else [m.sum(1) for m in member]
    divisor = per_axis[0].double()
    for d in per_axis[1:]:
        divisor = divisor[:, None] * d.double()
    return divisor


def avg_pool_forward(input: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
                     padding: tuple[int, ...], ceil_mode: bool, count_include_pad: bool,
                     divisor_override: int | None) -> Tensor:
    """z_w = Σ_{i ∈ w} x[i] / D_w (torch's kernel); backward needs only the shapes."""
    args = (kernel, stride, padding, ceil_mode, count_include_pad)
    if len(kernel) == 1:
        return F.avg_pool1d(input, *args)  # (no divisor_override in 1-D: checked before)
    return F.avg_pool2d(input, *args, divisor_override)


def avg_pool_backward(grad_output: Tensor, input_shape: tuple[int, ...],
                      kernel: tuple[int, ...], stride: tuple[int, ...],
                      padding: tuple[int, ...], count_include_pad: bool,
                      divisor_override: int | None) -> Tensor:
    """∂L/∂x = Σ_{w ∋ i} g_w / D_w: (g / D) M in 1-D, M_hᵀ (g / D) M_w in 2-D."""
    dims = len(kernel)
    sizes, outs = input_shape[-dims:], grad_output.shape[-dims:]
    member, extent = zip(*[windows(n, t, k, s, p, grad_output.device) for n, t, k, s, p
                           in zip(sizes, outs, kernel, stride, padding, strict=True)],
                         strict=True)
    g = opmath(grad_output)
    share = g / avg_pool_divisor(list(member), list(extent), count_include_pad,
                                 divisor_override).to(g.dtype)
    last = member[-1].to(g.dtype)
    grad = share @ last  # (..., T) @ (T, L) → (..., L): along the last axis
    if dims == 2:
        grad = member[0].to(g.dtype).t() @ grad  # (H, T_h) @ (..., T_h, W) → (..., H, W)
    return grad.to(grad_output.dtype)


# ---- the Functions ------------------------------------------------------------------------


class MaxPoolFunction(ChainRuleFunction):
    """z_w = max_{i ∈ w} x[i], and its argmax a(w).  Backward: ∂L/∂x[i] = Σ_{w: a(w) = i} g_w."""

    generate_vmap_rule = True
    dtypes = POOL

    @staticmethod
    def forward(input: Tensor, kernel, stride, padding, dilation, ceil_mode: bool):
        return max_pool_forward(input, kernel, stride, padding, dilation, ceil_mode)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, indices = output
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(indices)
        ctx.input_shape, ctx.dims = tuple(inputs[0].shape), len(inputs[1])

    @staticmethod
    def backward(ctx, grad_output: Tensor, grad_indices: Tensor | None):
        (indices,) = ctx.saved_tensors
        grad = max_pool_backward(grad_output, indices, ctx.input_shape, ctx.dims)
        return grad, None, None, None, None, None


class AvgPoolFunction(ChainRuleFunction):
    """z_w = Σ_{i ∈ w} x[i] / D_w.  Backward: ∂L/∂x[i] = Σ_{w ∋ i} g_w / D_w."""

    generate_vmap_rule = True
    dtypes = POOL

    @staticmethod
    def forward(input: Tensor, kernel, stride, padding, ceil_mode: bool,
                count_include_pad: bool, divisor_override: int | None) -> Tensor:
        return avg_pool_forward(input, kernel, stride, padding, ceil_mode, count_include_pad,
                                divisor_override)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, ctx.kernel, ctx.stride, ctx.padding, _, ctx.count_include_pad, ctx.divisor = inputs
        ctx.input_shape = tuple(input.shape)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad = avg_pool_backward(grad_output, ctx.input_shape, ctx.kernel, ctx.stride,
                                 ctx.padding, ctx.count_include_pad, ctx.divisor)
        return grad, None, None, None, None, None, None


# ---- public functions, named and called like torch.nn.functional --------------------------


def _ints(name: str, key: str, value, dims: int, low: int) -> tuple[int, ...]:
    values = (value,) * dims if isinstance(value, int) else tuple(value)
    if len(values) == 1 and dims > 1:
        values = values * dims
    if len(values) != dims or not all(isinstance(v, int) and v >= low for v in values):
        raise ValueError(f"{name}: {key}={value!r} must be an int ≥ {low} or {dims} of them")
    return values


def _pool_args(name: str, dims: int, input: Tensor, kernel_size, stride, padding,
               dilation=1):
    if input.dim() not in (dims + 1, dims + 2):
        raise ValueError(f"{name}: input must be (C, *S) or (N, C, *S) with {dims} spatial "
                         f"dims, got shape {tuple(input.shape)}")
    kernel = _ints(name, "kernel_size", kernel_size, dims, 1)
    stride = kernel if stride is None or stride == [] or stride == () else stride
    stride = _ints(name, "stride", stride, dims, 1)
    padding = _ints(name, "padding", padding, dims, 0)
    dilation = _ints(name, "dilation", dilation, dims, 1)
    for p, k, d in zip(padding, kernel, dilation, strict=True):
        if p > (d * (k - 1) + 1) // 2:
            raise ValueError(f"{name}: padding={p} must be at most half the kernel's extent "
                             f"{d * (k - 1) + 1}")
    (input,) = autocast_inputs(POOL, input)
    return input, kernel, stride, padding, dilation


def _max_pool(name, dims, input, kernel_size, stride, padding, dilation, ceil_mode,
              return_indices):
    input, kernel, stride, padding, dilation = _pool_args(name, dims, input, kernel_size,
                                                          stride, padding, dilation)
    out, indices = MaxPoolFunction.apply(input, kernel, stride, padding, dilation,
                                         bool(ceil_mode))
    return (out, indices) if return_indices else out


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """The max of each window, the gradient routed to its argmax (as ``F.max_pool1d``).

    Args:
        input: ``(N, C, L)`` or ``(C, L)``.
        kernel_size, stride (default: the kernel), padding (≤ half the kernel's extent; the
            padding is −inf), dilation: an int or one int.
        ceil_mode: round the output length up (a last, partial window).
        return_indices: also return each maximum's index into its input row.
    """
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation,
                     ceil_mode, return_indices)


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """2-D max pooling (as ``F.max_pool2d``): ``input`` ``(N, C, H, W)`` or ``(C, H, W)``;
    the arguments an int or a pair; indices flat into each ``H × W`` plane."""
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation,
                     ceil_mode, return_indices)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """The mean of each window, the gradient spread evenly over it (as ``F.avg_pool1d``):
    ``input`` ``(N, C, L)`` or ``(C, L)``; ``count_include_pad`` counts the zero padding in
    the divisor."""
    input, kernel, stride, padding, _ = _pool_args("avg_pool1d", 1, input, kernel_size,
                                                   stride, padding)
    return AvgPoolFunction.apply(input, kernel, stride, padding, bool(ceil_mode),
                                 bool(count_include_pad), None)


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """2-D average pooling (as ``F.avg_pool2d``): ``input`` ``(N, C, H, W)`` or
    ``(C, H, W)``; ``divisor_override`` divides every window by that number instead."""
    if divisor_override is not None and (
            isinstance(divisor_override, bool) or not isinstance(divisor_override, int)
            or divisor_override == 0):
        raise ValueError(f"avg_pool2d: divisor_override={divisor_override!r} must be a "
                         "non-zero int or None")
    input, kernel, stride, padding, _ = _pool_args("avg_pool2d", 2, input, kernel_size,
                                                   stride, padding)
    return AvgPoolFunction.apply(input, kernel, stride, padding, bool(ceil_mode),
                                 bool(count_include_pad), divisor_override)
