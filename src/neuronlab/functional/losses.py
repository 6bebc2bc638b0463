"""Losses: the prediction error, and the first gradient ∂L/∂ŷ that starts backprop.

Each loss reduces over the N predictions (``reduction="mean"`` by default, as in
``torch.nn.functional``; see ``reduction``), so every formula below carries the 1/N of the mean:

- MSE:      L = 1/N Σ (ŷ − y)²                  ∂L/∂ŷ = 2(ŷ − y)/N
- BCE:      L = 1/N Σ −[y log σ(z) + (1−y) log(1−σ(z))]     ∂L/∂z = (σ(z) − y)/N
- CE:       L = 1/N Σ_n [logsumexp(z_n) − z_n,y_n]          ∂L/∂z = (softmax(z) − onehot(y))/N
  (in ``cross_entropy``, with class weights, ``ignore_index`` and label smoothing)

BCE and CE take logits: the sigmoid / softmax is fused into the loss, which is where the math
simplifies (σ − y, softmax − one-hot) and where it stays finite for extreme logits.

Dtypes (see ``precision``): the losses are on autocast's float32 list, so under autocast their
inputs are cast to float32 and the loss comes out in float32. Outside autocast, bfloat16/float16
inputs are computed in float32 and the loss is rounded once to the input's dtype; each gradient
comes back in its own input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .cross_entropy import CrossEntropyFunction, cross_entropy
from .dispatch import ChainRuleFunction
from .precision import FLOAT32, DtypeRule, autocast_inputs, opmath
from .reduction import (
    REDUCTIONS,
    check_constant,
    check_optional_tensor,
    check_reduction,
    reduce_loss,
    reject_legacy,
    result_dtype,
    scale_grad,
)

__all__ = [
    "REDUCTIONS",
    "BCEWithLogitsFunction",
    "CrossEntropyFunction",
    "MSELossFunction",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "mse_loss",
]


# on autocast's float32 list (a module constant, which torch.compile can read)
LOSS = DtypeRule(FLOAT32)


class MSELossFunction(ChainRuleFunction):
    """L = mean((ŷ − y)²).  Backward: ∂L/∂ŷ = g · 2(ŷ − y)/N, ∂L/∂y = −∂L/∂ŷ."""

    generate_vmap_rule = True
    dtypes = LOSS

    @staticmethod
    def forward(input: Tensor, target: Tensor, reduction: str) -> Tensor:
        diff = opmath(input) - opmath(target)
        return reduce_loss(diff * diff, reduction).to(result_dtype(input, target))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, target, reduction = inputs
        ctx.save_for_backward(input, target)
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, target = ctx.saved_tensors
        grad = scale_grad(opmath(grad_output), 2 * (opmath(input) - opmath(target)), ctx.reduction)
        grad_input = grad.to(input.dtype) if ctx.needs_input_grad[0] else None
        grad_target = (-grad).to(target.dtype) if ctx.needs_input_grad[1] else None
        return grad_input, grad_target, None


def _bce_with_logits(z: Tensor, y: Tensor, pos_weight: Tensor | None) -> Tensor:
    """(1 − y)·z − l·log σ(z), l = 1 + (p − 1)·y (l = 1 without pos_weight p).

    = −[p·y log σ(z) + (1−y) log(1−σ(z))], since log(1−σ(z)) = log σ(z) − z. log σ is one
    stable kernel, and (1 − y)·z does not cancel when y ≈ 1 and z is huge (z − z·y would).
    """
    log_sigmoid = F.logsigmoid(z)
    if pos_weight is not None:
        log_sigmoid = (1 + (pos_weight - 1) * y) * log_sigmoid
    return (1 - y) * z - log_sigmoid


class BCEWithLogitsFunction(ChainRuleFunction):
    """L = mean(w · [(1 − y)z − l·log σ(z)]), l = 1 + (p − 1)y: BCE of σ(z), positives × p.

    Backward, with the element weight w and ``pos_weight`` p (w = p = 1 when absent):

    - ∂L/∂z = g · w · (l·σ(z) − p·y)/N        (σ(z) − y without p)
    - ∂L/∂y = g · w · (−z − (p − 1)·log σ(z))/N   (−z without p)

    ``weight`` and ``pos_weight`` are constants (their slots return ``None``).
    """

    generate_vmap_rule = True
    dtypes = LOSS

    @staticmethod
    def forward(input, target, weight, pos_weight, reduction: str) -> Tensor:
        pw = None if pos_weight is None else opmath(pos_weight)
        loss = _bce_with_logits(opmath(input), opmath(target), pw)
        if weight is not None:
            loss = loss * opmath(weight)
        return reduce_loss(loss, reduction).to(result_dtype(input, target))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, target, weight, pos_weight, reduction = inputs
        ctx.save_for_backward(input, target, weight, pos_weight)
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, target, weight, pos_weight = ctx.saved_tensors
        z, y, g = opmath(input), opmath(target), opmath(grad_output)
        w = 1 if weight is None else opmath(weight)
        grad_input = grad_target = None
        if ctx.needs_input_grad[0]:
            if pos_weight is None:
                local = torch.sigmoid(z) - y
            else:
                p = opmath(pos_weight)
                local = (1 + (p - 1) * y) * torch.sigmoid(z) - p * y
            grad_input = scale_grad(g, w * local, ctx.reduction).to(input.dtype)
        if ctx.needs_input_grad[1]:
            local = -z
            if pos_weight is not None:
                local = local - (opmath(pos_weight) - 1) * F.logsigmoid(z)
            grad_target = scale_grad(g, w * local, ctx.reduction).to(target.dtype)
        return grad_input, grad_target, None, None, None


def _check_same_shape(name: str, input: Tensor, target: Tensor) -> None:
    if input.shape != target.shape:
        raise ValueError(
            f"{name}: input and target must have the same shape, got {tuple(input.shape)} "
            f"and {tuple(target.shape)}"
        )


def _check_broadcasts_to(fn: str, name: str, value: Tensor | None, shape: torch.Size) -> None:
    if value is None:
        return
    try:
        broadcast = torch.broadcast_shapes(value.shape, shape)
    except RuntimeError:
        broadcast = None
    if broadcast != shape:
        raise ValueError(
            f"{fn}: {name} of shape {tuple(value.shape)} must broadcast to input's shape "
            f"{tuple(shape)}"
        )


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """Mean squared error between ``input`` and ``target`` (same shape), as ``F.mse_loss``.

    ``size_average``/``reduce`` (torch's deprecated arguments, where a third positional lands)
    are refused: pass ``reduction=`` by keyword. Under autocast: float32.
    """
    reject_legacy("mse_loss", size_average, reduce)
    check_reduction("mse_loss", reduction)
    _check_same_shape("mse_loss", input, target)
    input, target = autocast_inputs(LOSS, input, target)
    return MSELossFunction.apply(input, target, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy of ``sigmoid(input)`` against ``target`` in [0, 1].

    Args:
        input: logits, any shape ``(*)``.
        target: same shape as ``input``.
        weight: a rescaling weight per element, broadcast to ``(*)``; no gradient.
        size_average, reduce: torch's deprecated arguments; refused (use ``reduction``).
        reduction: 'mean' | 'sum' | 'none'.
        pos_weight: the weight of positive examples, broadcast to ``(*)`` (one per class
            along the last dimension, typically); no gradient.

    Under autocast: float32.
    """
    fn = "binary_cross_entropy_with_logits"
    check_optional_tensor(fn, "weight", weight)
    check_optional_tensor(fn, "pos_weight", pos_weight)
    reject_legacy(fn, size_average, reduce)
    check_reduction(fn, reduction)
    _check_same_shape(fn, input, target)
    for name, value in (("weight", weight), ("pos_weight", pos_weight)):
        _check_broadcasts_to(fn, name, value, input.shape)
        check_constant(fn, name, value)
    input, target, weight, pos_weight = autocast_inputs(
        LOSS, input, target, weight, pos_weight
    )
    return BCEWithLogitsFunction.apply(input, target, weight, pos_weight, reduction)
