"""The whole network in one Function: backprop as the textbook loop.

The op-level Functions show the chain rule node by node; ``NetworkFunction`` shows it as one
movement. Its forward runs every layer and keeps what the backward needs; its backward starts
from δ = ∂L/∂y at the output (what the loss's own backward handed it: for softmax + cross-entropy
δ = (p − y)/N at the logits) and walks the layers from the last to the first::

    for layer in reversed(layers):
        δ_z = δ ⊙ a'(z)                  # through the layer's activation
        ∂W  = δ_zᵀ · a_prev              # the layer's parameter gradients
        ∂b  = Σ_batch δ_z
        δ   = δ_z · W                    # ∂L/∂a_prev: what the layer below receives

The arithmetic is the op-level Functions': ``linear.weighted_sum``/``weighted_sum_backward``
and the activations' forward and chain steps (``dense``, ``activations``, ``derivatives``), in
the same order, so the values and gradients are the op-by-op path's bits. What the loop saves
is dispatch: one autograd node for the whole network instead of one or two per layer.

**The per-layer interface.** The loop knows no layer type. Each one is a ``LayerMath``: its
math as two plain functions (the same ones its op-level Function wraps)::

    forward(x, params, attrs)                        -> (y, extra)
    backward(δ_y, δ_extra, x, y, params, extra, attrs, needs)  -> (δ_x, param_grads)

``params`` is the layer's tensors (``n_params`` of them, ``None`` for an absent one), ``attrs``
a tuple of constants (an activation name, a stride, …), ``extra`` the tensors besides x and y
that the backward needs (``n_extra(attrs)`` of them: z for an activation written with its input,
a dropout mask, a normalization's statistics), ``needs`` the ``needs_input_grad`` flags of
``(x, *params)``. Every intermediate tensor (each layer's y and extra) is also an *output* of
the Function: the double backward then reaches the weights through them (the saved tensors are
in the graph), and the gradient-flow statistics read each layer's activation from them.
``δ_extra`` holds the gradients reaching those outputs (``None`` in a plain backward).

A module type takes part through ``register_layer(module_type, math, describe)``: ``describe(
module, logits)`` returns ``(attrs, params)``, with ``logits=True`` for the last layer when the
loss wants logits (its activation left out). A new layer type registers itself; the loop is
untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function

from . import activations as A
from .dense import _FUSED
from .derivatives import gelu_derivative, leaky_relu_derivative, softplus_derivative
from .dispatch import unwrap_dead_wrappers
from .linear import GEMM, _check_linear_shapes, weighted_sum, weighted_sum_backward
from .precision import DtypeRule, autocast_inputs, opmath

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


# ---- the dense layer: a = act(x Wᵀ + b) -----------------------------------------------------
# activation → (forward a = f(z), whether the backward needs z, chain step δ_z = chain(δ_a, a|z))
# relu/sigmoid/tanh are written with their output a (``dense._FUSED``), the others with z.
_Z_CHAIN: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]] = {
    "leaky_relu": (lambda z: A.LeakyReLUFunction.forward(z, 0.01),
                   lambda g, z: A._chain(g, leaky_relu_derivative(opmath(z), 0.01))),
    "softplus": (lambda z: A.SoftplusFunction.forward(z, 1.0, 20.0),
                 lambda g, z: A._chain(g, softplus_derivative(opmath(z), 1.0, 20.0))),
    "gelu": (lambda z: A.GELUFunction.forward(z, "none"),
             lambda g, z: A._chain(g, gelu_derivative(opmath(z)))),
}
LOOP_ACTIVATIONS = ("identity", *_FUSED, *_Z_CHAIN)


def dense_forward(x: Tensor, params: tuple, attrs: Attrs) -> tuple[Tensor, tuple[Tensor, ...]]:
    """a = act(x Wᵀ + b); keeps z only for an activation written with its input."""
    (activation,) = attrs
    weight, bias = params
    z = weighted_sum(x, weight, bias)
    if activation == "identity":
        return z, ()
    if activation in _FUSED:
        return _FUSED[activation][0](z), ()
    return _Z_CHAIN[activation][0](z), (z,)


def dense_backward(grad_y: Tensor | None, grad_extra: tuple, x: Tensor, y: Tensor, params: tuple,
                   extra: tuple, attrs: Attrs, needs: tuple[bool, ...]):
    """δ_z = δ_a ⊙ a'(z), then ∂x = δ_z W, ∂W = δ_zᵀ x, ∂b = Σ δ_z (``weighted_sum_backward``)."""
    (activation,) = attrs
    weight, bias = params
    grad_z = grad_y
    if grad_y is not None and activation != "identity":
        grad_z = (_FUSED[activation][1](grad_y, y) if activation in _FUSED
                  else _Z_CHAIN[activation][1](grad_y, extra[0]))
    if grad_extra and grad_extra[0] is not None:  # a gradient reaching z itself (double backward)
        grad_z = grad_extra[0] if grad_z is None else grad_z + grad_extra[0]
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
                  lambda attrs: 0 if attrs[0] == "identity" or attrs[0] in _FUSED else 1,
                  GEMM, _dense_check)

