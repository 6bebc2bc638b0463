"""Activations: a(z) after the weighted sum, each with its local derivative.

The math sits apart from the machinery: first the derivative formulas as small pure
functions, then one ``torch.autograd.Function`` per activation whose ``backward`` is
*local derivative × upstream gradient*. Each backward is built from differentiable torch
ops, so double backward (``gradgradcheck``, Hessian-vector products) works.

Sigmoid, tanh and ReLU save their *output* (the next layer saves that tensor anyway, so it
costs no extra memory); the others save their input.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# ---- local derivatives, da/dz ------------------------------------------------------------


def sigmoid_derivative(a: Tensor) -> Tensor:
    """σ'(z) = a (1 − a), written with the output a = σ(z)."""
    return a * (1 - a)


def tanh_derivative(a: Tensor) -> Tensor:
    """tanh'(z) = 1 − a², written with the output a = tanh(z)."""
    return 1 - a * a


def relu_derivative(a: Tensor) -> Tensor:
    """relu'(z) = 1 where z > 0 else 0 (0 at the kink, as torch does); a > 0 ⇔ z > 0."""
    return torch.sign(a)  # a = relu(z) ≥ 0, so sign(a) = 1[a > 0], in a's dtype, one kernel


def leaky_relu_derivative(z: Tensor, negative_slope: float) -> Tensor:
    """leaky_relu'(z) = 1 where z > 0 else negative_slope."""
    one = torch.ones((), dtype=z.dtype, device=z.device)
    return torch.where(z > 0, one, one * negative_slope)


def softplus_derivative(z: Tensor, beta: float, threshold: float) -> Tensor:
    """softplus'(z) = σ(βz), and 1 above the threshold where softplus(z) = z."""
    return torch.where(z * beta > threshold, torch.ones_like(z), torch.sigmoid(z * beta))


_INV_SQRT2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def gelu_derivative(z: Tensor) -> Tensor:
    """gelu(z) = z Φ(z)  ⇒  gelu'(z) = Φ(z) + z φ(z)."""
    cdf = 0.5 * (1 + torch.erf(z * _INV_SQRT2))
    pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    return cdf + z * pdf


# ---- the Functions -----------------------------------------------------------------------


class SigmoidFunction(torch.autograd.Function):
    """a = 1 / (1 + e^{−z}).  Backward: ∂L/∂z = ∂L/∂a · a(1 − a)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.sigmoid(input)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        return grad_output * sigmoid_derivative(a)


class TanhFunction(torch.autograd.Function):
    """a = tanh(z).  Backward: ∂L/∂z = ∂L/∂a · (1 − a²)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.tanh(input)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        return grad_output * tanh_derivative(a)


class ReLUFunction(torch.autograd.Function):
    """a = max(z, 0).  Backward: ∂L/∂z = ∂L/∂a · 1[z > 0]."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.relu(input)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        return grad_output * relu_derivative(a)


class LeakyReLUFunction(torch.autograd.Function):
    """a = z if z > 0 else s·z.  Backward: ∂L/∂z = ∂L/∂a · (1 if z > 0 else s)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, negative_slope: float) -> Tensor:
        return torch.where(input > 0, input, input * negative_slope)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, negative_slope = inputs
        ctx.save_for_backward(input)
        ctx.negative_slope = negative_slope

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (z,) = ctx.saved_tensors
        return grad_output * leaky_relu_derivative(z, ctx.negative_slope), None


class SoftplusFunction(torch.autograd.Function):
    """a = log(1 + e^{βz}) / β.  Backward: ∂L/∂z = ∂L/∂a · σ(βz)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, beta: float, threshold: float) -> Tensor:
        bz = input * beta
        # log1p(exp(βz)) overflows for large βz, where softplus(z) = z to machine precision
        below = torch.log1p(torch.exp(bz.clamp(max=threshold))) / beta
        return torch.where(bz > threshold, input, below)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, beta, threshold = inputs
        ctx.save_for_backward(input)
        ctx.beta, ctx.threshold = beta, threshold

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (z,) = ctx.saved_tensors
        return grad_output * softplus_derivative(z, ctx.beta, ctx.threshold), None, None


class GELUFunction(torch.autograd.Function):
    """a = z Φ(z) (exact, erf form).  Backward: ∂L/∂z = ∂L/∂a · (Φ(z) + z φ(z))."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return input * 0.5 * (1 + torch.erf(input * _INV_SQRT2))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (z,) = ctx.saved_tensors
        return grad_output * gelu_derivative(z)


# ---- public functions, named and called like torch.nn.functional --------------------------


def sigmoid(input: Tensor) -> Tensor:
    """σ(z) = 1 / (1 + e^{−z}), elementwise, any shape."""
    return SigmoidFunction.apply(input)


def tanh(input: Tensor) -> Tensor:
    """tanh(z), elementwise, any shape."""
    return TanhFunction.apply(input)


def relu(input: Tensor) -> Tensor:
    """max(z, 0), elementwise, any shape."""
    return ReLUFunction.apply(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """z if z > 0 else negative_slope·z, elementwise, any shape."""
    return LeakyReLUFunction.apply(input, float(negative_slope))


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + e^{βz}) / β (z itself where βz > threshold), elementwise, any shape."""
    if beta <= 0:
        raise ValueError(f"softplus: beta must be > 0, got {beta}")
    return SoftplusFunction.apply(input, float(beta), float(threshold))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """z Φ(z), the exact (erf) form; ``approximate`` must be 'none'."""
    if approximate != "none":
        raise ValueError(f"gelu: approximate={approximate!r} is not supported; allowed: 'none'")
    return GELUFunction.apply(input)
