"""Convolution: one neuron applied at every position, with the same weights everywhere.

For a 1-D input ``x`` of shape ``(N, C, L)`` (2-D: one more spatial index, read the same way),
weights ``W`` of shape ``(O, C/G, k)``, a bias ``b`` of shape ``(O,)``, stride s, dilation d
and the input zero-padded to ``xₚ``, output position t of channel o is a neuron's weighted sum
over the patch it sees::

    z[n, o, t] = b[o] + Σ_{c, j} W[o, c, j] · xₚ[n, c, t·s + j·d]          (c in o's group)

The chain rule, given g = ∂L/∂z::

    ∂L/∂W[o, c, j] = Σ_{n, t} g[n, o, t] · xₚ[n, c, t·s + j·d]   # summed over every position
    ∂L/∂b[o]       = Σ_{n, t} g[n, o, t]
    ∂L/∂xₚ[n, c, i] = Σ_{o, j, t : t·s + j·d = i} g[n, o, t] · W[o, c, j]
                                                  # scattered back to every position that saw i

∂W is the patches (``Tensor.unfold``: position t's window, every d-th entry) contracted with g
over the batch and the positions — the shared weight collects one term per position. ∂xₚ is the
transposed convolution of g with the same W, which is exactly that scatter; ∂x is ∂xₚ with the
padding cut off. Asymmetric padding (``'same'`` with an even kernel extent) pads one more on the
right, as torch does. Every step is a differentiable torch op: double backward, vmap and compile
work as for the other ops.

Dtypes (see ``precision``): convolutions are on autocast's lower-precision list, on the CPU and
on CUDA: x, W and b are cast to bfloat16/float16 and the kernels accumulate in float32.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from .dispatch import ChainRuleFunction
from .precision import LOW_PRECISION, DtypeRule, autocast_inputs

CONV = DtypeRule(LOW_PRECISION, opmath=False)

_CONV = {1: F.conv1d, 2: F.conv2d}
_TRANSPOSED = {1: F.conv_transpose1d, 2: F.conv_transpose2d}


# ---- the math: plain functions (the network-level loop calls these too) ------------------


def _flat_pads(padding: tuple[tuple[int, int], ...]) -> list[int]:
    """((left, right) per spatial dim, first dim first) → F.pad's order, last dim first."""
    return [p for pair in reversed(padding) for p in pair]


def patches(padded: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
            dilation: tuple[int, ...]) -> Tensor:
    """What the neuron at each output position sees: ``(N, C, *T, *k)`` from ``(N, C, *S)``."""
    out = padded
    for axis, (k, s, d) in enumerate(zip(kernel, stride, dilation, strict=True)):
        out = out.unfold(2 + axis, d * (k - 1) + 1, s)  # window of the dilated extent
    index = (...,) + tuple(slice(None, None, d) for d in dilation)
    return out[index]  # every d-th entry of each window: the k taps


def conv_forward(input: Tensor, weight: Tensor, bias: Tensor | None,
                 stride: tuple[int, ...], padding: tuple[tuple[int, int], ...],
                 dilation: tuple[int, ...], groups: int) -> Tensor:
    """z = b + W ⋆ xₚ for a batched ``input`` ``(N, C, *S)``; backward needs x and W."""
    dims = input.dim() - 2
    if any([p for pair in padding for p in pair]):  # (lists: torch.compile traces them)
        input = F.pad(input, _flat_pads(padding))
    return _CONV[dims](input, weight, bias, stride, 0, dilation, groups)