LAYER_MATH: dict[str, LayerMath] = {"dense": DENSE}


# ---- the loss at the end of the loop: softmax + cross-entropy ------------------------------


def cross_entropy_forward(z: Tensor, target: Tensor, autocast: bool) -> Tensor:
    """L = −(1/N) Σ_n log softmax(z_n)_{y_n}, computed as ``cross_entropy``'s common case; in
    float32 for half logits, returned in the logits' dtype (float32 under autocast: the loss is
    on autocast's float32 list)."""
    zc = opmath(z)
    log_p = torch.log_softmax(zc, 1)
    return torch.nn.functional.nll_loss(log_p, target).to(zc.dtype if autocast else z.dtype)


def cross_entropy_backward(grad_loss: Tensor, z: Tensor, target: Tensor) -> Tensor:
    """δ = ∂L/∂z = g · (p − onehot(y)) / N, p = softmax(z): the loss's first gradient, in the
    same ops and order as ``CrossEntropyFunction``'s backward (p = exp(log softmax z))."""
    zc = opmath(z)
    p = torch.exp(torch.log_softmax(zc, 1))
    onehot = torch.zeros_like(p).scatter_(1, target.unsqueeze(1), 1.0)
    g = grad_loss.to(zc.dtype) / z.shape[0]
    return (g * (p - onehot)).to(z.dtype)


# ---- the loop ------------------------------------------------------------------------------


class NetworkFunction(Function):
    """y = layer_L(… layer_1(x)), optionally followed by the cross-entropy loss; backward: the
    textbook loop over the layers, last to first.

    ``plan`` is a tuple of ``(kind, attrs)`` (constants); ``loss`` ``None`` (no loss) or
    whether autocast is on (the loss's dtype depends on it); ``target`` the class indices (or
    ``None``); ``params`` every layer's tensors in order. Outputs: the network's y, each hidden
    layer's output, every layer's extra, then the loss (with one).
    """

    @staticmethod
    def forward(plan: tuple, loss: bool | None, x: Tensor, target: Tensor | None,
                *params: Tensor | None):
        ys, extras, k = [], [], 0
        for kind, attrs in plan:
            math = LAYER_MATH[kind]
            x, extra = math.forward(x, params[k:k + math.n_params], attrs)
            k += math.n_params
            ys.append(x)
            extras.extend(extra)
        tail = () if loss is None else (cross_entropy_forward(x, target, loss),)
        return (ys[-1], *ys[:-1], *extras, *tail)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        plan, loss, x, target, *params = inputs
        ctx.plan, ctx.has_loss = plan, loss is not None
        ctx.set_materialize_grads(False)  # outputs nobody used get None, not zeros
        outs = output[:-1] if ctx.has_loss else output
        ctx.save_for_backward(x, target, *params, *outs)

    @staticmethod
    def backward(ctx, *grads: Tensor | None):
        plan, needs = ctx.plan, ctx.needs_input_grad
        x, target, *rest = ctx.saved_tensors
        maths = [LAYER_MATH[kind] for kind, _ in plan]
        n_layers, n_params = len(plan), len(needs) - 4
        params, outs = rest[:n_params], rest[n_params:]
        ys = (*outs[1:n_layers], outs[0])  # every layer's output, first to last
        grad_ys = (*grads[1:n_layers], grads[0])
        extras, grad_extras = outs[n_layers:], grads[n_layers:len(outs)]
        delta = grad_ys[-1]  # δ = ∂L/∂y at the output ...
        if ctx.has_loss and grads[-1] is not None:  # ... the loss's first gradient
            d_loss = cross_entropy_backward(grads[-1], ys[-1], target)
            delta = d_loss if delta is None else delta + d_loss
        param_grads: list[Tensor | None] = [None] * n_params
        p, e = n_params, len(extras)  # each layer's params and extras end here
        for i in reversed(range(n_layers)):  # the textbook loop: last layer to first
            m, attrs = maths[i], plan[i][1]
            if i < n_layers - 1 and grad_ys[i] is not None:  # y_i was also used elsewhere
                delta = grad_ys[i] if delta is None else delta + grad_ys[i]
            p0, e0 = p - m.n_params, e - m.n_extra(attrs)
            delta, param_grads[p0:p] = m.backward(
                delta, grad_extras[e0:e], x if i == 0 else ys[i - 1], ys[i], params[p0:p],
                extras[e0:e], attrs, (needs[2] if i == 0 else True, *needs[4 + p0:4 + p]))
            p, e = p0, e0
        return None, None, delta, None, *param_grads

    @classmethod
    def apply(cls, *args: Any) -> Any:  # noqa: D102 - positional only: torch's C++ apply
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        return super(Function, cls).apply(*unwrap_dead_wrappers(args))


