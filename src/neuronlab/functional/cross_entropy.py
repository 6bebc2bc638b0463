"""Cross-entropy of softmax(z) against a target, with class weights, ``ignore_index`` and
label smoothing, as ``F.cross_entropy`` — and its gradient written out.

Shapes: logits ``z`` of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, …)`` (classes along dim 1,
or dim 0 for a single sample); the target holds either class indices (int64, ``z``'s shape
without the class dim) or class probabilities (floating, ``z``'s shape). Write p = softmax(z)
along the classes, ε the label smoothing, w the class weights (w = 1 without them).

**Class indices.** Each prediction n has a target distribution q_n over the classes:

    q_n,c = m_n [(1 − ε)·w_y·1[c = y_n] + (ε/C)·w_c],    m_n = 1[y_n ≠ ignore_index]
    L_n = −Σ_c q_n,c log p_n,c            (a one-hot q without weights and smoothing)

'mean' divides Σ_n L_n by D = Σ_n m_n w_{y_n}, the summed weight of the targets that are not
ignored (by the count of them without weights), exactly as torch does; 'sum' by 1. Since
Σ_c ∂ log p_c/∂z_k · q_c = q_k − s·p_k with s = Σ_c q_c:

    ∂L/∂z_n = g · (s_n p_n − q_n) / D,     s_n = m_n [(1 − ε) w_{y_n} + (ε/C) Σ_c w_c]

So class weights scale each row's gradient by its target's weight (and the mean divides by the
weights, not by N); label smoothing moves ε of the pull from the target class to all classes
(each gets −ε w_c / C); an ignored row gets zero. Without weights and smoothing: p − onehot(y).

**Probabilities.** q_n = w ∘ ((1 − ε) t_n + ε/C), L_n = −Σ_c q_n,c log p_n,c as above; 'mean'
divides by the number of predictions N (not by the weights), as torch does. ∂L/∂z has the same
form s_n p_n − q_n, and the target gets ∂L/∂t_n,c = −g (1 − ε) w_c log p_n,c.

Dtypes: on autocast's float32 list (the softmax inside too); half inputs computed in float32.
The class weights are constants, as in torch; integer targets take no gradient.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from .dispatch import ChainRuleFunction
from .precision import FLOAT32, DtypeRule, autocast_inputs, opmath_dtype
from .reduction import (
    check_constant,
    check_optional_tensor,
    check_reduction,
    reduce_loss,
    reject_legacy,
    result_dtype,
)

# on autocast's float32 list, the softmax inside too (a module constant: torch.compile reads it)
LOSS = DtypeRule(FLOAT32)


def _class_dim(input: Tensor) -> int:
    return 0 if input.dim() == 1 else 1


def _along_classes(w: Tensor, ndim: int, dim: int) -> Tensor:
    """``(C,)`` class weights viewed to broadcast along the class dimension of an ndim tensor."""
    shape = [1] * ndim
    shape[dim] = -1
    return w.view(shape)


def _softmax(z: Tensor, dim: int) -> Tensor:
    """p = exp(log softmax(z)): how torch's own cross-entropy backward forms p (and on the CPU
    about twice as fast as ``torch.softmax`` for few classes)."""
    return torch.exp(torch.log_softmax(z, dim))


def _target_weights(target: Tensor, weight: Tensor | None, ignore_index: int, dtype):
    """For class indices: the mask m_n, indices safe to gather, and m_n w_{y_n}."""
    keep = target != ignore_index
    safe = torch.where(keep, target, 0)
    if weight is None:
        return keep, safe, keep.to(dtype)
    zero = torch.zeros((), dtype=dtype, device=target.device)
    return keep, safe, torch.where(keep, weight[safe], zero)


def _soft_target(t: Tensor, weight: Tensor | None, label_smoothing: float, dim: int) -> Tensor:
    """For probabilities: q = w ∘ ((1 − ε) t + ε/C)."""
    if label_smoothing > 0:
        t = t * (1 - label_smoothing) + label_smoothing / t.shape[dim]
    return t if weight is None else t * _along_classes(weight, t.dim(), dim)


def _index_loss(z, target, weight, ignore_index, label_smoothing):
    """L_n (zero where ignored) and the mean's denominator D = Σ m_n w_{y_n}."""
    dim = _class_dim(z)
    log_p = torch.log_softmax(z, dim)
    keep, safe, w_y = _target_weights(target, weight, ignore_index, z.dtype)
    nll = -log_p.gather(dim, safe.unsqueeze(dim)).squeeze(dim)
    zero = torch.zeros((), dtype=z.dtype, device=z.device)
    # where, not ×: a −inf log p at an ignored row; without class weights w_y is the mask
    loss = torch.where(keep, nll if weight is None else nll * w_y, zero)
    if label_smoothing > 0:
        weighted = log_p if weight is None else log_p * _along_classes(weight, z.dim(), dim)
        smooth = torch.where(keep, -weighted.sum(dim), zero)
        loss = (1 - label_smoothing) * loss + (label_smoothing / z.shape[dim]) * smooth
    return loss, w_y.sum()


