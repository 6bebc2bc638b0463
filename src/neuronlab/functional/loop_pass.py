"""The network loop without the autograd graph: a training step whose only use of the graph
is the parameters' gradients runs ``NetworkFunction``'s forward with no graph recorded, keeps
what the backward reads (a ``LoopPass``), then calls the loop itself (``network.backprop``, the
Function's own backward) and adds each gradient into ``.grad``: the bits ``loss.backward()``
gives, without the engine's bookkeeping (one node, but on a small CPU model its fixed costs
and ``Function.apply``'s are as much as the loop's arithmetic). Whether a step may skip the
graph (no hooks, no DDP, no autocast, …) is the caller's to check: ``_Switchable.loop_pass``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .network import NetworkFunction, _kept, _plan, backprop, check_class_targets


class LoopPass:
    """A forward pass of the loop run outside autograd (``network_cross_entropy_pass``), holding
    what its backward reads. ``backward()`` runs the textbook loop (``backprop``) and adds each
    parameter's gradient into its ``.grad``, as ``loss.backward()`` would through
    ``NetworkFunction``: the same function on the same tensors, so the same bits, without the
    autograd graph (one node, but on a small CPU model its bookkeeping costs as much as the
    loop's arithmetic)."""

    __slots__ = ("_saved", "params", "loss")

    def __init__(self, plan: tuple, x: Tensor, target: Tensor, params: Sequence[Tensor],
                 outs: tuple[Tensor, ...]) -> None:
        self._saved: tuple | None = (plan, x, target, _kept(plan, True, outs), len(outs),
                                     outs[0].dtype)
        self.params, self.loss = tuple(params), outs[-1]

    def backward(self, grad_loss: Tensor | None = None) -> None:
        """∂(grad_loss · L)/∂θ added into each parameter's ``.grad`` (``grad_loss`` defaults to 1,
        as ``loss.backward()``); once: the saved tensors are released."""
        if self._saved is None:
            raise RuntimeError("LoopPass.backward: this pass's backward already ran (its saved "
                               "tensors are freed); run the forward again")
        plan, x, target, outs, n_outs, y_dtype = self._saved
        self._saved = None
        if grad_loss is None:
            grad_loss = torch.ones_like(self.loss)
        grads = (None,) * (n_outs - 1) + (grad_loss,)
        needs = (False, *(p is not None and p.requires_grad for p in self.params))
        with torch.no_grad():
            _, param_grads = backprop(plan, True, y_dtype, x, target, self.params, outs, grads,
                                      needs)
            for p, g in zip(self.params, param_grads, strict=True):
                if g is None or p is None:
                    continue
                if p.grad is None:  # as AccumulateGrad: the tensor itself, or a copy of it
                    p.grad = g if _same_layout(g, p) else torch.empty_like(p).copy_(g)
                else:  # in the parameter's layout; a later pass (accumulation) adds in place
                    p.grad.add_(g)


def _same_layout(g: Tensor, p: Tensor) -> bool:
    """Whether ``g`` can be ``p``'s ``.grad`` as it is: same strides (dense parameters)."""
    return g.stride() == p.stride() and g.dtype == p.dtype and g.device == p.device


def network_cross_entropy_pass(input: Tensor, target: Tensor, layers: Sequence[Any]
                               ) -> tuple[Tensor, Tensor, tuple[Tensor, ...], LoopPass]:
    """``network_cross_entropy`` run outside autograd: the same forward (no graph recorded),
    returning the loss, the logits, every layer's output and the ``LoopPass`` whose
    ``backward()`` fills the parameters' ``.grad``. For a training step that needs nothing of
    the graph but the parameters' gradients; the caller checks that (no hooks, no DDP).

    Raises ``ValueError`` under autocast (the cast parameters are not the leaves) or where a
    parameter is not a leaf (a parametrization computes it) or x wants a gradient.
    """
    if torch.is_autocast_enabled(input.device.type) or input.requires_grad:
        raise ValueError("network_cross_entropy_pass: not under autocast, and not for an input "
                         "that wants a gradient (use network_cross_entropy)")
    check_class_targets("network_cross_entropy_pass", input, target)
    input, plan, params = _plan(input, layers, logits=True)
    if any(p is not None and not p.is_leaf for p in params):
        raise ValueError("network_cross_entropy_pass: every parameter must be a leaf tensor "
                         "(a computed weight needs autograd: use network_cross_entropy)")
    target = target.long()
    with torch.no_grad():
        outs = NetworkFunction.forward(plan, False, input, target, *params)
    n = len(plan)
    return outs[-1], outs[0], (*outs[1:n], outs[0]), LoopPass(plan, input, target, params, outs)
