"""The layer ops' rows of the ``OPS`` table: how the table calls each one, and its inputs.

The tests, ``neuronlab-check`` and the benchmark call an op as ``manual(*sample(shape, ...))``
with a small ``shape`` such as ``(5,)``, ``(4, 3)`` or ``(2, 3, 4)``. For the layer ops that
shape is the input's, read the way the op reads it (a 1-D shape as one channel, a 2-D one as
an unbatched ``(C, L)``, ...), and the table call fixes the arguments worth checking by
default: a convolution with stride 2 and padding 1 (a ∂W that forgets the stride shows), a
padding index that occurs in the lookup, dropout with a fixed seed (so the op is a function).
torch's OpInfo samples call the public function itself (``OpSpec.public``) with their own
arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

LAYER_KINDS = ("softmax", "conv", "pool", "norm", "dropout", "embedding")


def table_call(fn: Callable[..., Tensor], name: str, **kwargs) -> Callable[..., Tensor]:
    """``fn(*tensors, **kwargs)`` under the name ``name`` (how a report names the op)."""

    def call(*tensors: Tensor) -> Tensor:
        return fn(*tensors, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


OPINFO_SEED = 42  # the seed torch's OpInfo sets around a random op (``wrapper_set_seed``)


def seeded(fn: Callable[..., Tensor], name: str, seed: int = OPINFO_SEED) -> Callable[..., Tensor]:
    """``fn`` run with torch's generators seeded with ``seed`` and restored after: a random op
    (dropout) as a function, the same mask every call."""

    def call(*args, **kwargs) -> Tensor:
        devices = [t.device for t in args if isinstance(t, Tensor) and t.device.type == "cuda"]
        with torch.random.fork_rng(devices=devices[:1]):
            torch.manual_seed(seed)
            return fn(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


def embedding_call(embedding: Callable[..., Tensor], name: str) -> Callable[..., Tensor]:
    """``embedding(indices, weight, **kwargs)`` called as ``(weight, indices, **kwargs)``: the
    order of torch's OpInfo, whose gradient tests perturb the first argument."""

    def call(weight: Tensor, indices: Tensor, **kwargs) -> Tensor:
        return embedding(indices, weight, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


def padded_embedding_call(embedding: Callable[..., Tensor], name: str,
                          padding_idx: int) -> Callable[..., Tensor]:
    """``(weight, indices)`` → the lookup with ``padding_idx``, finite differences can judge.

    torch's convention gives the padding row no gradient, though the output depends on it:
    no finite difference agrees. So the padded lookups get the row's true derivative back
    through a second path that is zero in value, ``W[pad] − W[pad].detach()``: the output is
    torch's, the derivative the true one when the op's backward leaves that row at 0, and a
    backward that ignores ``padding_idx`` counts the row twice, which finite differences see.
    """

    def call(weight: Tensor, indices: Tensor) -> Tensor:
        out = embedding(indices, weight, padding_idx=padding_idx)
        padded = (indices == padding_idx).unsqueeze(-1).to(weight.dtype)  # (*i, 1)
        row = weight[padding_idx]
        return out + padded * (row - row.detach())

    call.__name__ = call.__qualname__ = name
    return call


def randn(shape, dtype, device, generator, requires_grad: bool = True) -> Tensor:
    x = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    return x.requires_grad_(requires_grad)


def sample_input(shape, dtype, device, generator):
    """One input of ``shape`` (softmax, dropout)."""
    return (randn(shape, dtype, device, generator),)


def _spatial(shape, spatial_dims: int) -> tuple[int, ...]:
    """``shape`` as an unbatched ``(C, *spatial)`` (leading 1s added) or a batched one."""
    shape = tuple(shape)
    return (1,) * max(0, spatial_dims + 1 - len(shape)) + shape


def sample_conv(spatial_dims: int) -> Callable[..., tuple]:
    """x of ``shape`` read as ``(C_in, *spatial)`` or ``(N, C_in, *spatial)``; 3 output
    channels, kernel 3 (1-D) or 2×3 (2-D), a bias."""

    def sample(shape, dtype, device, generator):
        x = randn(_spatial(shape, spatial_dims), dtype, device, generator)
        c_in = x.shape[-spatial_dims - 1]
        kernel = (3,) if spatial_dims == 1 else (2, 3)
        w = randn((3, c_in, *kernel), dtype, device, generator)
        b = randn((3,), dtype, device, generator)
        return x, w, b

    return sample


def sample_pool(spatial_dims: int) -> Callable[..., tuple]:
    """x of ``shape`` read as ``(C, *spatial)`` or ``(N, C, *spatial)``: distinct values, so
    every window has one maximum."""

    def sample(shape, dtype, device, generator):
        return (randn(_spatial(shape, spatial_dims), dtype, device, generator),)

    return sample


def sample_layer_norm(shape, dtype, device, generator):
    """x of ``shape`` (its last dimension at least 3), normalized over its last dimension, with
    an affine γ, β. (One entry normalizes to exactly 0 and two to ±1 whatever x is: ∂L/∂x is
    then rounding noise, which neither torch nor finite differences can judge.)"""
    shape = (*shape[:-1], max(shape[-1], 3))
    x = randn(shape, dtype, device, generator)
    gamma = randn(shape[-1:], dtype, device, generator)
    beta = randn(shape[-1:], dtype, device, generator)
    return x, gamma, beta


def layer_norm_call(layer_norm: Callable[..., Tensor], name: str) -> Callable[..., Tensor]:
    """``layer_norm(x, γ.shape, γ, β)``: normalized over γ's shape, the trailing dims."""

    def call(input: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return layer_norm(input, tuple(weight.shape), weight, bias)

    call.__name__ = call.__qualname__ = name
    return call


def batch_norm_call(batch_norm: Callable[..., Tensor], name: str) -> Callable[..., Tensor]:
    """``batch_norm(x, None, None, γ, β, training=True)``: the batch's own statistics."""

    def call(input: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return batch_norm(input, None, None, weight, bias, training=True)

    call.__name__ = call.__qualname__ = name
    return call


def sample_batch_norm(shape, dtype, device, generator):
    """x of ``shape`` read as ``(N, C, *)`` (a 1-D shape as ``(N, 1)``; N raised to 3 where a
    channel would have fewer values: see ``sample_layer_norm``), with γ, β of ``(C,)``."""
    shape = tuple(shape) if len(shape) > 1 else (*shape, 1)
    if shape[0] * math.prod(shape[2:]) < 3:
        shape = (3, *shape[1:])
    x = randn(shape, dtype, device, generator)
    gamma = randn(shape[1:2], dtype, device, generator)
    beta = randn(shape[1:2], dtype, device, generator)
    return x, gamma, beta


EMBEDDING_ROWS = 6
PADDING_IDX = 0


def sample_embedding(shape, dtype, device, generator):
    """``(weight, indices)``, the order of torch's OpInfo: a table of ``EMBEDDING_ROWS`` rows of
    ``shape[-1]`` features, looked up at indices of ``shape[:-1]`` (``(3,)`` for a 1-D shape),
    repeated rows and ``PADDING_IDX`` among them."""
    weight = randn((EMBEDDING_ROWS, shape[-1]), dtype, device, generator)
    index_shape = tuple(shape[:-1]) or (3,)
    idx = torch.randint(0, EMBEDDING_ROWS, index_shape, generator=generator)
    idx.view(-1)[0] = PADDING_IDX
    idx.view(-1)[-1] = idx.view(-1)[min(1, idx.numel() - 1)]  # a row looked up twice
    return weight, idx.to(device)
