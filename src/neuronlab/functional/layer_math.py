"""The per-layer math of the network loop (``functional.network``): each layer type's forward
and backward as plain functions, a ``LayerMath`` record per type in ``LAYER_MATH``, and the
cross-entropy at the end of the loop.

The interface (see ``network``'s docstring for how the loop calls it)::

    forward(x, params, attrs)                                 -> (y, extra)
    backward(δ_y, δ_extra, x, y, params, extra, attrs, needs) -> (δ_x, param_grads)

The functions are the op-level Functions' own math (``linear.weighted_sum``/
``weighted_sum_backward``, the activations' forward and ``*_chain`` steps, the derivative
formulas called through ``activations``' namespace as its Functions call them,
cross-entropy's δ = (p − onehot)/N): shared, not copied, so every granularity computes the same
values. A new layer type adds its pair here (or in its own file) and a ``LayerMath`` entry in
``LAYER_MATH``; the loop is untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from . import activations as A
from .dense import _FUSED
from .linear import GEMM, _check_linear_shapes, weighted_sum, weighted_sum_backward
from .precision import DtypeRule, opmath

Attrs = tuple


@dataclass(frozen=True)
class LayerMath:
    """One layer type's math for the loop (see the module docstring)."""

    name: str
    n_params: int
    forward: Callable[..., tuple[Tensor, tuple[Tensor, ...]]]
    backward: Callable[..., tuple[Tensor | None, tuple[Tensor | None, ...]]]
    n_extra: Callable[[Attrs], int]
    dtypes: DtypeRule  # how autocast casts the layer's parameters (and the network's input)
    check: Callable[[Tensor | None, tuple, Attrs], None] = lambda x, params, attrs: None
    # whether ``backward`` reads y; where not, the last layer's y is not saved (it gets None)
    reads_y: Callable[[Attrs], bool] = lambda attrs: True


# ---- the dense layer: a = act(x Wᵀ + b) -----------------------------------------------------
# activation → (forward a = f(z), whether the backward needs z, chain step δ_z = chain(δ_a, a|z))
# relu/sigmoid/tanh are written with their output a (``dense._FUSED``), the others with z.
_Z_CHAIN: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]] = {
    "leaky_relu": (lambda z: A.LeakyReLUFunction.forward(z, 0.01),
                   lambda g, z: A._chain(g, A.leaky_relu_derivative(opmath(z), 0.01))),
    "softplus": (lambda z: A.SoftplusFunction.forward(z, 1.0, 20.0),
                 lambda g, z: A._chain(g, A.softplus_derivative(opmath(z), 1.0, 20.0))),
    "gelu": (lambda z: A.GELUFunction.forward(z, "none"),
             lambda g, z: A._chain(g, A.gelu_derivative(opmath(z)))),
}
LOOP_ACTIVATIONS = ("identity", *_FUSED, *_Z_CHAIN)


def activate(z: Tensor, activation: str) -> tuple[Tensor, tuple[Tensor, ...]]:
    """a = f(z), and what the chain step needs besides a: z, for an activation written with
    its input (the weighted layers' shared second half)."""
    if activation == "identity":
        return z, ()
    if activation in _FUSED:
        return _FUSED[activation][0](z), ()
    return _Z_CHAIN[activation][0](z), (z,)


def activation_back(grad_y: Tensor | None, grad_extra: tuple, y: Tensor, extra: tuple,
                    activation: str) -> Tensor | None:
    """δ_z = δ_a ⊙ a'(z), plus any gradient reaching z itself (double backward)."""
    grad_z = grad_y
    if activation == "relu" and grad_y is not None and not torch.is_grad_enabled():
        grad_z = A.relu_derivative(y).mul_(grad_y)  # relu_chain's product, in place
    elif grad_y is not None and activation != "identity":
        grad_z = (_FUSED[activation][1](grad_y, y) if activation in _FUSED
                  else _Z_CHAIN[activation][1](grad_y, extra[0]))
    if grad_extra and grad_extra[0] is not None:
        grad_z = grad_extra[0] if grad_z is None else grad_z + grad_extra[0]
    return grad_z


