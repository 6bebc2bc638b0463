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
``(x, *params)``. The last layer's y is not saved where ``reads_y(attrs)`` says its backward
doesn't read it (the logits before the loss, which autograd keeps neither): it gets ``None``.
Every intermediate tensor (each layer's y and extra) is also an *output* of the Function:
the double backward then reaches the weights through them (the saved tensors are in the
graph), and the gradient-flow statistics read each layer's activation from them.
``δ_extra`` holds the gradients reaching those outputs (``None`` in a plain backward).

A module type takes part through ``register_layer(module_type, math, describe)``: ``describe(
module, logits)`` returns ``(attrs, params)``, with ``logits=True`` for the last layer when the
loss wants logits (its activation left out). A new layer type registers itself; the loop is
untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function

from . import conv_math, norm_math  # noqa: F401 - register the CNN's layers, norms, dropout
from .dispatch import unwrap_dead_wrappers
from .layer_math import (
    LAYER_MATH,
    Attrs,
    cross_entropy_backward,
    cross_entropy_forward,
    log_softmax_backward,
)
from .precision import autocast_inputs

# ---- the loop ------------------------------------------------------------------------------


class NetworkFunction(Function):
    """y = layer_L(… layer_1(x)), optionally followed by the cross-entropy loss; backward: the
    textbook loop over the layers, last to first.

    ``plan`` is a tuple of ``(kind, attrs)`` (constants); ``loss`` ``None`` (no loss) or
    whether autocast is on (the loss's dtype depends on it); ``target`` the class indices (or
    ``None``); ``params`` every layer's tensors in order. Outputs: the network's y, each hidden
    layer's output, every layer's extra, then (with the loss) log softmax(logits), the loss.
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
        tail = () if loss is None else cross_entropy_forward(x, target, loss)[::-1]
        return (ys[-1], *ys[:-1], *extras, *tail)  # ..., log p, loss

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        plan, loss, x, target, *params = inputs
        ctx.plan, ctx.has_loss = plan, loss is not None
        ctx.set_materialize_grads(False)  # outputs nobody used get None, not zeros
        ctx.y_dtype = output[0].dtype
        ctx.save_for_backward(x, target, *params, *_kept(plan, ctx.has_loss, output))

    @staticmethod
    def backward(ctx, *grads: Tensor | None):
        x, target, *rest = ctx.saved_tensors
        needs = ctx.needs_input_grad
        n_params = len(needs) - 4
        delta, param_grads = backprop(ctx.plan, ctx.has_loss, ctx.y_dtype, x, target,
                                      rest[:n_params], rest[n_params:], grads,
                                      (needs[2], *needs[4:]))
        return None, None, delta, None, *param_grads

    @classmethod
    def apply(cls, *args: Any) -> Any:  # noqa: D102 - positional only: torch's C++ apply
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        return super(Function, cls).apply(*unwrap_dead_wrappers(args))


def _kept(plan: tuple, has_loss: bool, output: Sequence[Tensor]) -> tuple[Tensor | None, ...]:
    """The outputs the backward reads: all but the loss (log p kept), and the network's y only
    where its layer's backward reads it (not the logits)."""
    outs = tuple(output[:-1] if has_loss else output)
    kind, attrs = plan[-1]
    return outs if LAYER_MATH[kind].reads_y(attrs) else (None, *outs[1:])


def backprop(plan: tuple, has_loss: bool, y_dtype: torch.dtype, x: Tensor,
             target: Tensor | None, params: Sequence[Tensor | None],
             outs: Sequence[Tensor | None], grads: Sequence[Tensor | None],
             needs: Sequence[bool]) -> tuple[Tensor | None, list[Tensor | None]]:
    """The textbook loop: δ = ∂L/∂y at the output (from the loss's first gradient when the loss
    is in the loop), then each layer from the last to the first turns δ into its parameters'
    gradients and the δ of the layer below. ``NetworkFunction``'s backward, as a plain function.

    ``outs``: the Function's saved outputs (the output y, or ``None`` where no backward reads it;
    each hidden layer's y; every layer's extra; log p with the loss); ``grads``: the gradients
    reaching every output; ``needs``: whether x and each parameter want a gradient. Returns
    (∂L/∂x, every parameter's gradient).
    """
    maths = [LAYER_MATH[kind] for kind, _ in plan]
    n_layers, n_params = len(plan), len(params)
    ys = (*outs[1:n_layers], outs[0])  # every layer's output, first to last
    grad_ys = (*grads[1:n_layers], grads[0])
    delta = grad_ys[-1]  # δ = ∂L/∂y at the output ...
    if has_loss:  # ... from the loss's first gradient
        log_p, outs = outs[-1], outs[:-1]
        if grads[-1] is not None:
            d = cross_entropy_backward(grads[-1], log_p, target, y_dtype)
            delta = d if delta is None else delta + d
        if grads[-2] is not None:  # log p used elsewhere (double backward)
            d = log_softmax_backward(grads[-2], log_p).to(y_dtype)
            delta = d if delta is None else delta + d
    extras, grad_extras = outs[n_layers:], grads[n_layers:len(outs)]
    param_grads: list[Tensor | None] = [None] * n_params
    p, e = n_params, len(extras)  # each layer's params and extras end here
    for i in reversed(range(n_layers)):  # the textbook loop: last layer to first
        m, attrs = maths[i], plan[i][1]
        if i < n_layers - 1 and grad_ys[i] is not None:  # y_i was also used elsewhere
            delta = grad_ys[i] if delta is None else delta + grad_ys[i]
        p0, e0 = p - m.n_params, e - m.n_extra(attrs)
        delta, param_grads[p0:p] = m.backward(
            delta, grad_extras[e0:e], x if i == 0 else ys[i - 1], ys[i], params[p0:p],
            extras[e0:e], attrs, (needs[0] if i == 0 else True, *needs[1 + p0:1 + p]))
        p, e = p0, e0
    return delta, param_grads


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
            ps = autocast_inputs(math.dtypes, *ps) if ps else ps
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


def check_class_targets(name: str, input: Tensor, target: Tensor) -> None:
    """``ValueError`` unless ``input`` is ``(N, …)`` and ``target`` its ``(N,)`` class indices."""
    if target.dim() != 1 or target.is_floating_point() or input.dim() < 2 or \
            target.shape[0] != input.shape[0]:
        raise ValueError(f"{name}: expected input (N, …) and class indices (N,), got input "
                         f"{tuple(input.shape)} and target {tuple(target.shape)} ({target.dtype})")


def network_cross_entropy(input: Tensor, target: Tensor, layers: Sequence[Any]
                          ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """The network to its logits and the mean cross-entropy against class indices ``target``
    ``(N,)`` (each in [0, C): no weights, ``ignore_index`` or smoothing), as one Function whose
    backward starts from the loss's own first gradient δ = (p − onehot(y))/N.

    Returns the loss, the logits and every layer's output (as ``network``). The loss is
    ``cross_entropy``'s: float32 under autocast, else the logits' dtype.
    """
    check_class_targets("network_cross_entropy", input, target)
    autocast = torch.is_autocast_enabled(input.device.type)
    input, plan, params = _plan(input, layers, logits=True)
    outs = NetworkFunction.apply(plan, autocast, input, target.long(), *params)
    n = len(plan)
    return outs[-1], outs[0], (*outs[1:n], outs[0])
