"""The wrong backwards of the layer ops (conv, pooling, norms, embedding, softmax) for the
planted-bug table (``tests/planted.py``): each a subclass of the real Function whose ``backward``
holds one mistake, written for the inputs the op's table call gets (``OPS[op].sample``)."""

from __future__ import annotations

from torch import Tensor

from neuronlab.functional.softmax import LogSoftmaxFunction, SoftmaxFunction


class SoftmaxWithoutTheSum(SoftmaxFunction):
    """∂L/∂x = y ⊙ g: the diagonal of the Jacobian only, the −y yᵀ part forgotten."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (y,) = ctx.saved_tensors
        return y * grad_output, None


class LogSoftmaxWithoutExp(LogSoftmaxFunction):
    """∂L/∂x = g − ℓ ⊙ Σg: the saved log-probabilities used as the probabilities."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (ell,) = ctx.saved_tensors
        return grad_output - ell * grad_output.sum(ctx.dim, keepdim=True), None
