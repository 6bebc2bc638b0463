"""Dense layers as modules: a neuron, a layer of neurons, a network of layers (MLP).

Every module computes its forward (and so its backward) one of two ways, switchable at any
time through the plain attribute ``backprop``:

- ``"manual"``: through neuronlab's hand-written Functions (the chain rule written out);
- ``"autograd"``: through plain torch ops, differentiated by torch.

The parameters are the same either way, so the two backward passes can be compared. A manual
module also has a ``granularity`` (switchable too): how many hand-written Functions its backward
is cut into, with the same values and gradients at each:

- ``"op"``: one Function per op (``linear``, then the activation): the node-level chain rule;
- ``"layer"``: one Function per layer (``functional.dense``: weighted sum and activation, their
  chain rule in one backward); ``fused=True`` is the old name of this one and still works;
- ``"network"``: the whole network as one Function (``functional.network``) whose backward is
  the textbook loop over the layers, last to first: the least per-call overhead. The layers'
  forward hooks still run, called with each layer's input and output (their return values are
  ignored): what the gradient-flow statistics read.
"""


from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import unknown_choice
from ..functional import ACTIVATIONS, check_backprop, get_activation, linear
from ..functional.dense import dense
from ..functional.network import network, register_layer
from .switch import GRANULARITIES, _Switchable, check_granularity

__all__ = ["GRANULARITIES", "MLP", "Layer", "Neuron"]


def _check_size(key: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key}={value!r} must be an integer ≥ 1")
    return value


def _check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise unknown_choice("activation", name, ACTIVATIONS)
    return name



