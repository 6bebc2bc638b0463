"""The network loop's math for the layers of a CNN (``functional.network``): a convolution
with its activation, max and average pooling, and the reshapes between them — each the pair
of plain functions its op-level Function wraps (``conv_forward``/``conv_backward``,
``max_pool_*``, ``avg_pool_*``, the activations' chain steps), registered in ``LAYER_MATH``
without touching the loop. Norms, the activation after a norm and dropout are
``norm_math.py``'s (a normalized convolution runs here with activation ``identity``).
"""

from __future__ import annotations

from torch import Tensor

from .conv import CONV, conv_backward, conv_forward
from .layer_math import (
    _FUSED,
    LAYER_MATH,
    Attrs,
    LayerMath,
    activate,
    activation_back,
    n_activation_extra,
)
from .pooling import avg_pool_backward, avg_pool_forward, max_pool_backward, max_pool_forward
from .precision import INPUT_DTYPE, DtypeRule

KEEP = DtypeRule(INPUT_DTYPE)  # pooling and reshapes compute in their input's dtype


def conv_layer_forward(x: Tensor, params: tuple, attrs: Attrs) -> tuple[Tensor, tuple]:
    """a = act(b + W ⋆ xₚ); attrs: (activation, stride, padding pairs, dilation, groups)."""
    activation, stride, padding, dilation, groups = attrs
    weight, bias = params
    return activate(conv_forward(x, weight, bias, stride, padding, dilation, groups), activation)


def conv_layer_backward(grad_y: Tensor | None, grad_extra: tuple, x: Tensor, y: Tensor,
                        params: tuple, extra: tuple, attrs: Attrs, needs: tuple[bool, ...]):
    """δ_z = δ_a ⊙ a'(z); then ∂W = Σ_{n,t} δ_z ⊗ patch(t), ∂b = Σ δ_z, ∂x = δ_z scattered
    back by a transposed convolution (``conv_backward``)."""
    activation, stride, padding, dilation, groups = attrs
    weight, bias = params
    grad_z = activation_back(grad_y, grad_extra, y, extra, activation)
    if grad_z is None:
        return None, (None, None)
    gx, gw, gb = conv_backward(grad_z, x, weight, (tuple(x.shape), tuple(weight.shape)), stride,
                               padding, dilation, groups, needs, bias is not None)
    return gx, (gw, gb)


def pool_forward(x: Tensor, params: tuple, attrs: Attrs) -> tuple[Tensor, tuple]:
    """The max (and where it is) or the mean of each window; attrs: (kind, kernel, stride,
    padding)."""
    kind, kernel, stride, padding = attrs
    if kind == "max":
        y, indices = max_pool_forward(x, kernel, stride, padding, (1,) * len(kernel), False)
        return y, (indices,)
    return avg_pool_forward(x, kernel, stride, padding, False, True, None), ()


def pool_backward(grad_y: Tensor | None, grad_extra: tuple, x: Tensor, y: Tensor, params: tuple,
                  extra: tuple, attrs: Attrs, needs: tuple[bool, ...]):
    """Max: each window's δ to its argmax; average: spread evenly over the window."""
    kind, kernel, stride, padding = attrs
    if grad_y is None:
        return None, ()
    if kind == "max":
        return max_pool_backward(grad_y, extra[0], tuple(x.shape), len(kernel)), ()
    return avg_pool_backward(grad_y, tuple(x.shape), kernel, stride, padding, True, None), ()


def reshape_forward(x: Tensor, params: tuple, attrs: Attrs) -> tuple[Tensor, tuple]:
    """Each row viewed as ``attrs[0]`` (a flat row as (C, L): -1 flattens)."""
    return x.reshape(x.shape[0], *attrs[0]), ()


def reshape_backward(grad_y: Tensor | None, grad_extra: tuple, x: Tensor, y: Tensor,
                     params: tuple, extra: tuple, attrs: Attrs, needs: tuple[bool, ...]):
    return (None if grad_y is None else grad_y.reshape(x.shape)), ()


LAYER_MATH["conv"] = LayerMath("conv", 2, conv_layer_forward, conv_layer_backward,
                               lambda attrs: n_activation_extra(attrs[0]), CONV,
                               reads_y=lambda attrs: attrs[0] in _FUSED)
LAYER_MATH["pool"] = LayerMath("pool", 0, pool_forward, pool_backward,
                               lambda attrs: 1 if attrs[0] == "max" else 0, KEEP,
                               reads_y=lambda attrs: False)
LAYER_MATH["reshape"] = LayerMath("reshape", 0, reshape_forward, reshape_backward,
                                  lambda attrs: 0, KEEP, reads_y=lambda attrs: False)
