"""The wrong backwards of the layer ops (conv, pooling, norms, embedding, softmax) for the
planted-bug table (``tests/planted.py``): each a subclass of the real Function whose ``backward``
holds one mistake, written for the inputs the op's table call gets (``OPS[op].sample``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

import neuronlab.functional.conv as C
import neuronlab.functional.norm as N
import neuronlab.functional.pooling as P
from neuronlab.functional.conv import ConvFunction
from neuronlab.functional.dropout import DropoutFunction
from neuronlab.functional.embedding import EmbeddingFunction, embedding_backward
from neuronlab.functional.norm import BatchNormFunction, LayerNormFunction
from neuronlab.functional.pooling import AvgPoolFunction, MaxPoolFunction
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


class ConvWeightIgnoresStride(ConvFunction):
    """∂W from the patches at stride 1 (the first T of them): right only when stride = 1."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grads = list(ConvFunction.backward(ctx, grad_output))
        input, weight = ctx.saved_tensors
        if ctx.needs_input_grad[1]:
            x = F.pad(input, [p for pair in reversed(ctx.padding) for p in pair])
            cols = C.patches(x, ctx.shapes[1][2:], (1,) * len(ctx.stride), ctx.dilation)
            first = tuple(slice(0, t) for t in grad_output.shape[2:])
            cols = cols[(slice(None), slice(None), *first)]  # T windows, each one step apart
            spec = "not,nctk->ock" if len(first) == 1 else "nohw,nchwij->ocij"
            grads[1] = torch.einsum(spec, grad_output, cols)  # groups = 1 in the table call
        return tuple(grads)


class MaxPoolWrongIndex(MaxPoolFunction):
    """Each window's gradient sent one place to the right of its argmax (the last wraps to
    the first): an off-by-one in the index."""

    @staticmethod
    def backward(ctx, grad_output: Tensor, grad_indices: Tensor | None):
        (indices,) = ctx.saved_tensors
        plane = math.prod(ctx.input_shape[-ctx.dims:])
        shifted = (indices + 1) % plane
        grad = P.max_pool_backward(grad_output, shifted, ctx.input_shape, ctx.dims)
        return grad, None, None, None, None, None


class AvgPoolDividesByTheKernel(AvgPoolFunction):
    """g / k everywhere: right for full windows, wrong where padding is not counted."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad = P.avg_pool_backward(grad_output, ctx.input_shape, ctx.kernel, ctx.stride,
                                   ctx.padding, True, math.prod(ctx.kernel))
        return grad, None, None, None, None, None, None


class BatchNormMissingTheMeanTerm(BatchNormFunction):
    """∂L/∂x = σ⁻¹/n (n·dh − x̂ Σ(dh x̂)): the path through μ (−Σ dh) forgotten."""

    @staticmethod
    def backward(ctx, grad_output: Tensor, grad_mean, grad_var):
        grads = list(BatchNormFunction.backward(ctx, grad_output, grad_mean, grad_var))
        input, _, _, weight = ctx.saved_tensors
        dims = [0, *range(2, input.dim())]
        dh = grad_output * weight.reshape(1, -1, *([1] * (input.dim() - 2)))
        n = math.prod(input.shape[d] for d in dims)
        # the real gradient plus back what the −Σdh term took away: σ⁻¹/n · Σdh
        _, rstd, _, _ = N.standardize(input, dims, ctx.eps)
        grads[0] = grads[0] + rstd / n * dh.sum(dims, keepdim=True)
        return tuple(grads)


class LayerNormMissingTheVarianceTerm(LayerNormFunction):
    """∂L/∂x = σ⁻¹/n (n·dh − Σdh): the path through σ² (−x̂ Σ(dh x̂)) forgotten."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, weight = ctx.saved_tensors
        dims = [input.dim() - 1]
        xhat, rstd, _, _ = N.standardize(input, dims, ctx.eps)
        dh = grad_output * weight
        grad = rstd * (dh - dh.mean(dims, keepdim=True))
        _, gw, gb = N.layer_norm_backward(grad_output, input, weight, ctx.normalized_shape,
                                          ctx.eps, (False, True, True), ctx.has_bias)
        return grad, None, gw, gb, None


class EmbeddingIgnoresPaddingIdx(EmbeddingFunction):
    """Every lookup scatter-added, the padding row's too."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (indices,) = ctx.saved_tensors
        return None, embedding_backward(grad_output, indices, ctx.num_rows, None), None


class DropoutWithoutTheScale(DropoutFunction):
    """∂L/∂x = g ⊙ m: the mask, without the 1/(1 − p) the forward scaled by."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (noise,) = ctx.saved_tensors
        return grad_output * (noise != 0).to(grad_output.dtype), None
