"""The activations' part of the rounding bound (:mod:`.rounding`): ``|f'|``, ``|f''|``, the
size of an activation's own terms, and the carry that takes the terms at its output back to
its input."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..functional import get_activation

PIECEWISE_LINEAR = ("identity", "relu", "leaky_relu")  # f'' = 0 (almost everywhere)


def _derivatives(name: str, z: Tensor) -> tuple[Tensor, Tensor]:
    """``(|f'(z)|, |f''(z)|)`` of the activation ``name``, by autograd through its plain-torch
    twin."""
    z = z.detach().requires_grad_()
    curved = name not in PIECEWISE_LINEAR
    with torch.enable_grad():
        a = get_activation(name, "autograd")(z)
        (d,) = torch.autograd.grad(a, z, torch.ones_like(a), create_graph=curved)
        dd = torch.zeros_like(z)
        if curved and d.requires_grad:
            (dd,) = torch.autograd.grad(d, z, torch.ones_like(d), allow_unused=True,
                                        materialize_grads=True)
    return d.detach().abs(), dd.detach().abs()


def _derivative_terms(name: str, z: Tensor, d: Tensor) -> Tensor:
    """The size of the terms f'(z) is computed from (≥ |f'(z)|). Where f' is a difference
    that cancels as the unit saturates — tanh' = 1 − a², sigmoid' = a(1 − a) near a ≈ 1,
    gelu' = ½(1 + erf) + zφ for z ≪ 0 — two correct formulas differ by about u of these
    terms, not of |f'|: 1 + a², a(1 + a), ½(1 + |erf|) + |z|φ."""
    if name == "tanh":
        a = torch.tanh(z)
        return 1 + a * a
    if name == "sigmoid":
        a = torch.sigmoid(z)
        return a * (1 + a)
    if name == "gelu":
        za = z.abs()
        return (0.5 * (1 + torch.erf(za * (1 / math.sqrt(2))))
                + za * torch.exp(-0.5 * z * z) * (1 / math.sqrt(2 * math.pi)))
    return d


def carry_terms(name: str, z: Tensor, z_size: Tensor) -> tuple[Tensor, Tensor]:
    """``(|f'(z)|, the carry)``: what the terms at an activation's output are multiplied by
    on the way back to z — the derivative's own terms plus the forward's error carried
    through f'': ``T(f') + |f''(z)| Z̃``."""
    d, dd = _derivatives(name, z)
    return d, torch.maximum(d, _derivative_terms(name, z, d)) + dd * z_size


def _activation_terms(name: str, z: Tensor, a: Tensor) -> Tensor:
    """The size of the terms of an activation's value: ``|a|``; gelu's ``½z(1 + erf(z/√2))``
    cancels for z ≪ 0, where its rounding is u·|z|, not u·|a|."""
    if name == "gelu":
        return 0.5 * z.abs() * (1 + torch.erf(z.abs() * (1 / math.sqrt(2))))
    return a.abs()
