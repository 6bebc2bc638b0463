"""Activations: a(z) after the weighted sum, each with its local derivative.

The math sits apart from the machinery: first the derivative formulas as small pure
functions, then one ``torch.autograd.Function`` per activation whose ``backward`` is
*local derivative × upstream gradient*. Each backward is built from differentiable torch
ops, so double backward (``gradgradcheck``, Hessian-vector products) works.

Sigmoid, tanh and ReLU save their *output* (the next layer saves it anyway: no extra
memory); the others save their input. Dtypes (see ``precision``): an activation computes in
its input's dtype, under autocast too (CUDA's autocast puts softplus on its float32 list, and
so do we); bfloat16/float16 inputs get float32 inner math, rounded once, as in PyTorch's
kernels. NaN propagates as in torch: a NaN input gives a NaN output and never a silent zero
gradient (relu passes the upstream gradient through at NaN; a NaN *upstream* gradient stays
NaN, where torch's relu writes 0 for z ≤ 0).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from .derivatives import (  # noqa: F401  (re-exported: the formulas live in ``derivatives``)
    _GELU_KAPPA,
    _INV_SQRT2,
    _SQRT_2_OVER_PI,
    gelu_derivative,
    gelu_tanh_derivative,
    leaky_relu_derivative,
    relu_derivative,
    sigmoid_derivative,
    softplus_derivative,
    tanh_derivative,
)
from .dispatch import ChainRuleFunction
from .precision import FLOAT32, INPUT_DTYPE, DtypeRule, autocast_inputs, opmath

# ---- the Functions -----------------------------------------------------------------------
# forward: upcast a half input, compute, round once (``.to(input.dtype)``).
# backward: the same in float32, so the product g · a'(z) is rounded once too.


# Where each computes (see ``precision``); the public functions read these module constants
# (torch.compile cannot read an attribute of an autograd.Function class), the registry reads
# the same objects through ``Function.dtypes``.
ELEMENTWISE = DtypeRule(INPUT_DTYPE)
SOFTPLUS = DtypeRule(INPUT_DTYPE, autocast_cuda=FLOAT32)  # on CUDA autocast's float32 list


def _chain(grad_output: Tensor, local: Tensor) -> Tensor:
    """upstream × local derivative, computed in float32 for half dtypes, rounded once."""
    return (opmath(grad_output) * local).to(grad_output.dtype)


# The chain step of the activations written with their output a: ∂L/∂z from ∂L/∂a and a.
# Their Functions' backward and the fused layer's (``dense``) both call these.


def sigmoid_chain(grad_output: Tensor, a: Tensor) -> Tensor:
    """∂L/∂z = ∂L/∂a · a(1 − a)."""
    return _chain(grad_output, sigmoid_derivative(opmath(a)))


def tanh_chain(grad_output: Tensor, a: Tensor) -> Tensor:
    """∂L/∂z = ∂L/∂a · (1 − a²)."""
    return _chain(grad_output, tanh_derivative(opmath(a)))


def relu_chain(grad_output: Tensor, a: Tensor) -> Tensor:
    """∂L/∂z = ∂L/∂a · 1[z > 0]: × 0 or 1, exact in every dtype (no float32 detour)."""
    return grad_output * relu_derivative(a)


class SigmoidFunction(ChainRuleFunction):
    """a = 1 / (1 + e^{−z}).  Backward: ∂L/∂z = ∂L/∂a · a(1 − a)."""

    generate_vmap_rule = True
    dtypes = ELEMENTWISE

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.sigmoid(opmath(input)).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        return sigmoid_chain(grad_output, a)


class TanhFunction(ChainRuleFunction):
    """a = tanh(z).  Backward: ∂L/∂z = ∂L/∂a · (1 − a²)."""

    generate_vmap_rule = True
    dtypes = ELEMENTWISE

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.tanh(opmath(input)).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        return tanh_chain(grad_output, a)


class ReLUFunction(ChainRuleFunction):
    """a = max(z, 0).  Backward: ∂L/∂z = ∂L/∂a · 1[z > 0] (· 1 at NaN, as torch)."""

    generate_vmap_rule = True
    dtypes = ELEMENTWISE

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.relu(input)  # exact in every dtype: nothing to round

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        return relu_chain(grad_output, a)


class LeakyReLUFunction(ChainRuleFunction):
    """a = z if z > 0 else s·z.  Backward: ∂L/∂z = ∂L/∂a · (1 if z > 0 else s)."""

    generate_vmap_rule = True
    dtypes = ELEMENTWISE

    @staticmethod
    def forward(input: Tensor, negative_slope: float) -> Tensor:
        z = opmath(input)
        return torch.where(z > 0, z, z * negative_slope).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, negative_slope = inputs
        ctx.save_for_backward(input)
        ctx.negative_slope = negative_slope

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (z,) = ctx.saved_tensors
        return _chain(grad_output, leaky_relu_derivative(opmath(z), ctx.negative_slope)), None


class SoftplusFunction(ChainRuleFunction):
    """a = log(1 + e^{βz}) / β (z where βz > threshold).  Backward: ∂L/∂z = ∂L/∂a · σ(βz).

    Under CUDA autocast it computes in float32 (softplus is on CUDA's float32 list).
    """

    generate_vmap_rule = True
    dtypes = SOFTPLUS

    @staticmethod
    def forward(input: Tensor, beta: float, threshold: float) -> Tensor:
        z = opmath(input)
        bz = z * beta
        # log1p(exp(βz)) overflows for large βz, where softplus(z) = z to machine precision
        below = torch.log1p(torch.exp(bz.clamp(max=threshold))) / beta
        return torch.where(bz > threshold, z, below).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, beta, threshold = inputs
        ctx.save_for_backward(input)
        ctx.beta, ctx.threshold = beta, threshold

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (z,) = ctx.saved_tensors
        local = softplus_derivative(opmath(z), ctx.beta, ctx.threshold)
        return _chain(grad_output, local), None, None


class GELUFunction(ChainRuleFunction):
    """a = z Φ(z) (exact, erf), or ½ z (1 + tanh(√(2/π)(z + 0.044715 z³))) ('tanh').

    Backward: ∂L/∂z = ∂L/∂a · gelu'(z), with gelu' from ``gelu_derivative`` (exact:
    Φ(z) + z φ(z)) or ``gelu_tanh_derivative``.
    """

    generate_vmap_rule = True
    dtypes = ELEMENTWISE

    @staticmethod
    def forward(input: Tensor, approximate: str) -> Tensor:
        # torch's own kernel, as sigmoid and tanh use theirs: the forward is not the chain
        # rule, and the same bits as ``F.gelu`` keep the two backward passes on the same
        # logits (written out with torch.erf the value differed by up to ~60 ulps: torch's
        # kernel rounds its erf otherwise). Half inputs compute in float32 inside, rounded once.
        return F.gelu(input, approximate=approximate)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.approximate = inputs[1]

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (z,) = ctx.saved_tensors
        z = opmath(z)
        local = gelu_tanh_derivative(z) if ctx.approximate == "tanh" else gelu_derivative(z)
        return _chain(grad_output, local), None


# ---- public functions, named and called like torch.nn.functional --------------------------


def _inplace(input: Tensor, out: Tensor, inplace: bool) -> Tensor:
    """``inplace=True``: computed out of place, then copied into ``input`` (torch's values and
    gradients; no memory saved). A leaf that requires grad refuses, as in torch."""
    return input.copy_(out) if inplace else out


def sigmoid(input: Tensor) -> Tensor:
    """σ(z) = 1 / (1 + e^{−z}), elementwise, any shape."""
    (input,) = autocast_inputs(ELEMENTWISE, input)
    return SigmoidFunction.apply(input)


def tanh(input: Tensor) -> Tensor:
    """tanh(z), elementwise, any shape."""
    (input,) = autocast_inputs(ELEMENTWISE, input)
    return TanhFunction.apply(input)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(z, 0), elementwise, any shape (``inplace`` as in ``F.relu``; see ``_inplace``)."""
    (input,) = autocast_inputs(ELEMENTWISE, input)
    return _inplace(input, ReLUFunction.apply(input), inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """z if z > 0 else negative_slope·z, elementwise, any shape (``inplace`` as in torch)."""
    (input,) = autocast_inputs(ELEMENTWISE, input)
    # the Function saves its input: for inplace it gets a copy, so the copy back is safe
    source = input.clone() if inplace else input
    return _inplace(input, LeakyReLUFunction.apply(source, float(negative_slope)), inplace)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + e^{βz}) / β (z itself where βz > threshold), elementwise, any shape."""
    if beta <= 0:
        raise ValueError(f"softplus: beta must be > 0, got {beta}")
    (input,) = autocast_inputs(SOFTPLUS, input)
    return SoftplusFunction.apply(input, float(beta), float(threshold))


GELU_APPROXIMATIONS = ("none", "tanh")


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """z Φ(z): the exact erf form (``approximate='none'``) or the tanh approximation."""
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(
            f"gelu: approximate={approximate!r} is not one of: {', '.join(GELU_APPROXIMATIONS)}"
        )
    (input,) = autocast_inputs(ELEMENTWISE, input)
    return GELUFunction.apply(input, approximate)
