"""Local derivatives da/dz of the activations: the math of each activation's backward.

Small pure functions of float32/float64 tensors (``activations`` calls them in float32 for
half inputs). sigmoid, tanh and relu are written with the output a (what their Functions
save); the others with the input z. ``functional.activations`` imports them by name and
calls them through its own namespace, so a test can swap one formula there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sigmoid_derivative(a: Tensor) -> Tensor:
    """σ'(z) = a (1 − a), written with the output a = σ(z)."""
    return a * (1 - a)


def tanh_derivative(a: Tensor) -> Tensor:
    """tanh'(z) = 1 − a², written with the output a = tanh(z)."""
    return 1 - a * a


def relu_derivative(a: Tensor) -> Tensor:
    """relu'(z) = 1 where z > 0 else 0 (0 at the kink, as torch); a > 0 ⇔ z > 0.

    a = relu(z) ≥ 0, so this is sign(a) — with NaN taken as 1 first: at NaN the gradient
    passes through, as torch's, not a silent 0 (``torch.sign(nan)`` is 0). Eagerly, two float
    kernels; the comparison "not a ≤ 0" (a bool tensor, then a cast) costs about three times
    as much on the CPU. Under ``torch.compile`` both become one fused kernel, and the
    comparison's vectorizes better, so that is the one traced. Same values either way.
    """
    if torch.compiler.is_compiling():
        return (~(a <= 0)).to(a.dtype)
    return torch.nan_to_num(a, nan=1.0).sign_()  # sign in place: one tensor, not two


def leaky_relu_derivative(z: Tensor, negative_slope: float) -> Tensor:
    """leaky_relu'(z) = 1 where z > 0 else negative_slope (also at NaN, as torch)."""
    one = torch.ones((), dtype=z.dtype, device=z.device)
    return torch.where(z > 0, one, one * negative_slope)


def softplus_derivative(z: Tensor, beta: float, threshold: float) -> Tensor:
    """softplus'(z) = σ(βz), and 1 above the threshold where softplus(z) = z."""
    return torch.where(z * beta > threshold, torch.ones_like(z), torch.sigmoid(z * beta))


_INV_SQRT2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_KAPPA = 0.044715


def gelu_derivative(z: Tensor) -> Tensor:
    """gelu(z) = z Φ(z)  ⇒  gelu'(z) = Φ(z) + z φ(z)."""
    cdf = 0.5 * (1 + torch.erf(z * _INV_SQRT2))
    pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    return cdf + z * pdf


def gelu_tanh_derivative(z: Tensor) -> Tensor:
    """gelu(z) ≈ ½ z (1 + tanh u), u = √(2/π)(z + κz³), κ = 0.044715  ⇒
    gelu'(z) = ½ (1 + tanh u) + ½ z (1 − tanh² u) √(2/π)(1 + 3κz²)."""
    t = torch.tanh(_SQRT_2_OVER_PI * (z + _GELU_KAPPA * z * z * z))
    du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_KAPPA * z * z)
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * du