# ---- modules into the loop -----------------------------------------------------------------

Describe = Callable[[Any, bool], tuple[Attrs, tuple]]
_MODULES: dict[type, tuple[str, Describe]] = {}


def register_layer(module_type: type, kind: str, describe: Describe) -> None:
    """Let modules of ``module_type`` (and its subclasses) run in the loop as ``LAYER_MATH[kind]``;
    ``describe(module, logits)`` gives ``(attrs, params)``."""
    if kind not in LAYER_MATH:
        raise ValueError(f"register_layer: kind={kind!r} is not one of: {', '.join(LAYER_MATH)}")
    _MODULES[module_type] = (kind, describe)


def _entry(module: Any) -> tuple[str, Describe]:
    for cls in type(module).__mro__:
        if cls in _MODULES:
            return _MODULES[cls]
    raise TypeError(f"network: {type(module).__name__} has no layer math; register one with "
                    "neuronlab.functional.network.register_layer")


def _plan(input: Tensor, layers: Sequence[Any], logits: bool) -> tuple[Tensor, tuple, list]:
    if not layers:
        raise ValueError("network: layers must hold at least one layer")
    plan, params = [], []
    last = len(layers) - 1
    autocast = torch.is_autocast_enabled(input.device.type)
    for i, layer in enumerate(layers):
        kind, describe = _MODULES.get(type(layer)) or _entry(layer)
        attrs, ps = describe(layer, logits and i == last)
        math = LAYER_MATH[kind]
        math.check(input if i == 0 else None, ps, attrs)
        if autocast:  # each layer's tensors as its op-level functions cast them
            if i == 0:
                (input,) = autocast_inputs(math.dtypes, input)
            ps = autocast_inputs(math.dtypes, *ps)
        plan.append((kind, attrs))
        params.extend(ps)
    return input, tuple(plan), params


def network(input: Tensor, layers: Sequence[Any], logits: bool = False
            ) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run ``layers`` (registered modules) as one ``NetworkFunction``.

    Returns the network's output and every layer's output (first to last; the last is the
    output). ``logits=True`` leaves the last layer's activation out (the loss takes logits).
    Under autocast each layer's parameters are cast by its ``LayerMath.dtypes`` rule, the input
    by the first layer's, as the op-level functions cast them.
    """
    input, plan, params = _plan(input, layers, logits)
    outs = NetworkFunction.apply(plan, None, input, None, *params)
    return outs[0], (*outs[1:len(plan)], outs[0])


def network_cross_entropy(input: Tensor, target: Tensor, layers: Sequence[Any]
                          ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """The network to its logits and the mean cross-entropy against class indices ``target``
    ``(N,)`` (each in [0, C): no weights, ``ignore_index`` or smoothing), as one Function whose
    backward starts from the loss's own first gradient δ = (p − onehot(y))/N.

    Returns the loss, the logits and every layer's output (as ``network``). The loss is
    ``cross_entropy``'s: float32 under autocast, else the logits' dtype.
    """
    if target.dim() != 1 or target.is_floating_point() or input.dim() != 2 or \
            target.shape[0] != input.shape[0]:
        raise ValueError(f"network_cross_entropy: expected input (N, n_in) and class indices "
                         f"(N,), got input {tuple(input.shape)} and target "
                         f"{tuple(target.shape)} ({target.dtype})")
    autocast = torch.is_autocast_enabled(input.device.type)
    input, plan, params = _plan(input, layers, logits=True)
    outs = NetworkFunction.apply(plan, autocast, input, target.long(), *params)
    n = len(plan)
    return outs[-1], outs[0], (*outs[1:n], outs[0])
