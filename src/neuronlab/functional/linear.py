"""The weighted sum of a layer of neurons, with its backward written out.

For a batch ``x`` of shape ``(*, n_in)``, weights ``W`` of shape ``(n_out, n_in)`` and a
bias ``b`` of shape ``(n_out,)``::

    z = x Wᵀ + b                      # (*, n_out)

and, given the upstream gradient ``g = ∂L/∂z`` (same shape as ``z``), the chain rule::

    ∂L/∂x = g W                       # (*, n_in)
    ∂L/∂W = gᵀ x   (summed over the batch dimensions)   # (n_out, n_in)
    ∂L/∂b = Σ_batch g                 # (n_out,)  — the broadcast bias is reduced

Any batch shape is flattened to one batch dimension, ``(N, n_in)`` with N = Π *, so the bias is
always fused into the GEMM (``addmm``): in bfloat16/float16 ``x Wᵀ + b`` is accumulated in
float32 by the kernel and rounded once, as ``F.linear`` does.

Dtypes (see ``precision``): under autocast, ``linear`` is on the lower-precision list, so x, W
and b are cast to autocast's dtype (bfloat16 / float16) before the Function runs, and the GEMMs
of forward and backward run in it; the cast is recorded by autograd, so a float32 weight gets its
gradient in float32. Outside autocast it computes in its inputs' dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .dispatch import ChainRuleFunction
from .precision import LOW_PRECISION, DtypeRule, autocast_inputs


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


def _flat(t: Tensor) -> Tensor:
    """``(*, n)`` → ``(N, n)``: the batch dimensions as one (a 1-D input as a batch of one)."""
    return t.reshape(math.prod(t.shape[:-1]), t.shape[-1])  # explicit N: fine when n is 0


# on autocast's lower-precision list; a module constant, which torch.compile can read
GEMM = DtypeRule(LOW_PRECISION, opmath=False)


def weighted_sum(input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """z = x Wᵀ + b for ``input`` ``(*, n_in)``: the forward of ``LinearFunction`` (and of a
    fused layer, ``dense``)."""
    if input.dim() == 2:  # the common case: no reshapes
        return torch.addmm(bias, input, weight.t()) if bias is not None else input @ weight.t()
    x2 = _flat(input)  # (N, n_in)
    if bias is None:
        out = x2 @ weight.t()  # (N, n_out)
    else:
        out = torch.addmm(bias, x2, weight.t())  # fused x Wᵀ + b, rounded once
    return out.reshape(*input.shape[:-1], weight.shape[0])  # (*, n_out)


def weighted_sum_backward(
    grad_output: Tensor, input: Tensor | None, weight: Tensor | None, needs: tuple[bool, ...],
    has_bias: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The chain rule through z = x Wᵀ + b, given g = ∂L/∂z: (∂L/∂x, ∂L/∂W, ∂L/∂b), each only
    where ``needs`` (input, weight, bias) asks for it. ``input`` is needed for ∂L/∂W only,
    ``weight`` for ∂L/∂x only."""
    grad_input = grad_weight = grad_bias = None
    if grad_output.dim() == 2:  # the common case: plain mm (``@`` adds matmul's dispatch)
        if needs[0]:
            grad_input = torch.mm(grad_output, weight)  # (N, n_out) @ (n_out, n_in)
        if needs[1]:
            grad_weight = torch.mm(grad_output.t(), input)  # (n_out, N) @ (N, n_in)
        if has_bias and needs[2]:
            grad_bias = grad_output.sum(0)  # (n_out,)
        return grad_input, grad_weight, grad_bias
    g2 = _flat(grad_output)  # (N, n_out)
    if needs[0]:
        grad_input = g2 @ weight  # (N, n_out) @ (n_out, n_in) -> (N, n_in)
        grad_input = grad_input.reshape(*grad_output.shape[:-1], weight.shape[1])
    if needs[1]:
        grad_weight = g2.t() @ _flat(input)  # (n_out, N) @ (N, n_in) -> (n_out, n_in)
    if has_bias and needs[2]:
        grad_bias = g2.sum(0)  # (n_out,)
    return grad_input, grad_weight, grad_bias


class LinearFunction(ChainRuleFunction):
    """z = x Wᵀ + b.  Backward: ∂L/∂x = g W, ∂L/∂W = gᵀ x, ∂L/∂b = Σ_batch g."""

    generate_vmap_rule = True
    dtypes = GEMM

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return weighted_sum(input, weight, bias)

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
        return weighted_sum_backward(grad_output, input, weight, ctx.needs_input_grad,
                                     ctx.has_bias)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The weighted sum ``x Wᵀ + b`` with a hand-written backward (as ``F.linear``).

    Args:
        input: ``(*, n_in)``.
        weight: ``(n_out, n_in)``.
        bias: ``(n_out,)`` or ``None``.

    Returns:
        ``(*, n_out)``; under autocast in its lower-precision dtype (see the module docstring).
    """
    _check_linear_shapes(input, weight, bias)
    input, weight, bias = autocast_inputs(GEMM, input, weight, bias)
    return LinearFunction.apply(input, weight, bias)