def conv_backward(grad_output: Tensor, input: Tensor | None, weight: Tensor | None,
                  shapes: tuple[tuple[int, ...], tuple[int, ...]], stride: tuple[int, ...],
                  padding: tuple[tuple[int, int], ...], dilation: tuple[int, ...], groups: int,
                  needs: tuple[bool, ...], has_bias: bool,
                  ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """(∂L/∂x, ∂L/∂W, ∂L/∂b) from g = ∂L/∂z, each only where ``needs`` asks. ``input`` is
    needed for ∂W only, ``weight`` for ∂x only; ``shapes`` are x's and W's."""
    input_shape, weight_shape = shapes
    dims = grad_output.dim() - 2
    kernel = tuple(weight_shape[2:])
    grad_input = grad_weight = grad_bias = None
    g = grad_output  # (N, O, *T)
    if needs[0]:
        # the transposed convolution scatters g·W back over xₚ; it reaches (T−1)·s + d(k−1) + 1
        # entries, and the input positions past that (the stride's leftover) get zeros
        padded = [n + lo + hi for n, (lo, hi) in zip(input_shape[2:], padding, strict=True)]
        reach = [(t - 1) * s + d * (k - 1) + 1 for t, s, d, k
                 in zip(g.shape[2:], stride, dilation, kernel, strict=True)]
        leftover = [p - r for p, r in zip(padded, reach, strict=True)]
        grad_input = _TRANSPOSED[dims](g, weight, None, stride, 0, leftover, groups, dilation)
        for axis, ((lo, _), n) in enumerate(zip(padding, input_shape[2:], strict=True)):
            grad_input = grad_input.narrow(2 + axis, lo, n)  # the padding gets no gradient
    if needs[1]:
        x = F.pad(input, _flat_pads(padding)) if any([p for q in padding for p in q]) else input
        cols = patches(x, kernel, stride, dilation)  # (N, C, *T, *k)
        n, c, o = cols.shape[0], cols.shape[1], g.shape[1]
        t_axes = list(range(3, 3 + dims))
        k_axes = list(range(3 + dims, 3 + 2 * dims))
        # (G, C/G·k, N·T): one row per weight of a group, one column per (sample, position)
        cols = cols.reshape(n, groups, c // groups, *cols.shape[2:])
        positions = n * math.prod(g.shape[2:])
        cols = cols.permute(1, 2, *k_axes, 0, *t_axes).reshape(groups, -1, positions)
        gg = g.reshape(n, groups, o // groups, -1).permute(1, 2, 0, 3)  # (G, O/G, N, T)
        gg = gg.reshape(groups, o // groups, -1)  # (G, O/G, N·T)
        grad_weight = gg @ cols.transpose(1, 2)  # Σ over samples and positions: (G, O/G, C/G·k)
        grad_weight = grad_weight.reshape(weight_shape)  # (O, C/G, *k)
    if has_bias and needs[2]:
        grad_bias = g.sum([0, *range(2, g.dim())])  # (O,)
    return grad_input, grad_weight, grad_bias


# ---- the Function -------------------------------------------------------------------------


class ConvFunction(ChainRuleFunction):
    """z = b + W ⋆ xₚ (1-D or 2-D, batched).  Backward: ∂W = Σ_{n,t} g ⊗ patch(t),
    ∂b = Σ_{n,t} g, ∂x = (transposed convolution of g with W), the padding cut off."""

    generate_vmap_rule = True
    dtypes = CONV

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, ...],
                padding: tuple[tuple[int, int], ...], dilation: tuple[int, ...],
                groups: int) -> Tensor:
        return conv_forward(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, weight, bias, ctx.stride, ctx.padding, ctx.dilation, ctx.groups = inputs
        needs_input, needs_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.save_for_backward(input if needs_weight else None, weight if needs_input else None)
        ctx.shapes = (tuple(input.shape), tuple(weight.shape))
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, weight = ctx.saved_tensors
        grads = conv_backward(grad_output, input, weight, ctx.shapes, ctx.stride, ctx.padding,
                              ctx.dilation, ctx.groups, ctx.needs_input_grad, ctx.has_bias)
        return (*grads, None, None, None, None)


# ---- public functions, named and called like torch.nn.functional --------------------------

PADDING_MODES = ("valid", "same")


def _tuple(name: str, key: str, value, dims: int) -> tuple[int, ...]:
    """An int or a sequence of ``dims`` ints, each ≥ 1 (stride, dilation) as a tuple."""
    values = (value,) * dims if isinstance(value, int) else tuple(value)
    if len(values) != dims or not all(isinstance(v, int) and v >= 1 for v in values):
        raise ValueError(f"{name}: {key}={value!r} must be an int ≥ 1 or {dims} of them")
    return values


def _padding(name: str, padding, kernel, stride, dilation) -> tuple[tuple[int, int], ...]:
    """(left, right) per spatial dim from an int, ints, 'valid' or 'same' (as torch: the odd
    one of an even total goes on the right)."""
    dims = len(kernel)
    if isinstance(padding, str):
        if padding not in PADDING_MODES:
            raise ValueError(f"{name}: padding={padding!r} is not one of: "
                             f"{', '.join(PADDING_MODES)}, or ints")
        if padding == "valid":
            return ((0, 0),) * dims
        if any(s != 1 for s in stride):
            raise ValueError(f"{name}: padding='same' is not supported for strided "
                             f"convolutions (stride={stride})")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return tuple((t // 2, t - t // 2) for t in totals)
    values = (padding,) * dims if isinstance(padding, int) else tuple(padding)
    if len(values) != dims or not all(isinstance(v, int) and v >= 0 for v in values):
        raise ValueError(f"{name}: padding={padding!r} must be an int ≥ 0, {dims} of them, "
                         f"or one of: {', '.join(PADDING_MODES)}")
    return tuple((p, p) for p in values)


def _conv(name: str, dims: int, input: Tensor, weight: Tensor, bias: Tensor | None,
          stride, padding, dilation, groups: int) -> Tensor:
    if input.dim() not in (dims + 1, dims + 2):
        raise ValueError(f"{name}: input must be (C, *S) or (N, C, *S) with {dims} spatial "
                         f"dims, got shape {tuple(input.shape)}")
    if weight.dim() != dims + 2:
        raise ValueError(f"{name}: weight must have shape (C_out, C_in/groups, *kernel) with "
                         f"{dims} kernel dims, got {tuple(weight.shape)}")
    if not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"{name}: groups={groups!r} must be an int ≥ 1 dividing "
                         f"C_out={weight.shape[0]}")
    channels = input.shape[-dims - 1]
    if channels != weight.shape[1] * groups:
        raise ValueError(f"{name}: input has {channels} channels, weight expects "
                         f"{weight.shape[1]}×groups={weight.shape[1] * groups}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{name}: bias must have shape ({weight.shape[0]},), got "
                         f"{tuple(bias.shape)}")
    stride = _tuple(name, "stride", stride, dims)
    dilation = _tuple(name, "dilation", dilation, dims)
    pads = _padding(name, padding, tuple(weight.shape[2:]), stride, dilation)
    input, weight, bias = autocast_inputs(CONV, input, weight, bias)
    if input.dim() == dims + 1:  # unbatched: a batch of one
        return ConvFunction.apply(input.unsqueeze(0), weight, bias, stride, pads, dilation,
                                  groups).squeeze(0)
    return ConvFunction.apply(input, weight, bias, stride, pads, dilation, groups)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """1-D convolution with a hand-written backward (as ``F.conv1d``).

    Args:
        input: ``(N, C_in, L)`` or unbatched ``(C_in, L)``.
        weight: ``(C_out, C_in/groups, k)``.
        bias: ``(C_out,)`` or ``None``.
        stride, dilation: an int or one int. padding: an int, one int, ``'valid'`` or
            ``'same'`` (stride 1 only, as torch).
        groups: channels split into this many groups, each with its own filters.

    Returns:
        ``(N, C_out, L_out)`` (unbatched: ``(C_out, L_out)``).
    """
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-D convolution with a hand-written backward (as ``F.conv2d``): ``input``
    ``(N, C_in, H, W)`` or ``(C_in, H, W)``, ``weight`` ``(C_out, C_in/groups, kH, kW)``;
    stride, padding, dilation an int or a pair (padding also ``'valid'``/``'same'``)."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)