def _index_local(z, target, weight, ignore_index, label_smoothing) -> tuple[Tensor, Tensor]:
    """s_n p_n − q_n for class indices (see the module docstring), and D = Σ m_n w_{y_n}."""
    dim, n_classes = _class_dim(z), z.shape[_class_dim(z)]
    keep, safe, w_y = _target_weights(target, weight, ignore_index, z.dtype)
    coef = (1 - label_smoothing) * w_y if label_smoothing > 0 else w_y  # q_n's one-hot part
    s = coef
    if label_smoothing > 0:
        total = n_classes if weight is None else weight.sum()
        s = coef + (label_smoothing / n_classes) * total * keep.to(z.dtype)
    probs = _softmax(z, dim)  # differentiable, so double backward works
    local = (probs * s.unsqueeze(dim)).scatter_add(dim, safe.unsqueeze(dim), -coef.unsqueeze(dim))
    if label_smoothing > 0:
        smooth = keep.to(z.dtype).unsqueeze(dim) * (label_smoothing / n_classes)
        if weight is not None:
            smooth = smooth * _along_classes(weight, z.dim(), dim)
        local = local - smooth
    return local, w_y.sum()


class CrossEntropyFunction(ChainRuleFunction):
    """L = Σ_n −Σ_c q_n,c log softmax(z_n)_c / D.  Backward: ∂L/∂z = g · (s p − q)/D.

    q, s and D as in the module docstring (weights, ``ignore_index``, label smoothing; class
    indices or probabilities). Slots of the class weights and of integer targets return ``None``.
    """

    generate_vmap_rule = True
    dtypes = LOSS

    @staticmethod
    def forward(input, target, weight, reduction: str, ignore_index: int, label_smoothing: float):
        dtype = opmath_dtype(result_dtype(input, target))
        z = input.to(dtype)
        w = None if weight is None else weight.to(dtype)
        if target.is_floating_point():
            dim = _class_dim(z)
            q = _soft_target(target.to(dtype), w, label_smoothing, dim)
            loss = reduce_loss(-(torch.log_softmax(z, dim) * q).sum(dim), reduction)
            return loss.to(result_dtype(input, target))
        if label_smoothing == 0 and z.dim() <= 2:  # the common case: L_n = −m_n w_y log p_n,y
            # torch's nll_loss does the pick (a gather), the mask, the weights and the
            # division by D of the module docstring in one kernel (not for (N, C, d1, ...):
            # CUDA's nll_loss2d is nondeterministic, and refused under deterministic mode)
            log_p = torch.log_softmax(z, _class_dim(z))
            loss = F.nll_loss(log_p, target, w, ignore_index=ignore_index, reduction=reduction)
            return loss.to(input.dtype)
        loss, denom = _index_loss(z, target, w, ignore_index, label_smoothing)
        if reduction == "mean":
            loss = loss.sum() / denom
        elif reduction == "sum":
            loss = loss.sum()
        return loss.to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, target, weight, reduction, ignore_index, label_smoothing = inputs
        ctx.save_for_backward(input, target, weight)
        ctx.reduction, ctx.ignore_index, ctx.label_smoothing = (
            reduction, ignore_index, label_smoothing
        )

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, target, weight = ctx.saved_tensors
        grad_input = grad_target = None
        dtype = opmath_dtype(result_dtype(input, target))
        z, g = input.to(dtype), grad_output.to(dtype)
        w = None if weight is None else weight.to(dtype)
        dim, eps = _class_dim(z), ctx.label_smoothing
        if ctx.reduction == "none":
            g = g.unsqueeze(dim)  # one upstream value per prediction
        if target.is_floating_point():
            n_rows = z.numel() // max(z.shape[dim], 1)
            if ctx.reduction == "mean":
                g = g / n_rows
            if ctx.needs_input_grad[0]:
                q = _soft_target(target.to(dtype), w, eps, dim)
                local = _softmax(z, dim) * q.sum(dim, keepdim=True) - q
                grad_input = (g * local).to(input.dtype)
            if ctx.needs_input_grad[1]:
                local = -(1 - eps) * torch.log_softmax(z, dim)
                if w is not None:
                    local = local * _along_classes(w, z.dim(), dim)
                grad_target = (g * local).to(target.dtype)
            return grad_input, grad_target, None, None, None, None
        if ctx.needs_input_grad[0]:
            local, denom = _index_local(z, target, w, ctx.ignore_index, eps)
            if ctx.reduction == "mean":  # D = 0 (every target ignored): local is 0, so is ∂L/∂z
                g = g / (denom + (denom == 0))  # D + 1 only where D = 0
            grad_input = (g * local).to(input.dtype)
        return grad_input, None, None, None, None, None


