"""The weighted sum of a layer of neurons, with its backward written out.

For a batch ``x`` of shape ``(*, n_in)``, weights ``W`` of shape ``(n_out, n_in)`` and a
bias ``b`` of shape ``(n_out,)``::

    z = x Wᵀ + b                      # (*, n_out)

and, given the upstream gradient ``g = ∂L/∂z`` (same shape as ``z``), the chain rule::

    ∂L/∂x = g W                       # (*, n_in)
    ∂L/∂W = gᵀ x   (summed over the batch dimensions)   # (n_out, n_in)
    ∂L/∂b = Σ_batch g                 # (n_out,)  — the broadcast bias is reduced
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_linear_shapes(input: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    if weight.dim() != 2:
        raise ValueError(
            f"linear: weight must have shape (n_out, n_in), got {tuple(weight.shape)}"
        )
    if input.dim() < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input's last dimension must equal weight's n_in={weight.shape[1]}, "
            f"got input of shape {tuple(input.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(
            f"linear: bias must have shape ({weight.shape[0]},) to match weight, "
            f"got {tuple(bias.shape)}"
        )


class LinearFunction(torch.autograd.Function):
    """z = x Wᵀ + b.  Backward: ∂L/∂x = g W, ∂L/∂W = gᵀ x, ∂L/∂b = Σ_batch g."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if input.dim() == 2 and bias is not None:
            return torch.addmm(bias, input, weight.t())  # fused x Wᵀ + b, (B, n_out)
        out = input @ weight.t()
        return out if bias is None else out + bias

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, weight, bias = inputs
        # ∂L/∂x needs W, ∂L/∂W needs x: keep only what a needed gradient uses
        needs_input, needs_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.save_for_backward(input if needs_weight else None, weight if needs_input else None)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, weight = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = grad_output @ weight  # (*, n_out) @ (n_out, n_in) -> (*, n_in)
        if ctx.needs_input_grad[1]:
            g2 = grad_output.reshape(-1, grad_output.shape[-1])  # (N, n_out), batch dims flat
            x2 = input.reshape(-1, input.shape[-1])  # (N, n_in)
            grad_weight = g2.t() @ x2  # (n_out, n_in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.reshape(-1, grad_output.shape[-1]).sum(0)  # (n_out,)
        return grad_input, grad_weight, grad_bias


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The weighted sum ``x Wᵀ + b`` with a hand-written backward (as ``F.linear``).

    Args:
        input: ``(*, n_in)``.
        weight: ``(n_out, n_in)``.
        bias: ``(n_out,)`` or ``None``.

    Returns:
        ``(*, n_out)``.
    """
    _check_linear_shapes(input, weight, bias)
    return LinearFunction.apply(input, weight, bias)
