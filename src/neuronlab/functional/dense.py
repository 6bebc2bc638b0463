"""A whole layer in one Function: a = act(x Wᵀ + b), forward and backward in one call.

The per-op path makes two autograd nodes per layer: ``linear``'s Function, then the
activation's. Fused dense layers (cuBLASLt epilogues, oneDNN post-ops, …) do both in one; so
does ``DenseFunction``, with the chain rule through both written out in its backward, in the
order the per-op path runs it::

    ∂L/∂z = ∂L/∂a · a'(z)                        # the activation's chain step
    ∂L/∂x = ∂L/∂z W,  ∂L/∂W = (∂L/∂z)ᵀ x,  ∂L/∂b = Σ_batch ∂L/∂z     # the weighted sum's

It runs the same tensor ops as the two Functions (``weighted_sum``/``weighted_sum_backward``
of ``linear``, the ``*_chain`` steps of ``activations``), so values and gradients are the
same bits, in every dtype and under autocast; it saves the same tensors (x, W and a). What it
saves is one autograd node, one ``apply`` and one saved-tensor record per layer: the per-call
overhead that dominates a small layer's step on the CPU (and eager GPU steps).

Only the activations whose derivative is written with their output fuse (relu, sigmoid,
tanh; identity is plain ``linear``): their backward needs x, W and a, all saved anyway. The
others need z, which only the per-op path keeps; ``dense`` runs them as two Functions.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from . import activations as A
from .dispatch import ChainRuleFunction
from .linear import GEMM, _check_linear_shapes, linear, weighted_sum, weighted_sum_backward
from .precision import autocast_inputs
from .registry import get_activation

# activation → (its forward a = f(z), its chain step ∂L/∂z = chain(∂L/∂a, a))
_FUSED: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]] = {
    "relu": (A.ReLUFunction.forward, A.relu_chain),
    "sigmoid": (A.SigmoidFunction.forward, A.sigmoid_chain),
    "tanh": (A.TanhFunction.forward, A.tanh_chain),
}
FUSED_ACTIVATIONS = tuple(_FUSED)


class DenseFunction(ChainRuleFunction):
    """a = act(x Wᵀ + b).  Backward: ∂L/∂z = ∂L/∂a · a'(z), then ∂L/∂x = ∂L/∂z W,
    ∂L/∂W = (∂L/∂z)ᵀ x, ∂L/∂b = Σ_batch ∂L/∂z."""

    generate_vmap_rule = True
    dtypes = GEMM  # the inputs are cast as linear's; the activation computes in z's dtype

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Tensor | None, activation: str) -> Tensor:
        value, _ = _FUSED[activation]
        return value(weighted_sum(input, weight, bias))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, weight, bias, activation = inputs
        needs_input, needs_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.save_for_backward(input if needs_weight else None, weight if needs_input else None,
                              output)
        ctx.has_bias, ctx.activation = bias is not None, activation

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, weight, a = ctx.saved_tensors
        _, chain = _FUSED[ctx.activation]
        grad_z = chain(grad_output, a)  # ∂L/∂z: through the activation first
        grads = weighted_sum_backward(grad_z, input, weight, ctx.needs_input_grad, ctx.has_bias)
        return *grads, None


def dense(input: Tensor, weight: Tensor, bias: Tensor | None, activation: str) -> Tensor:
    """``activation(linear(input, weight, bias))``, one Function where the activation fuses
    (``FUSED_ACTIVATIONS``), else the two Functions of the per-op path; same values and
    gradients either way. ``activation`` is a name from ``ACTIVATIONS`` (default arguments)."""
    if activation not in _FUSED:
        return get_activation(activation, "manual")(linear(input, weight, bias))
    _check_linear_shapes(input, weight, bias)
    input, weight, bias = autocast_inputs(GEMM, input, weight, bias)
    return DenseFunction.apply(input, weight, bias, activation)