def _check_target(input: Tensor, target: Tensor, ignore_index: int) -> Tensor:
    """Class indices (as int64) of ``input``'s shape without the class dim, or probabilities
    of ``input``'s shape; anything else raises, naming the argument."""
    if target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            f"cross_entropy: target must hold class indices (int64) or class probabilities "
            f"(floating), got {target.dtype}"
        )
    if input.dim() == 0:
        raise ValueError("cross_entropy: input must have a class dimension, got a 0-dim tensor")
    dim = _class_dim(input)
    if target.is_floating_point():
        if target.shape != input.shape:
            raise TypeError(
                f"cross_entropy: a floating target holds class probabilities and must have "
                f"input's shape {tuple(input.shape)}, got {tuple(target.shape)} "
                f"(for class indices pass an int64 target)"
            )
        if ignore_index >= 0:
            raise ValueError(
                f"cross_entropy: ignore_index={ignore_index} applies to class-index targets "
                f"only, not to probabilities"
            )
        return target
    expected = input.shape[:dim] + input.shape[dim + 1 :]
    if target.shape != expected:
        raise ValueError(
            "cross_entropy: expected input (C,), (N, C) or (N, C, d1, ...) with target (), "
            f"(N,) or (N, d1, ...), got input {tuple(input.shape)} and target "
            f"{tuple(target.shape)}"
        )
    return target.long()


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of ``softmax(input)`` against ``target``, as ``F.cross_entropy``.

    Args:
        input: logits, ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``.
        target: class indices (int64), ``()``, ``(N,)`` or ``(N, d1, ...)``; or class
            probabilities (floating), ``input``'s shape.
        weight: ``(C,)`` class weights, or ``None``; a constant (no gradient).
        size_average, reduce: torch's deprecated arguments; refused (use ``reduction``).
        ignore_index: a class index whose targets add nothing to the loss or the gradient (and
            nothing to the mean's denominator); class indices only.
        reduction: 'mean' | 'sum' | 'none'.
        label_smoothing: ε in [0, 1]: the target becomes (1 − ε)·onehot + ε/C.

    Under autocast: float32. The formulas, and how weights and smoothing change ∂L/∂z, are in
    the module docstring.
    """
    fn = "cross_entropy"
    check_optional_tensor(fn, "weight", weight)
    reject_legacy(fn, size_average, reduce)
    check_reduction(fn, reduction)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"cross_entropy: ignore_index must be an int, got {ignore_index!r}")
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(
            f"cross_entropy: label_smoothing must be a float in [0, 1], got {label_smoothing!r}"
        )
    target = _check_target(input, target, int(ignore_index))
    n_classes = input.shape[_class_dim(input)]
    if weight is not None and tuple(weight.shape) != (n_classes,):
        raise ValueError(
            f"cross_entropy: weight must have shape ({n_classes},), one per class, got "
            f"{tuple(weight.shape)}"
        )
    check_constant(fn, "weight", weight)
    input, weight = autocast_inputs(LOSS, input, weight)
    if target.is_floating_point():
        (target,) = autocast_inputs(LOSS, target)
    return CrossEntropyFunction.apply(
        input, target, weight, reduction, int(ignore_index), float(label_smoothing)
    )
