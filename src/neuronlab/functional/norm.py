"""Layer and batch normalization, with the backward as one formula.

Both standardize x over a set of n entries (layer norm: the last dims of each sample; batch
norm: the batch and positions of each channel), then scale and shift::

    μ = Σx / n,   σ² = Σ(x − μ)² / n   (the biased variance),   σ⁻¹ = 1/√(σ² + ε)
    x̂ = (x − μ) σ⁻¹,                    y = γ x̂ + β

With g = ∂L/∂y and dh = ∂L/∂x̂ = γ g, the chain rule through μ and σ² (both depend on every x
of the set) collapses to one line — backprop ninja's formula for the biased variance::

    ∂L/∂x = σ⁻¹/n · (n·dh − Σ dh − x̂ · Σ(dh · x̂))
    ∂L/∂γ = Σ g · x̂,   ∂L/∂β = Σ g          (summed over everything γ is shared by)

(the −Σdh term is the path through μ, the −x̂Σ(dh x̂) term the path through σ²). In evaluation
mode batch norm uses the running statistics, constants, so ∂L/∂x = γ g σ⁻¹ alone. Backward
recomputes μ, σ⁻¹ and x̂ from the saved input with differentiable ops (double backward needs
the statistics as functions of x). The node-by-node version is ``tests/test_ops_norm.py``'s.

Running statistics (batch norm, training): updated in place as torch does, with the batch's
*unbiased* variance: r_μ ← (1 − m) r_μ + m μ, r_σ² ← (1 − m) r_σ² + m σ² n/(n − 1). The
functional takes a float momentum; a cumulative average (``momentum=None`` in a module) is
momentum = 1/num_batches_tracked, which the module computes, as in torch.

Dtypes: on CUDA autocast puts layer_norm on its float32 list; batch_norm is on no list, and on
the CPU neither is. bfloat16/float16 inputs are normalized in float32 and rounded once; each
gradient comes back in its input's dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .dispatch import ChainRuleFunction
from .precision import FLOAT32, INPUT_DTYPE, DtypeRule, autocast_inputs, opmath

LAYER_NORM = DtypeRule(INPUT_DTYPE, autocast_cuda=FLOAT32)
BATCH_NORM = DtypeRule(INPUT_DTYPE)


# ---- the math: plain functions (the network-level loop calls these too) ------------------


def standardize(x: Tensor, dims: list[int],
                eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x̂, σ⁻¹, μ, σ²) over ``dims`` (kept as size 1), σ² the biased variance."""
    mean = x.mean(dims, keepdim=True)
    var = (x - mean).square().mean(dims, keepdim=True)
    rstd = torch.rsqrt(var + eps)
    return (x - mean) * rstd, rstd, mean, var


def normalize_backward(dh: Tensor, xhat: Tensor, rstd: Tensor, dims: list[int]) -> Tensor:
    """∂L/∂x = σ⁻¹/n · (n·dh − Σ dh − x̂ · Σ(dh · x̂)), the sums over ``dims`` (n entries)."""
    n = math.prod([dh.shape[d] for d in dims])  # (a list: torch.compile traces it)
    return rstd / n * (n * dh - dh.sum(dims, keepdim=True)
                       - xhat * (dh * xhat).sum(dims, keepdim=True))


def _affine_grads(g: Tensor, xhat: Tensor, dims: list[int], shape, needs, has_bias,
                  dtype) -> tuple[Tensor | None, Tensor | None]:
    """∂L/∂γ = Σ g·x̂ and ∂L/∂β = Σ g over ``dims`` (what γ is shared by), in γ's shape."""
    def total(t: Tensor) -> Tensor:  # (sum over no dims would sum over all of them)
        return (t.sum(dims) if dims else t).reshape(shape).to(dtype)

    grad_weight = total(g * xhat) if needs[0] else None
    grad_bias = total(g) if has_bias and needs[1] else None
    return grad_weight, grad_bias