def n_activation_extra(activation: str) -> int:
    return 0 if activation == "identity" or activation in _FUSED else 1


def dense_forward(x: Tensor, params: tuple, attrs: Attrs) -> tuple[Tensor, tuple[Tensor, ...]]:
    """a = act(x Wᵀ + b); keeps z only for an activation written with its input."""
    weight, bias = params
    return activate(weighted_sum(x, weight, bias), attrs[0])


def dense_backward(grad_y: Tensor | None, grad_extra: tuple, x: Tensor, y: Tensor, params: tuple,
                   extra: tuple, attrs: Attrs, needs: tuple[bool, ...]):
    """δ_z = δ_a ⊙ a'(z), then ∂x = δ_z W, ∂W = δ_zᵀ x, ∂b = Σ δ_z (``weighted_sum_backward``)."""
    weight, bias = params
    grad_z = activation_back(grad_y, grad_extra, y, extra, attrs[0])
    if grad_z is None:
        return None, (None, None)
    gx, gw, gb = weighted_sum_backward(grad_z, x, weight, needs, bias is not None)
    return gx, (gw, gb)


def _dense_check(x: Tensor | None, params: tuple, attrs: Attrs) -> None:
    if attrs[0] not in LOOP_ACTIVATIONS:
        raise ValueError(f"network: activation={attrs[0]!r} is not one of: "
                         f"{', '.join(LOOP_ACTIVATIONS)}")
    if x is not None:
        _check_linear_shapes(x, *params)


DENSE = LayerMath("dense", 2, dense_forward, dense_backward,
                  lambda attrs: n_activation_extra(attrs[0]),
                  GEMM, _dense_check, lambda attrs: attrs[0] in _FUSED)

LAYER_MATH: dict[str, LayerMath] = {"dense": DENSE}


# ---- the loss at the end of the loop: softmax + cross-entropy ------------------------------


def cross_entropy_forward(z: Tensor, target: Tensor, autocast: bool) -> tuple[Tensor, Tensor]:
    """L = −(1/N) Σ_n log softmax(z_n)_{y_n}, computed as ``cross_entropy``'s common case; in
    float32 for half logits, returned in the logits' dtype (float32 under autocast: the loss is
    on autocast's float32 list). Also returns log p = log softmax(z), which the backward reads."""
    zc = opmath(z)
    log_p = torch.log_softmax(zc, 1)
    loss = torch.nn.functional.nll_loss(log_p, target)
    return loss.to(zc.dtype if autocast else z.dtype), log_p


def cross_entropy_backward(grad_loss: Tensor, log_p: Tensor, target: Tensor,
                           dtype: torch.dtype) -> Tensor:
    """δ = ∂L/∂z = g · (p − onehot(y)) / N, p = exp(log p): the loss's first gradient, in the
    same ops and order as ``CrossEntropyFunction``'s backward (same values). Outside a double
    backward (grad mode off in the backward) it works in place: two kernels fewer."""
    p = torch.exp(log_p)
    g = (grad_loss if grad_loss.dtype == p.dtype else grad_loss.to(p.dtype)) / p.shape[0]
    if torch.is_grad_enabled():  # create_graph: out of place, so the ops are differentiable
        onehot = torch.zeros_like(p).scatter_(1, target.unsqueeze(1), 1.0)
        return (g * (p - onehot)).to(dtype)
    delta = p.scatter_(1, target.unsqueeze(1), -1.0, reduce="add").mul_(g)
    return delta if delta.dtype == dtype else delta.to(dtype)


def log_softmax_backward(grad_log_p: Tensor, log_p: Tensor) -> Tensor:
    """∂L/∂z from ∂L/∂(log p): g − p Σ_c g (a gradient reaching log p: double backward)."""
    return grad_log_p - torch.exp(log_p) * grad_log_p.sum(1, keepdim=True)
