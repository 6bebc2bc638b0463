"""Dropout: each entry kept with probability 1 − p and scaled by 1/(1 − p), or zeroed.

With a mask m of independent Bernoulli(1 − p) draws, the noise n = m / (1 − p) and::

    y = x ⊙ n              ∂L/∂x = g ⊙ n

(a dropped entry passes no gradient; a kept one passes it scaled, so E[y] = x). The mask is
drawn from torch's default generator in the public function, *before* the Function runs, and
handed to it as a constant: the same way as ``F.dropout`` on the CPU (``empty_like(x)``
filled by ``bernoulli_(1 − p)``, divided by 1 − p, multiplied), so for the same seed it is the
very same mask and the same output, bit for bit; a seed reproduces it. On CUDA torch uses a
fused kernel that draws differently: the same distribution, not the same mask. Under
``torch.func.vmap`` the draw needs ``randomness='same'`` or ``'different'``, as torch's.
``training=False`` or ``p = 0`` returns the input itself, as torch does.

Dtypes: on no autocast list; the noise and the product are in the input's dtype, as torch's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dispatch import ChainRuleFunction
from .precision import INPUT_DTYPE, DtypeRule, autocast_inputs

DROPOUT = DtypeRule(INPUT_DTYPE)


# ---- the math: plain functions (the network-level loop calls these too) ------------------


def dropout_noise(input: Tensor, p: float) -> Tensor:
    """n = m / (1 − p), m ~ Bernoulli(1 − p) per entry, from torch's default generator (all
    zeros for p = 1)."""
    if p == 1:
        return torch.zeros_like(input)
    return torch.empty_like(input).bernoulli_(1 - p).div_(1 - p)


def dropout_forward(input: Tensor, noise: Tensor) -> Tensor:
    """y = x ⊙ n: what backward needs is n alone."""
    return input * noise


def dropout_backward(grad_output: Tensor, noise: Tensor) -> Tensor:
    """∂L/∂x = g ⊙ n."""
    return grad_output * noise


# ---- the Function -------------------------------------------------------------------------


class DropoutFunction(ChainRuleFunction):
    """y = x ⊙ n with the noise n given.  Backward: ∂L/∂x = g ⊙ n."""

    generate_vmap_rule = True
    dtypes = DROPOUT

    @staticmethod
    def forward(input: Tensor, noise: Tensor) -> Tensor:
        return dropout_forward(input, noise)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (noise,) = ctx.saved_tensors
        return dropout_backward(grad_output, noise), None


# ---- the public function, named and called like torch.nn.functional ----------------------


def dropout(input: Tensor, p: float = 0.5, training: bool = True,
            inplace: bool = False) -> Tensor:
    """Zero each entry with probability ``p``, scale the rest by 1/(1 − p) (as ``F.dropout``).

    Args:
        input: any shape.
        p: the probability of dropping an entry, in [0, 1].
        training: ``False`` returns the input unchanged.
        inplace: write the result into ``input`` (computed out of place, then copied).
    """
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        raise ValueError(f"dropout: p={p!r} must be a probability between 0 and 1")
    if not training or p == 0 or input.numel() == 0:
        return input
    (input,) = autocast_inputs(DROPOUT, input)
    out = DropoutFunction.apply(input, dropout_noise(input, float(p)))
    return input.copy_(out) if inplace else out
