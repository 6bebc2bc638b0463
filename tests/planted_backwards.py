"""The wrong backwards of the planted-bug table (``tests/planted.py``): each a subclass of the
real ``torch.autograd.Function`` of ``neuronlab.functional`` whose ``backward`` holds one mistake,
often the real backward with one of its outputs changed.

Written for the inputs the op's sampler draws (``OPS[op].sample``): logits ``(N, C)`` with class
indices for cross-entropy, ``reduction="mean"``, no class weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

import neuronlab.functional.activations as A
from neuronlab.functional.activations import ReLUFunction, SigmoidFunction
from neuronlab.functional.cross_entropy import CrossEntropyFunction
from neuronlab.functional.linear import LinearFunction
from neuronlab.functional.losses import BCEWithLogitsFunction, MSELossFunction
from neuronlab.functional.reduction import scale_grad


class SigmoidUpstreamIgnored(SigmoidFunction):
    """∂L/∂z = σ'(z): the local derivative alone, the upstream gradient dropped."""

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        return A.sigmoid_derivative(a)


class SigmoidGradientInFloat32(SigmoidFunction):
    """The right values returned in float32: torch casts them back, so only the raw output of
    backward shows it."""

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        return SigmoidFunction.backward(ctx, grad_output).float()


class SigmoidGradientInFloat64(SigmoidFunction):
    """float64 for a float32 input: hidden by check_function's float64 copies, seen when it
    runs backward once in the inputs' own dtype."""

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        return SigmoidFunction.backward(ctx, grad_output).double()


class SigmoidGradientOnCPU(SigmoidFunction):
    """The right values, on the CPU for a CUDA input."""

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        return SigmoidFunction.backward(ctx, grad_output).cpu()


class SigmoidWritesGradOutput(SigmoidFunction):
    """``g.mul_(σ')``: the right values, the caller's grad_output overwritten."""

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        return grad_output.mul_(A.sigmoid_derivative(a))


class ReLUWithoutClone(ReLUFunction):
    """The tutorial's ``grad_output.clone()`` forgotten: zeros written into grad_output."""

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        grad = grad_output
        grad[a <= 0] = 0
        return grad


class MSEMissingTwo(MSELossFunction):
    """∂L/∂ŷ = (ŷ − y)/N: the 2 of the square forgotten."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, target = ctx.saved_tensors
        grad = scale_grad(grad_output, input - target, ctx.reduction)
        return grad, -grad, None


class MSESumForMean(MSELossFunction):
    """∂L/∂ŷ = 2(ŷ − y): the 1/N of the mean forgotten."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, target = ctx.saved_tensors
        grad = grad_output * 2 * (input - target)
        return grad, -grad, None


class MSEGradsSwapped(MSELossFunction):
    """∂L/∂y returned in ŷ's slot and ∂L/∂ŷ in y's."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        input, target = ctx.saved_tensors
        grad = scale_grad(grad_output, 2 * (input - target), ctx.reduction)
        return -grad, grad, None


class BCESignFlipped(BCEWithLogitsFunction):
    """∂L/∂z = (y − σ(z))/N: the pull towards the target reversed."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_input, *rest = BCEWithLogitsFunction.backward(ctx, grad_output)
        return -grad_input, *rest


def _one_hot(z: Tensor, y: Tensor) -> Tensor:
    return torch.zeros_like(z).scatter(-1, y.unsqueeze(-1), 1.0)  # (N, C)


class CrossEntropySumForMean(CrossEntropyFunction):
    """∂L/∂z = softmax(z) − onehot(y): the 1/N of the mean forgotten, right only for N = 1."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        z, y, _ = ctx.saved_tensors
        return grad_output * (torch.softmax(z, -1) - _one_hot(z, y)), *[None] * 5


class CrossEntropyUnnormalized(CrossEntropyFunction):
    """e^z where softmax(z) = e^z / Σ e^z belongs."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        z, y, _ = ctx.saved_tensors
        return grad_output * (z.exp() - _one_hot(z, y)) / z.shape[0], *[None] * 5


class CrossEntropySoftmaxOverBatch(CrossEntropyFunction):
    """The softmax taken over the batch axis, not over the classes."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        z, y, _ = ctx.saved_tensors
        return grad_output * (torch.softmax(z, 0) - _one_hot(z, y)) / z.shape[0], *[None] * 5


def _rows(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])  # (*, n) -> (N, n)


class LinearBiasFirstRow(LinearFunction):
    """∂L/∂b = g[0]: the first row, not the sum over the batch; right only for one sample."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_input, grad_weight, _ = LinearFunction.backward(ctx, grad_output)
        return grad_input, grad_weight, _rows(grad_output)[0]


class LinearBiasNotReduced(LinearFunction):
    """∂L/∂b = g, (N, n_out) for an (n_out,) bias: torch sums the broadcast quietly."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_input, grad_weight, _ = LinearFunction.backward(ctx, grad_output)
        return grad_input, grad_weight, _rows(grad_output)


class LinearBiasWrongAxis(LinearFunction):
    """∂L/∂b summed over the features, (N,) for an (n_out,) bias: torch raises."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_input, grad_weight, _ = LinearFunction.backward(ctx, grad_output)
        return grad_input, grad_weight, _rows(grad_output).sum(1)


class LinearBiasForgotten(LinearFunction):
    """No gradient for the bias (``None``): autograd takes it for zero."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_input, grad_weight, _ = LinearFunction.backward(ctx, grad_output)
        return grad_input, grad_weight, None


class LinearTransposed(LinearFunction):
    """∂L/∂W = xᵀ g instead of gᵀ x: the same shape when the layer is square."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_input, _, grad_bias = LinearFunction.backward(ctx, grad_output)
        input, _ = ctx.saved_tensors
        return grad_input, _rows(input).t() @ _rows(grad_output), grad_bias


class LinearGradsSwapped(LinearFunction):
    """∂L/∂W returned in x's slot and ∂L/∂x in W's (the same shapes when all are square)."""

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_input, grad_weight, grad_bias = LinearFunction.backward(ctx, grad_output)
        return grad_weight, grad_input, grad_bias
