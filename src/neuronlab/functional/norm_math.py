"""The network loop's math for normalization, a standalone activation and dropout
(``functional.network``): each the pair of plain functions its op-level Function wraps,
registered in ``LAYER_MATH`` without touching the loop.

- ``batch_norm``: y = γ x̂ + β per channel (``norm.batch_norm_forward``/``_backward``); in
  training from the batch's statistics, with the running ones updated in place in the forward
  exactly as the op path updates them after its Function (``norm.update_running_stats``), and
  from the running ones in evaluation. params (γ, β, r_μ, r_σ²), the running statistics only
  in evaluation (the backward reads them there); attrs (whether the batch's statistics are
  used, momentum, ε, the running statistics to update in training — there no saved tensor: a
  later forward updates them again before this one's backward may run, as op by op). The
  module counts the batch and picks the momentum when it is described (``modules.norm``).
- ``layer_norm``: the same formula over each row's last dims (``norm.layer_norm_*``).
- ``activation``: a = f(z) alone, the activation after a norm (``layer_math.activate``/
  ``activation_back``, the weighted layers' shared second half).
- ``dropout``: y = x ⊙ n, ∂x = g ⊙ n; the noise n drawn in the forward from torch's default
  generator by ``dropout.dropout_noise``, as the op path draws it (the same draws in the same
  order: the same mask for the same seed), and kept as the layer's extra.

The norms' functions are called through ``norm``'s namespace (``N.``), as its Functions call
them: a formula patched there (a planted bug) reaches every granularity. The layer before a
norm runs without its activation (its ``pre_activation``), as the op path runs it: the
``conv``/``dense`` math with activation ``identity``.
"""

from __future__ import annotations

from torch import Tensor

from . import norm as N
from .dropout import DROPOUT, dropout_backward, dropout_forward, dropout_noise
from .layer_math import (
    _FUSED,
    LAYER_MATH,
    LOOP_ACTIVATIONS,
    Attrs,
    LayerMath,
    activate,
    activation_back,
    n_activation_extra,
)
from .precision import INPUT_DTYPE, DtypeRule


def batch_norm_layer_forward(x: Tensor, params: tuple, attrs: Attrs) -> tuple[Tensor, tuple]:
    """y = γ x̂ + β per channel (dim 1); in training, r_μ and r_σ² updated in place."""
    weight, bias, running_mean, running_var = params
    batch_stats, momentum, eps, update = attrs
    n = N.values_per_channel(x, batch_stats)
    y, mean, var = N.batch_norm_forward(x, running_mean, running_var, weight, bias, batch_stats,
                                      eps)
    if update:
        N.update_running_stats(*update, mean, var, n, momentum)
    return y, ()


def batch_norm_layer_backward(grad_y: Tensor | None, grad_extra: tuple, x: Tensor, y: Tensor,
                              params: tuple, extra: tuple, attrs: Attrs,
                              needs: tuple[bool, ...]):
    """∂x = σ⁻¹/n (n·dh − Σdh − x̂Σ(dh x̂)), dh = γ g (batch statistics) or γ g σ⁻¹ (running
    ones); ∂γ = Σ g x̂, ∂β = Σ g."""
    weight, bias, running_mean, running_var = params
    if grad_y is None:
        return None, (None,) * 4
    gx, gw, gb = N.batch_norm_backward(grad_y, x, running_mean, running_var, weight, attrs[0],
                                     attrs[2], needs[:3], bias is not None)
    return gx, (gw, gb, None, None)


def layer_norm_layer_forward(x: Tensor, params: tuple, attrs: Attrs) -> tuple[Tensor, tuple]:
    """y = γ x̂ + β, x̂ over the last ``len(attrs[0])`` dims; attrs: (normalized_shape, ε)."""
    weight, bias = params
    return N.layer_norm_forward(x, attrs[0], weight, bias, attrs[1]), ()


def layer_norm_layer_backward(grad_y: Tensor | None, grad_extra: tuple, x: Tensor, y: Tensor,
                              params: tuple, extra: tuple, attrs: Attrs,
                              needs: tuple[bool, ...]):
    """∂x = σ⁻¹/n (n·dh − Σdh − x̂Σ(dh x̂)), dh = γ g; ∂γ = Σ_batch g x̂, ∂β = Σ_batch g."""
    weight, bias = params
    if grad_y is None:
        return None, (None, None)
    gx, gw, gb = N.layer_norm_backward(grad_y, x, weight, attrs[0], attrs[1], needs,
                                     bias is not None)
    return gx, (gw, gb)


def activation_layer_forward(x: Tensor, params: tuple, attrs: Attrs) -> tuple[Tensor, tuple]:
    """a = f(z); keeps z only for an activation written with its input."""
    return activate(x, attrs[0])


def activation_layer_backward(grad_y: Tensor | None, grad_extra: tuple, x: Tensor, y: Tensor,
                              params: tuple, extra: tuple, attrs: Attrs,
                              needs: tuple[bool, ...]):
    """δ_z = δ_a ⊙ a'(z)."""
    return activation_back(grad_y, grad_extra, y, extra, attrs[0]), ()


def _activation_check(x: Tensor | None, params: tuple, attrs: Attrs) -> None:
    if attrs[0] not in LOOP_ACTIVATIONS:
        raise ValueError(f"network: activation={attrs[0]!r} is not one of: "
                         f"{', '.join(LOOP_ACTIVATIONS)}")


def dropout_layer_forward(x: Tensor, params: tuple, attrs: Attrs) -> tuple[Tensor, tuple]:
    """y = x ⊙ n, n = m/(1 − p) drawn now from torch's default generator; attrs: (p,).
    p = 0 (or a module in evaluation) draws nothing and copies x, as the op path keeps x."""
    if attrs[0] == 0:
        return x.clone(), ()
    noise = dropout_noise(x, attrs[0])
    return dropout_forward(x, noise), (noise,)


def dropout_layer_backward(grad_y: Tensor | None, grad_extra: tuple, x: Tensor, y: Tensor,
                           params: tuple, extra: tuple, attrs: Attrs, needs: tuple[bool, ...]):
    """∂x = g ⊙ n (the noise is a constant: a gradient reaching it goes nowhere)."""
    if grad_y is None or not extra:
        return grad_y, ()
    return dropout_backward(grad_y, extra[0]), ()


KEEP = DtypeRule(INPUT_DTYPE)  # an activation computes in its input's dtype

LAYER_MATH["batch_norm"] = LayerMath("batch_norm", 4, batch_norm_layer_forward,
                                     batch_norm_layer_backward, lambda attrs: 0, N.BATCH_NORM,
                                     reads_y=lambda attrs: False)
LAYER_MATH["layer_norm"] = LayerMath("layer_norm", 2, layer_norm_layer_forward,
                                     layer_norm_layer_backward, lambda attrs: 0, N.LAYER_NORM,
                                     reads_y=lambda attrs: False)
LAYER_MATH["activation"] = LayerMath("activation", 0, activation_layer_forward,
                                     activation_layer_backward,
                                     lambda attrs: n_activation_extra(attrs[0]), KEEP,
                                     _activation_check, lambda attrs: attrs[0] in _FUSED)
LAYER_MATH["dropout"] = LayerMath("dropout", 0, dropout_layer_forward, dropout_layer_backward,
                                  lambda attrs: 1 if attrs[0] else 0, DROPOUT,
                                  reads_y=lambda attrs: False)