class Layer(_Switchable):
    """``n_out`` neurons side by side: a(x Wᵀ + b), one weight row per neuron.

    Args:
        n_in: inputs per neuron.
        n_out: neurons in the layer.
        activation: a name from ``neuronlab.functional.ACTIVATIONS``.
        bias: whether each neuron has a bias.
        backprop: ``"manual"`` or ``"autograd"``.
        fused: ``True`` is ``granularity="layer"`` (the old name).
        granularity: with manual backprop, ``"op"``, ``"layer"`` or ``"network"`` (see the
            module docstring); overrides ``fused`` when given.

    Shapes: input ``(*, n_in)`` → output ``(*, n_out)``; ``weight`` ``(n_out, n_in)``,
    ``bias`` ``(n_out,)``.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        activation: str = "identity",
        bias: bool = True,
        backprop: str = "manual",
        fused: bool = False,
        granularity: str | None = None,
    ) -> None:
        super().__init__()
        self.n_in = _check_size("n_in", n_in)
        self.n_out = _check_size("n_out", n_out)
        self.activation = _check_activation(activation)
        self.backprop = backprop
        self.fused = fused
        if granularity is not None:
            self.granularity = granularity
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None
        bound = 1 / n_in**0.5  # a usable default; neuronlab.init.initialize_ sets the policy
        nn.init.uniform_(self.weight, -bound, bound)

    @property
    def fan_in(self) -> int:
        return self.n_in

    @property
    def fan_out(self) -> int:
        return self.n_out

    def pre_activation(self, x: Tensor) -> Tensor:
        """z = x Wᵀ + b, the weighted sum: ``(*, n_in)`` → ``(*, n_out)``."""
        if self._backprop == "manual":
            if self._granularity == "network":
                return network(x, (self,), logits=True)[0]
            return linear(x, self.weight, self.bias)
        return nn.functional.linear(x, self.weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self._backprop == "manual":
            if self._granularity == "network":
                return network(x, (self,))[0]
            if self._granularity == "layer":
                return dense(x, self.weight, self.bias, self.activation)
        return get_activation(self.activation, self._backprop)(self.pre_activation(x))

    def extra_repr(self) -> str:
        return (
            f"n_in={self.n_in}, n_out={self.n_out}, activation={self.activation!r}, "
            f"bias={self.bias is not None}, backprop={self._backprop!r}, "
            f"granularity={self._granularity!r}"
        )


def _describe_layer(layer: Layer, logits: bool) -> tuple[tuple, tuple]:
    """A ``Layer`` in the network loop: the dense layer math (``functional.network``)."""
    return ("identity" if logits else layer.activation,), (layer.weight, layer.bias)


register_layer(Layer, "dense", _describe_layer)


class Neuron(Layer):
    """One neuron: a(x · w + b) — inputs times weights, summed, plus a bias, then activated.

    A ``Layer`` with ``n_out=1`` whose output drops the unit axis: input ``(*, n_in)`` →
    output ``(*,)``. ``weight`` is ``(1, n_in)`` (one row, as in a layer); ``w`` is the
    ``(n_in,)`` view of it.
    """

    _squeezed = True  # one output, the unit axis dropped: no cross-entropy over classes

    def __init__(
        self,
        n_in: int,
        activation: str = "sigmoid",
        bias: bool = True,
        backprop: str = "manual",
        fused: bool = False,
        granularity: str | None = None,
    ) -> None:
        super().__init__(n_in, 1, activation=activation, bias=bias, backprop=backprop,
                         fused=fused, granularity=granularity)

    @property
    def w(self) -> Tensor:
        return self.weight[0]

    def pre_activation(self, x: Tensor) -> Tensor:
        return super().pre_activation(x).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        if self._granularity != "op" and self._backprop == "manual":
            return super().forward(x).squeeze(-1)
        return super().forward(x)


class MLP(_Switchable):
    """Layers stacked: ``sizes = [n_in, h1, ..., n_out]``.

    Hidden layers use ``activation``; the last uses ``output_activation`` (``None`` means
    identity: the network returns logits, and the loss fuses the sigmoid/softmax).
    ``layers`` is an ``nn.ModuleList`` so per-layer statistics can hook each one.
    Setting ``backprop``, ``granularity`` or ``fused`` on the MLP sets it on every layer; with
    ``granularity="network"`` the MLP runs its layers as one Function (``functional.network``).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        output_activation: str | None = None,
        bias: bool = True,
        backprop: str = "manual",
        fused: bool = False,
        granularity: str | None = None,
    ) -> None:
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes={sizes!r} needs at least an input and an output size")
        for i, s in enumerate(sizes):
            _check_size(f"sizes[{i}]", s)
        _check_activation(activation)
        out_act = _check_activation(output_activation or "identity")
        self.sizes = sizes
        n_layers = len(sizes) - 1
        self.layers = nn.ModuleList(
            Layer(
                sizes[i],
                sizes[i + 1],
                activation=activation if i < n_layers - 1 else out_act,
                bias=bias,
                backprop=backprop,
                fused=fused,
            )
            for i in range(n_layers)
        )
        self.backprop = backprop
        self.fused = fused
        if granularity is not None:
            self.granularity = granularity

    @_Switchable.backprop.setter
    def backprop(self, value: str) -> None:
        self._backprop = check_backprop(value)
        for layer in getattr(self, "layers", []):
            layer.backprop = value

    @_Switchable.granularity.setter
    def granularity(self, value: str) -> None:
        self._granularity = check_granularity(value)
        for layer in getattr(self, "layers", []):
            layer.granularity = value

    def _chain(self) -> Sequence[nn.Module]:
        return self.layers

    def pre_activation(self, x: Tensor) -> Tensor:
        """The logits: every layer, then the last layer's weighted sum without its activation."""
        if self._loops():
            return self._loop(x, logits=True)
        *hidden, last = self.layers  # (slicing a ModuleList would build a new module)
        for layer in hidden:
            x = layer(x)
        return last.pre_activation(x)

    def forward(self, x: Tensor) -> Tensor:
        if self._loops():
            return self._loop(x, logits=False)
        for layer in self.layers:
            x = layer(x)
        return x
