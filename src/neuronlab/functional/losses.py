"""Losses: the prediction error, and the first gradient ∂L/∂ŷ that starts backprop.

Each loss reduces over the N predictions (``reduction="mean"`` by default, as in
``torch.nn.functional``), so every formula below carries the 1/N of the mean:

- MSE:      L = 1/N Σ (ŷ − y)²                  ∂L/∂ŷ = 2(ŷ − y)/N
- BCE:      L = 1/N Σ −[y log σ(z) + (1−y) log(1−σ(z))]     ∂L/∂z = (σ(z) − y)/N
- CE:       L = 1/N Σ_n [logsumexp(z_n) − z_n,y_n]          ∂L/∂z = (softmax(z) − onehot(y))/N

BCE and CE take logits: the sigmoid / softmax is fused into the loss, which is where the math
simplifies (σ − y, softmax − one-hot) and where it stays finite for extreme logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _scale(grad_output: Tensor, local: Tensor, reduction: str) -> Tensor:
    """upstream × local, with the 1/N of a mean (a sum's upstream broadcasts as is)."""
    if reduction == "mean":
        return grad_output * local / local.numel()
    return grad_output * local


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not one of: {', '.join(REDUCTIONS)}")


class MSELossFunction(torch.autograd.Function):
    """L = mean((ŷ − y)²).  Backward: ∂L/∂ŷ = g · 2(ŷ − y)/N, ∂L/∂y = −∂L/∂ŷ."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, target: Tensor, reduction: str) -> Tensor:
        return _reduce((input - target) ** 2, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, target, reduction = inputs
        ctx.save_for_backward(input, target)
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, target = ctx.saved_tensors
        grad = _scale(grad_output, 2 * (input - target), ctx.reduction)
        grad_input = grad if ctx.needs_input_grad[0] else None
        grad_target = -grad if ctx.needs_input_grad[1] else None
        return grad_input, grad_target, None


def _bce_with_logits(z: Tensor, y: Tensor) -> Tensor:
    # −[y log σ(z) + (1−y) log(1−σ(z))] = max(z, 0) − z·y + log(1 + e^{−|z|}): no overflow
    return z.clamp(min=0) - z * y + torch.log1p(torch.exp(-z.abs()))


class BCEWithLogitsFunction(torch.autograd.Function):
    """L = mean(BCE(σ(z), y)).  Backward: ∂L/∂z = g · (σ(z) − y)/N, ∂L/∂y = g · (−z)/N."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, target: Tensor, reduction: str) -> Tensor:
        return _reduce(_bce_with_logits(input, target), reduction)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, target, reduction = inputs
        ctx.save_for_backward(input, target)
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        z, y = ctx.saved_tensors
        grad_input = grad_target = None
        if ctx.needs_input_grad[0]:
            grad_input = _scale(grad_output, torch.sigmoid(z) - y, ctx.reduction)
        if ctx.needs_input_grad[1]:
            grad_target = _scale(grad_output, -z, ctx.reduction)
        return grad_input, grad_target, None


class CrossEntropyFunction(torch.autograd.Function):
    """L = mean(logsumexp(z) − z_y).  Backward: ∂L/∂z = g · (softmax(z) − onehot(y))/N.

    The class-index target needs no gradient: its slot returns ``None``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, target: Tensor, reduction: str) -> Tensor:
        # log softmax in one stable kernel (it shifts by the row max inside, so logits of ±1e4
        # stay finite and no O(1e4) terms cancel): L_n = −log p_y
        log_probs = torch.log_softmax(input, dim=-1)  # (N, C)
        return _reduce(-log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1), reduction)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, target, reduction = inputs
        ctx.save_for_backward(input, target)
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        z, y = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        probs = torch.softmax(z, dim=-1)  # (N, C); differentiable, so double backward works
        # softmax − onehot: subtract 1 at each row's target, in one op
        minus_one = probs.new_full(y.unsqueeze(-1).shape, -1.0)
        local = probs.scatter_add(-1, y.unsqueeze(-1), minus_one)  # (N, C)
        if ctx.reduction == "mean":
            n = z.numel() // z.shape[-1]
            return grad_output * local / n, None, None
        if ctx.reduction == "none":
            grad_output = grad_output.unsqueeze(-1)  # (N, 1): one upstream value per row
        return grad_output * local, None, None


def _check_same_shape(name: str, input: Tensor, target: Tensor) -> None:
    if input.shape != target.shape:
        raise ValueError(
            f"{name}: input and target must have the same shape, got {tuple(input.shape)} "
            f"and {tuple(target.shape)}"
        )


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error between ``input`` and ``target`` (same shape)."""
    _check_reduction(reduction)
    _check_same_shape("mse_loss", input, target)
    return MSELossFunction.apply(input, target, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor, target: Tensor, reduction: str = "mean"
) -> Tensor:
    """Binary cross-entropy of ``sigmoid(input)`` against ``target`` in [0, 1] (same shape)."""
    _check_reduction(reduction)
    _check_same_shape("binary_cross_entropy_with_logits", input, target)
    return BCEWithLogitsFunction.apply(input, target, reduction)


def cross_entropy(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of ``softmax(input)`` against class indices.

    Args:
        input: logits, ``(N, C)`` or ``(C,)``.
        target: class indices (int64), ``(N,)`` or ``()``.
    """
    _check_reduction(reduction)
    if input.dim() not in (1, 2) or target.shape != input.shape[:-1]:
        raise ValueError(
            "cross_entropy: expected input (N, C) with target (N,) or input (C,) with target (), "
            f"got {tuple(input.shape)} and {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.is_complex():
        raise TypeError(
            f"cross_entropy: target must hold class indices (int64), got {target.dtype}"
        )
    return CrossEntropyFunction.apply(input, target, reduction)