def layer_norm_forward(input: Tensor, normalized_shape: tuple[int, ...],
                       weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """y = γ x̂ + β, x̂ standardized over the last ``len(normalized_shape)`` dims."""
    dims = list(range(input.dim() - len(normalized_shape), input.dim()))
    y, *_ = standardize(opmath(input), dims, eps)
    if weight is not None:
        y = y * opmath(weight)
    if bias is not None:
        y = y + opmath(bias)
    return y.to(input.dtype)


def layer_norm_backward(grad_output: Tensor, input: Tensor, weight: Tensor | None,
                        normalized_shape: tuple[int, ...], eps: float,
                        needs: tuple[bool, ...], has_bias: bool):
    """(∂L/∂x, ∂L/∂γ, ∂L/∂β), each where ``needs`` (input, weight, bias) asks."""
    k = len(normalized_shape)
    dims = list(range(input.dim() - k, input.dim()))
    xhat, rstd, *_ = standardize(opmath(input), dims, eps)
    g = opmath(grad_output)
    dh = g * opmath(weight) if weight is not None else g
    grad_input = normalize_backward(dh, xhat, rstd, dims).to(input.dtype) if needs[0] else None
    batch = list(range(input.dim() - k))
    dtype = weight.dtype if weight is not None else input.dtype
    grads = _affine_grads(g, xhat, batch, normalized_shape, (weight is not None and needs[1],
                                                               needs[2]), has_bias, dtype)
    return grad_input, *grads


def _channel(t: Tensor | None, dim: int) -> Tensor | None:
    """A per-channel ``(C,)`` tensor shaped ``(1, C, 1, …)`` for an input of ``dim`` dims."""
    return None if t is None else opmath(t).reshape(1, -1, *([1] * (dim - 2)))


def batch_norm_forward(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                       weight: Tensor | None, bias: Tensor | None, training: bool,
                       eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(y, μ, σ²): y = γ x̂ + β per channel (dim 1) from the batch statistics (training, or
    no running ones) or the running ones; μ and the biased σ² of the batch, ``(C,)`` (zero
    size when the running statistics were used), for the running-statistics update."""
    x = opmath(input)
    dims = [0, *range(2, x.dim())]
    if training or running_mean is None:
        xhat, _, mean, var = standardize(x, dims, eps)
        mean, var = mean.flatten(), var.flatten()
    else:
        xhat = (x - _channel(running_mean, x.dim())) * torch.rsqrt(
            _channel(running_var, x.dim()) + eps)
        mean = var = x.new_zeros(0)
    y = xhat
    if weight is not None:
        y = y * _channel(weight, x.dim())
    if bias is not None:
        y = y + _channel(bias, x.dim())
    return y.to(input.dtype), mean, var


def batch_norm_backward(grad_output: Tensor, input: Tensor, running_mean: Tensor | None,
                        running_var: Tensor | None, weight: Tensor | None, batch_stats: bool,
                        eps: float, needs: tuple[bool, ...], has_bias: bool):
    """(∂L/∂x, ∂L/∂γ, ∂L/∂β); ``batch_stats``: the forward normalized with the batch's own
    statistics (the one-formula backward), else with the running ones (constants)."""
    x, g = opmath(input), opmath(grad_output)
    dims = [0, *range(2, x.dim())]
    if batch_stats:
        xhat, rstd, *_ = standardize(x, dims, eps)
    else:
        rstd = torch.rsqrt(_channel(running_var, x.dim()) + eps)
        xhat = (x - _channel(running_mean, x.dim())) * rstd
    dh = g * _channel(weight, x.dim()) if weight is not None else g
    grad_input = None
    if needs[0]:
        grad_input = normalize_backward(dh, xhat, rstd, dims) if batch_stats else dh * rstd
        grad_input = grad_input.to(input.dtype)
    dtype = weight.dtype if weight is not None else input.dtype
    grads = _affine_grads(g, xhat, dims, (x.shape[1],),
                          (weight is not None and needs[1], needs[2]), has_bias, dtype)
    return grad_input, *grads


def values_per_channel(input: Tensor, training: bool) -> int:
    """n, the entries of each channel's statistics; n ≤ 1 in training is refused (as torch)."""
    n = input.numel() // max(input.shape[1], 1)
    if training and n <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                         f"got input of shape {tuple(input.shape)}")
    return n


def update_running_stats(running_mean: Tensor | None, running_var: Tensor | None,
                         mean: Tensor, var: Tensor, n: int, momentum: float) -> None:
    """In place, from the batch's μ and biased σ² over n entries (the module docstring)."""
    with torch.no_grad():
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        if running_var is not None:
            unbiased = var * (n / (n - 1))
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)


# ---- the Functions ------------------------------------------------------------------------


