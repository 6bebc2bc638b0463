"""Normalization as modules: each value standardized, then scaled and shifted by learned
γ and β.

- ``BatchNorm1d``/``BatchNorm2d``: statistics per channel over the batch (and the positions),
  x̂ = (x − μ_B)/√(σ²_B + ε), y = γ·x̂ + β. In training it uses the batch's statistics and
  updates running estimates (momentum, the unbiased variance) that evaluation uses instead.
  Its backward, as one formula: ∂x = γ/(n·σ) · (n·∂y − Σ∂y − x̂·Σ(∂y·x̂)) — the mean term Σ∂y
  is there because every x moved μ_B (``neuronlab-explain batchnorm`` shows it node by node).
- ``LayerNorm``: statistics per row over the last axes; the same formula, no running state.

The formulas live beside the ops (``neuronlab.functional.batch_norm``, ``layer_norm``); both
modules are registered with the network loop (``functional/norm_math.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..functional.network import register_layer
from .dense import _check_size, _Switchable
from .switch import op


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not eps > 0:
        raise ValueError(f"eps={eps!r} must be a number > 0")
    return float(eps)


class LayerNorm(_Switchable):
    """Each row standardized over its last ``len(normalized_shape)`` axes, then γ·x̂ + β.

    Args:
        normalized_shape: the trailing shape normalized over, e.g. ``100`` or ``(25, 5)``.
        eps: added to the variance.
        elementwise_affine: learn ``weight`` (γ, ones) and ``bias`` (β, zeros) of that shape.
        backprop: ``"manual"`` or ``"autograd"``.
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, backprop: str = "manual") -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        self.normalized_shape = tuple(_check_size("normalized_shape", s) for s in shape)
        self.eps = _check_eps(eps)
        self.backprop = backprop
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape))
            self.bias = nn.Parameter(torch.zeros(self.normalized_shape))
        else:
            self.weight = self.bias = None

    def forward(self, x: Tensor) -> Tensor:
        return op("layer_norm", self._backprop)(x, self.normalized_shape, self.weight,
                                                self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.weight is not None}, backprop={self._backprop!r}")


class _BatchNorm(_Switchable):
    dims = 1

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 backprop: str = "manual") -> None:
        super().__init__()
        self.num_features = _check_size("num_features", num_features)
        self.eps = _check_eps(eps)
        if momentum is not None and not (isinstance(momentum, int | float)
                                         and not isinstance(momentum, bool)
                                         and 0 <= momentum <= 1):
            raise ValueError(f"momentum={momentum!r} must be null (cumulative average) or in "
                             "[0, 1]")
        self.momentum = momentum
        self.backprop = backprop
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))   # γ
            self.bias = nn.Parameter(torch.zeros(num_features))    # β
        else:
            self.weight = self.bias = None
        self.track_running_stats = bool(track_running_stats)
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x: Tensor) -> Tensor:
        want = (2, 3) if self.dims == 1 else (4,)
        if x.dim() not in want:
            raise ValueError(f"{type(self).__name__} expects input of "
                             f"{' or '.join(map(str, want))} dims, got shape {tuple(x.shape)}")
        use_batch, momentum = self._count_batch()
        return op("batch_norm", self._backprop)(  # updates the running statistics in place
            x, self.running_mean, self.running_var, self.weight, self.bias, use_batch,
            momentum, self.eps)

    def _count_batch(self) -> tuple[bool, float]:
        """What each forward does before normalizing (the op path and the network loop alike):
        count the batch in training; whether the batch's own statistics are used, and the
        running statistics' momentum."""
        momentum = 0.0 if self.momentum is None else self.momentum
        use_batch = self.training or self.running_mean is None
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative average: the k-th batch weighs 1/k
                momentum = 1.0 / float(self.num_batches_tracked)
        return use_batch, momentum

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.weight is not None}, "
                f"track_running_stats={self.track_running_stats}, backprop={self._backprop!r}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of ``(B, C)`` or ``(B, C, L)``: per channel C, over B (and L).
    Args and buffers are ``torch.nn.BatchNorm1d``'s, plus ``backprop``."""

    dims = 1


class BatchNorm2d(_BatchNorm):
    """Batch normalization of ``(B, C, H, W)``: per channel C, over B, H and W.
    Args and buffers are ``torch.nn.BatchNorm2d``'s, plus ``backprop``."""

    dims = 2


def _describe_batch_norm(norm: _BatchNorm, logits: bool) -> tuple[tuple, tuple]:
    """A batch norm in the network loop; describing it for a forward counts the batch, as its
    own forward does (``_count_batch``). The running statistics are a parameter of the loop
    where they normalize (evaluation), else the ones to update (``functional/norm_math.py``)."""
    use_batch, momentum = norm._count_batch()
    stats = (norm.running_mean, norm.running_var)
    if use_batch:
        return (True, momentum, norm.eps, stats), (norm.weight, norm.bias, None, None)
    return (False, momentum, norm.eps, ()), (norm.weight, norm.bias, *stats)


register_layer(_BatchNorm, "batch_norm", _describe_batch_norm)
register_layer(LayerNorm, "layer_norm", lambda norm, logits: (
    (norm.normalized_shape, norm.eps), (norm.weight, norm.bias)))
