"""Planted low-precision bugs that float64 cannot see, each with its correct twin (float32
inner math, rounded once), for tests/test_precision_check.py and ``neuronlab-check
--function planted_precision:NAME`` (run with tests/ on the path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _opmath(x: Tensor) -> Tensor:
    """float32 for half inputs (as torch's kernels compute), else the input's own dtype."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class SoftplusExpRatio(torch.autograd.Function):
    """softplus; backward ∂L/∂x = ∂L/∂y · exp(x) / (1 + exp(x)) in the input's dtype: exact
    in float64, exp overflows in float16 past x ≈ 11 (inf/inf = nan)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return F.softplus(_opmath(x)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x) / (1 + torch.exp(x))


class Softplus(torch.autograd.Function):
    """The twin: ∂L/∂x = ∂L/∂y · σ(x), in float32, rounded once."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return F.softplus(_opmath(x)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return (_opmath(grad) * torch.sigmoid(_opmath(x))).to(grad.dtype)


class LogSumExpNoMax(torch.autograd.Function):
    """log Σ exp(x) over the last dim without subtracting the max: exp overflows (bfloat16
    past x ≈ 88.7, float16 past 11.1) where the log-sum-exp itself is finite."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = torch.log(torch.exp(x).sum(-1))
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        x, out = ctx.saved_tensors
        soft = torch.exp(x) / torch.exp(out).unsqueeze(-1)
        return (grad.unsqueeze(-1) * soft).reshape(x.shape)


class LogSumExp(torch.autograd.Function):
    """The twin: the max subtracted (torch.logsumexp), softmax in float32, rounded once."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = torch.logsumexp(_opmath(x), -1)
        ctx.save_for_backward(x, out)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        x, out = ctx.saved_tensors
        soft = torch.exp(_opmath(x) - out.unsqueeze(-1))
        return (_opmath(grad).unsqueeze(-1) * soft).to(grad.dtype).reshape(x.shape)


def logsumexp(x: Tensor) -> Tensor:
    """The reference."""
    return torch.logsumexp(x, -1)


class LowPrecisionSum(torch.autograd.Function):
    """Σ x, accumulated one entry at a time in the input's dtype: a bfloat16 running sum stops
    growing at 256 × the addends (each addition rounds back), float16's at 2048×."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.shape = x.shape
        acc = x.new_zeros(())
        for value in x.reshape(-1):
            acc = acc + value
        return acc

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.expand(ctx.shape).clone()


class Sum(torch.autograd.Function):
    """The twin: accumulated in float32 (float64 stays float64), rounded once."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.shape = x.shape
        return _opmath(x).sum().to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.expand(ctx.shape).clone()


def total(x: Tensor) -> Tensor:
    """The reference."""
    return x.sum()


class Scale(torch.autograd.Function):
    """y = x · w (w broadcast over rows); the bug: ∂L/∂w is not reduced by w... but doubled."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        x, w = ctx.saved_tensors
        return grad * w, 2 * grad * x  # ∂L/∂w should be grad · x


def scale(x: Tensor, w: Tensor) -> Tensor:
    """The reference."""
    return x * w


def scale_samples(dtype: torch.dtype) -> list[tuple[Tensor, float]]:
    """A user's samples for a Function with a non-tensor argument: (x, factor)."""
    return [(torch.linspace(-3, 3, 7, dtype=dtype), 2.0), (torch.ones(2, 3, dtype=dtype), 0.5)]


class TimesConstant(torch.autograd.Function):
    """y = c · x for a Python float c (no gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, c: float) -> Tensor:
        ctx.c = c
        return x * c

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.c, None


def times_constant(x: Tensor, c: float) -> Tensor:
    """The reference."""
    return x * c


# bug → (twin, reference)
PLANTED = {
    "SoftplusExpRatio": ("Softplus", "torch.nn.functional:softplus"),
    "LogSumExpNoMax": ("LogSumExp", "planted_precision:logsumexp"),
    "LowPrecisionSum": ("Sum", "planted_precision:total"),
}