class LayerNormFunction(ChainRuleFunction):
    """y = γ x̂ + β over the last dims.  Backward: ∂L/∂x = σ⁻¹/n (n·dh − Σdh − x̂Σ(dh x̂)),
    dh = γ g; ∂L/∂γ = Σ_batch g x̂, ∂L/∂β = Σ_batch g."""

    generate_vmap_rule = True
    dtypes = LAYER_NORM

    @staticmethod
    def forward(input: Tensor, normalized_shape: tuple[int, ...], weight: Tensor | None,
                bias: Tensor | None, eps: float) -> Tensor:
        return layer_norm_forward(input, normalized_shape, weight, bias, eps)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, ctx.normalized_shape, weight, bias, ctx.eps = inputs
        ctx.save_for_backward(input, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_input, grad_weight, grad_bias = layer_norm_backward(
            grad_output, input, weight, ctx.normalized_shape, ctx.eps,
            (needs[0], needs[2], needs[3]), ctx.has_bias)
        return grad_input, None, grad_weight, grad_bias, None


class BatchNormFunction(ChainRuleFunction):
    """y = γ x̂ + β per channel; also returns the batch's μ and σ² (no gradient).  Backward
    (batch statistics): ∂L/∂x = σ⁻¹/n (n·dh − Σdh − x̂Σ(dh x̂)); (running ones): γ g σ⁻¹."""

    generate_vmap_rule = True
    dtypes = BATCH_NORM

    @staticmethod
    def forward(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                weight: Tensor | None, bias: Tensor | None, training: bool, eps: float):
        return batch_norm_forward(input, running_mean, running_var, weight, bias, training, eps)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, running_mean, running_var, weight, bias, training, ctx.eps = inputs
        ctx.mark_non_differentiable(output[1], output[2])
        ctx.batch_stats = training or running_mean is None
        stats = (None, None) if ctx.batch_stats else (running_mean, running_var)
        ctx.save_for_backward(input, *stats, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output: Tensor, grad_mean, grad_var):
        input, running_mean, running_var, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_input, grad_weight, grad_bias = batch_norm_backward(
            grad_output, input, running_mean, running_var, weight, ctx.batch_stats, ctx.eps,
            (needs[0], needs[3], needs[4]), ctx.has_bias)
        return grad_input, None, None, grad_weight, grad_bias, None, None


# ---- public functions, named and called like torch.nn.functional --------------------------


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Standardize over the last dims ``normalized_shape``, then γ x̂ + β (as ``F.layer_norm``).

    Args:
        input: ``(*, *normalized_shape)``.
        normalized_shape: an int or the trailing shape to normalize over.
        weight, bias: γ, β of shape ``normalized_shape``, or ``None``.
        eps: added to the variance.
    """
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.dim() - len(shape):]) != shape or len(shape) > input.dim():
        raise ValueError(f"layer_norm: normalized_shape={list(shape)} must be the input's "
                         f"trailing shape, got input of shape {tuple(input.shape)}")
    for key, t in (("weight", weight), ("bias", bias)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"layer_norm: {key} must be a Tensor or None, got {t!r}")
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"layer_norm: {key} must have shape {shape}, got {tuple(t.shape)}")
    input, weight, bias = autocast_inputs(LAYER_NORM, input, weight, bias)
    return LayerNormFunction.apply(input, shape, weight, bias, float(eps))


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Standardize each channel (dim 1) over the batch and positions, then γ x̂ + β (as
    ``F.batch_norm``).

    Args:
        input: ``(N, C, *)``.
        running_mean, running_var: ``(C,)`` or ``None``; used in evaluation mode; in training
            updated in place (running_var with the unbiased batch variance).
        weight, bias: γ, β of shape ``(C,)``, or ``None``.
        training: normalize with the batch's statistics (and update the running ones).
        momentum: the running statistics' update weight (a float; a module's cumulative
            average passes 1/num_batches_tracked).
        eps: added to the variance.
    """
    if input.dim() < 2 and input.numel() == 0:
        return input.clone()  # torch returns an empty 1-D input as it is: nothing to normalize
    if input.dim() < 2:
        raise ValueError(f"batch_norm: input must be (N, C, *), got shape {tuple(input.shape)}")
    channels = input.shape[1]
    for key, t in (("running_mean", running_mean), ("running_var", running_var),
                   ("weight", weight), ("bias", bias)):
        if t is not None and t.numel() != channels:
            raise ValueError(f"batch_norm: {key} must have {channels} entries (the channels), "
                             f"got shape {tuple(t.shape)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var must be given with "
                         "training=False")
    n = values_per_channel(input, training)
    if momentum is None or isinstance(momentum, bool) or not isinstance(momentum, int | float):
        raise TypeError(f"batch_norm: momentum must be a float, got {momentum!r} (a cumulative "
                        "average passes 1/num_batches_tracked)")
    input, weight, bias = autocast_inputs(BATCH_NORM, input, weight, bias)
    out, mean, var = BatchNormFunction.apply(input, running_mean, running_var, weight, bias,
                                             bool(training), float(eps))
    if training:  # the running statistics, in place
        update_running_stats(running_mean, running_var, mean, var, n, momentum)
    return out
