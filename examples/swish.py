"""Swish, y = x·σ(x), as a hand-written Function: the textbook backward that overflows in
bfloat16, and the one that does not. Checked by examples/test_swish.py (README, "Check your
own Function"):

    neuronlab-check --function examples/swish.py:SwishTextbook --reference examples/swish.py:swish
"""

import torch
from torch import Tensor


def opmath(x: Tensor) -> Tensor:
    """float32 for float16/bfloat16 (as torch's kernels compute), else x itself."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def swish(x: Tensor) -> Tensor:
    """The reference: plain torch, differentiated by autograd."""
    return x * torch.sigmoid(x)


class SwishTextbook(torch.autograd.Function):
    """Backward: ∂L/∂x = ∂L/∂y · (1 + e⁻ˣ + x·e⁻ˣ) / (1 + e⁻ˣ)², in the input's dtype.
    Exact in float64 on ordinary inputs; in bfloat16 e⁻ˣ overflows for x < −88.7: inf/inf."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return (opmath(x) * torch.sigmoid(opmath(x))).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        e = torch.exp(-x)
        return grad * (1 + e + x * e) / (1 + e) ** 2


class Swish(torch.autograd.Function):
    """Backward: ∂L/∂x = ∂L/∂y · s·(1 + x·(1 − s)), s = σ(x): float32 math, rounded once."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return (opmath(x) * torch.sigmoid(opmath(x))).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        x, s = opmath(x), torch.sigmoid(opmath(x))
        return (opmath(grad) * s * (1 + x * (1 - s))).to(grad.dtype)
