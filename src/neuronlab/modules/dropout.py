"""Dropout as a module: in training, each value is zeroed with probability p and the rest
scaled by 1/(1 − p), so the expected value is unchanged; in evaluation, the identity.

The backward is the same mask times the same scale: a dropped value passes no gradient.
The mask is drawn from torch's generator, so a seed reproduces it (``neuronlab.functional
.dropout``); the network loop draws the same one (``functional/norm_math.py``)."""

from __future__ import annotations

from torch import Tensor

from ..functional.network import register_layer
from .dense import _Switchable
from .switch import op


class Dropout(_Switchable):
    """Zero each value with probability ``p`` while training (scale the rest by 1/(1−p)).

    Args:
        p: the drop probability, in [0, 1).
        backprop: ``"manual"`` or ``"autograd"``.
    """

    def __init__(self, p: float = 0.5, backprop: str = "manual") -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
            raise ValueError(f"p={p!r} must be a number in [0, 1)")
        self.p = float(p)
        self.backprop = backprop

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        return op("dropout", self._backprop)(x, self.p, True)

    def extra_repr(self) -> str:
        return f"p={self.p}, backprop={self._backprop!r}"


register_layer(Dropout, "dropout",  # in evaluation p = 0: nothing drawn, as ``forward``
               lambda dropout, logits: ((dropout.p if dropout.training else 0.0,), ()))
