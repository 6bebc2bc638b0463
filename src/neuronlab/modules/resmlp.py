"""``model=resmlp``: MNIST-1D's residual MLP, and an MLP with normalization or dropout.

MNIST-1D's (Greydanus 2020): Linear 40→100, ReLU, h ← h + ReLU(Linear 100→100 (h)),
Linear 100→10. Each hidden layer may be normalized between its weighted sum and its
activation (``norm``) and its output dropped (``dropout``); with ``residual=False`` the same
stack has no skips (``model=mlp`` with ``model.norm`` or ``model.dropout``), and at
``granularity="network"`` it runs as the network loop (``functional.network``). A residual
network runs op by op: a skip h + layer(h) is not a chain of layers.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..functional import get_activation
from .cnn import dropping, loop_casts_as_ops, norm_layer, normed_steps
from .dense import Layer, _check_size
from .dropout import Dropout
from .switch import _Stack


class ResMLP(_Stack):
    """``sizes = [n_in, h1, ..., n_out]``; each hidden layer after the first adds its input
    back (``residual=True``: its size must equal the one before).

    Args:
        sizes: layer sizes.
        activation: of the hidden layers (the last returns logits).
        residual: h ← h + layer(h) for every hidden layer after the first.
        norm: ``"batch"``, ``"layer"`` or ``None``, between weighted sum and activation.
        dropout: drop probability after each hidden layer.
        backprop: ``"manual"`` or ``"autograd"``, set on every layer.
        granularity: with manual backprop and ``residual=False``, ``"network"`` runs the whole
            network and its cross-entropy as one Function (``functional.network``: the
            weighted sums, norms, activations, dropouts and the output layer in the textbook
            loop; a layer norm under CUDA autocast runs op by op). A residual network, whose
            skips are no chain, and ``"op"`` (or ``"layer"``): one Function per op.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", residual: bool = True,
                 norm: str | None = None, dropout: float = 0.0,
                 backprop: str = "manual", granularity: str = "op") -> None:
        super().__init__()
        sizes = [_check_size(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
        if len(sizes) < 3:
            raise ValueError(f"sizes={sizes} needs an input, a hidden and an output size")
        if residual and len(set(sizes[1:-1])) > 1:
            raise ValueError(f"sizes={sizes}: residual hidden layers must all have one size "
                             f"(h + layer(h)), got {sizes[1:-1]}")
        self.sizes, self.residual, self.norm = sizes, residual, norm
        self.activation = activation
        self.layers = nn.ModuleList(
            Layer(sizes[i], sizes[i + 1], activation=activation if i < len(sizes) - 2
                  else "identity", backprop=backprop)
            for i in range(len(sizes) - 1))
        self.norms = nn.ModuleList(norm_layer(norm, (s,), backprop) for s in sizes[1:-1])
        self.dropout = Dropout(dropout, backprop=backprop)
        self.backprop = backprop
        self.granularity = granularity

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer's output ``(B, sizes[-2])``."""
        act = get_activation(self.activation, self._backprop)
        for i, (layer, norm) in enumerate(zip(self.layers[:-1], self.norms, strict=True)):
            h = layer(x) if self.norm is None else act(norm(layer.pre_activation(x)))
            x = self.dropout(x + h if self.residual and i > 0 else h)
        return x

    def _loops(self) -> bool:
        """Whether the whole network runs as one Function (see ``granularity``)."""
        return super()._loops() and not self.residual and loop_casts_as_ops(self.norm)

    def _chain(self) -> Sequence:
        """The steps the network loop runs, as ``features`` runs them: each hidden layer (or,
        with a norm, its weighted sum, the norm, the activation) and the dropout after it
        (while it drops), then the output layer."""
        steps: list = []
        for layer, norm in zip(self.layers[:-1], self.norms, strict=True):
            steps += [*normed_steps(layer, norm, self.norm, self.activation),
                      *dropping(self.dropout)]
        return (*steps, self.layers[-1])
