"""``model=cnn``: MNIST-1D's convolutional network (Greydanus 2020), for signals or images.

On MNIST-1D's ``(1, 40)`` signals: Conv1d 1→25 (kernel 5, stride 2, padding 1), Conv1d 25→25
(3, 2, 1) twice, ReLU after each, flatten 25×5 = 125 → Linear 125→10: 5,210 parameters. On
the digits' ``(1, 8, 8)`` images the same stack with Conv2d (kernels 5×5, 3×3, 3×3). Each row
arrives flat, ``(B, n_features)``; the data set's ``layout`` says how to view it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import torch
from torch import Tensor, nn

from ..functional import get_activation
from ..functional.conv import _padding
from ..functional.network import register_layer
from .conv import Conv1d, Conv2d, _ConvNd
from .dense import Layer, _check_size, _describe_layer
from .dropout import Dropout
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .pooling import AvgPool, MaxPool, _Pool
from .switch import _Stack

NORMS = ("batch", "layer")
POOLS = ("max", "avg")


def _out_size(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def norm_layer(norm: str | None, shape: Sequence[int], backprop: str) -> nn.Module:
    """The normalization of features ``shape`` = ``(C,)``, ``(C, L)`` or ``(C, H, W)``:
    batch norm per channel, layer norm over all of ``shape``, or the identity for ``None``."""
    if norm is None:
        return nn.Identity()
    if norm == "batch":
        cls = BatchNorm2d if len(shape) == 3 else BatchNorm1d
        return cls(shape[0], backprop=backprop)
    if norm == "layer":
        return LayerNorm(tuple(shape), backprop=backprop)
    raise ValueError(f"norm={norm!r} must be one of: {', '.join(NORMS)}, or None")


class CNN(_Stack):
    """Convolutions (each: conv, optional norm, activation), flatten, dropout, a linear layer.

    Args:
        layout: one sample's shape, channels first: ``(C, L)`` → Conv1d, ``(C, H, W)`` → Conv2d.
        n_out: outputs (classes).
        channels: output channels of each convolution (MNIST-1D: ``[25, 25, 25]``).
        kernel_sizes: kernel of each convolution (default 5 first, then 3).
        stride, padding: of every convolution (MNIST-1D: 2 and 1).
        activation: after each convolution.
        norm: ``"batch"``, ``"layer"`` or ``None``, between each convolution and its activation.
        dropout: drop probability before the linear layer.
        granularity: with manual backprop, ``"network"`` runs the whole CNN and its
            cross-entropy as one Function (``functional.network``: the convolutions, norms,
            activations, pools, flatten, dropout and linear layer in the textbook loop; a
            layer norm under CUDA autocast, which computes in float32 there, runs op by op);
            ``"op"`` (or ``"layer"``) one Function per op.
        pool: ``"max"``, ``"avg"`` or ``None``: a window-2 pooling (stride 2) after each
            activation, LeNet's way to downsample. The pooling then does what the stride did:
            the convolutions run with stride 1.
        backprop: ``"manual"`` or ``"autograd"``, set on every layer.

    ``layers`` holds the convolutions and the linear layer (what per-layer statistics hook).
    """

    def __init__(self, layout: Sequence[int], n_out: int, channels: Sequence[int] = (25, 25, 25),
                 kernel_sizes: Sequence[int] | None = None, stride: int = 2, padding: int = 1,
                 activation: str = "relu", norm: str | None = None, dropout: float = 0.0,
                 pool: str | None = None, backprop: str = "manual",
                 granularity: str = "op") -> None:
        super().__init__()
        self.layout = tuple(_check_size("layout", s) for s in layout)
        if len(self.layout) not in (2, 3):
            raise ValueError(f"layout={tuple(layout)} must be (channels, length) or "
                             "(channels, height, width)")
        channels = [_check_size(f"channels[{i}]", c) for i, c in enumerate(channels)]
        if not channels:
            raise ValueError("channels=[] needs at least one convolution")
        kernel_sizes = list(kernel_sizes or [5] + [3] * (len(channels) - 1))
        if len(kernel_sizes) != len(channels):
            raise ValueError(f"kernel_sizes={kernel_sizes} needs one size per channel count "
                             f"({len(channels)})")
        if pool is not None and pool not in POOLS:
            raise ValueError(f"pool={pool!r} must be one of: {', '.join(POOLS)}, or None")
        conv = Conv1d if len(self.layout) == 2 else Conv2d
        dims = len(self.layout) - 1
        stride = 1 if pool else stride
        shape = list(self.layout)
        convs, norms, pools = [], [], []
        for c, k in zip(channels, kernel_sizes, strict=True):
            convs.append(conv(shape[0], c, k, stride, padding, activation=activation,
                              backprop=backprop))
            shape = [c, *(_out_size(n, k, stride, padding) for n in shape[1:])]
            if min(shape) >= 1:
                norms.append(norm_layer(norm, shape, backprop))
            if pool and min(shape) >= 1:
                pools.append((MaxPool if pool == "max" else AvgPool)(2, dims=dims,
                                                                    backprop=backprop))
                shape = [c, *(n // 2 for n in shape[1:])]
            if min(shape) < 1:
                raise ValueError(
                    f"layout={self.layout} is too small for kernel_sizes={kernel_sizes} with "
                    f"stride {stride}, padding {padding}" + (f" and {pool} pooling" if pool
                                                             else "")
                    + ": use fewer convolutions (model.hidden)")
        n_flat = 1
        for n in shape:
            n_flat *= n
        self.activation = activation
        self.norm = norm
        self.pool = pool
        self.pools = nn.ModuleList(pools)
        self.layers = nn.ModuleList([*convs, Layer(n_flat, n_out, backprop=backprop)])
        self.norms = nn.ModuleList(norms)
        self.dropout = Dropout(dropout, backprop=backprop)
        self.backprop = backprop
        self.granularity = granularity
        self.flatten = nn.Flatten()

    def features(self, x: Tensor) -> Tensor:
        """``(B, n_features)`` (or ``(B, *layout)``) → the flat features the last layer sees."""
        x = x.reshape(x.shape[0], *self.layout)
        act = get_activation(self.activation, self._backprop)
        for i, (conv, norm) in enumerate(zip(self.layers[:-1], self.norms, strict=True)):
            x = conv(x) if self.norm is None else act(norm(conv.pre_activation(x)))
            if self.pool:
                x = self.pools[i](x)
        return self.dropout(x.flatten(1))

    def _loops(self) -> bool:
        """Whether the whole network runs as one Function (see ``granularity``)."""
        return super()._loops() and loop_casts_as_ops(self.norm)

    def _chain(self) -> Sequence:
        """The steps the network loop runs, as ``features`` runs them: each convolution (or,
        with a norm, its weighted sum, the norm, the activation) and its pool, the flatten,
        the dropout (while it drops), the linear layer."""
        steps: list = []
        for i, conv in enumerate(self.layers[:-1]):
            steps += normed_steps(conv, self.norms[i], self.norm, self.activation)
            if self.pool:
                steps.append(self.pools[i])
        return (*steps, self.flatten, *dropping(self.dropout), self.layers[-1])

    def _loop_input(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.layout)


# ---- the steps of the network loop that are no module's forward -----------------------------


class _Step:
    """A step of the network loop that is not a module's ``forward``, so it runs no forward
    hooks (as the op path's plain function calls run none)."""

    _forward_hooks: Mapping = MappingProxyType({})

    def __init__(self, of: nn.Module | str) -> None:
        self.of = of


class _ConvSum(_Step):
    """A convolution's z = b + W ⋆ x alone (``pre_activation``): its norm and activation
    follow."""


class _DenseSum(_Step):
    """A dense layer's z = x Wᵀ + b alone (``pre_activation``)."""


class _Activation(_Step):
    """The activation ``of`` (a name) after a norm: a = f(z)."""


def normed_steps(layer: nn.Module, norm: nn.Module, kind: str | None,
                 activation: str) -> tuple:
    """A weighted layer in the loop: itself, or with a norm ``kind`` between its weighted sum
    and its activation, those three steps."""
    if kind is None:
        return (layer,)
    weighted = _ConvSum(layer) if isinstance(layer, _ConvNd) else _DenseSum(layer)
    return weighted, norm, _Activation(activation)


def dropping(dropout: Dropout) -> tuple:
    """The dropout as a step of the loop while it drops (in training, p > 0), else none."""
    return (dropout,) if dropout.training and dropout.p > 0 else ()


def loop_casts_as_ops(norm: str | None) -> bool:
    """Whether the loop computes a network normalized by ``norm`` in the dtypes its ops do:
    not a layer norm under CUDA autocast (float32 there, a cast the loop's layers after it do
    not make)."""
    return norm != "layer" or not torch.is_autocast_enabled("cuda")


def _describe_conv(conv: _ConvNd, logits: bool) -> tuple[tuple, tuple]:
    pads = _padding(type(conv).__name__, conv.padding, conv.kernel_size, conv.stride,
                    conv.dilation)
    return ((conv.activation, conv.stride, pads, conv.dilation, conv.groups),
            (conv.weight, conv.bias))


def _describe_pool(pool: _Pool, logits: bool) -> tuple[tuple, tuple]:
    dims = pool.dims
    return (pool.kind, (pool.kernel_size,) * dims, (pool.stride,) * dims,
            (pool.padding,) * dims), ()


def _describe_flatten(flatten: nn.Flatten, logits: bool) -> tuple[tuple, tuple]:
    if flatten.start_dim != 1 or flatten.end_dim != -1:
        raise TypeError("network: only nn.Flatten() of each row (start_dim=1) joins the loop")
    return ((-1,),), ()


register_layer(_ConvNd, "conv", _describe_conv)
register_layer(_ConvSum, "conv", lambda step, logits: (
    ("identity", *_describe_conv(step.of, logits)[0][1:]), (step.of.weight, step.of.bias)))
register_layer(_DenseSum, "dense", lambda step, logits: _describe_layer(step.of, True))
register_layer(_Activation, "activation", lambda step, logits: ((step.of,), ()))
register_layer(_Pool, "pool", _describe_pool)
register_layer(nn.Flatten, "reshape", _describe_flatten)
