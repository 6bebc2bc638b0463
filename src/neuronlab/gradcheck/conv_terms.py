"""The size of the terms of each gradient (see :mod:`.rounding`) for the networks past the
MLP: ``CNN`` (convolutions, pooling, flatten, a linear layer), ``ResMLP`` (skips
h + layer(h)) and ``EmbeddingMLP`` (a lookup, then an MLP).

The same triangle inequality, step by step, as :func:`.rounding.gradient_terms`: forward, a
weighted sum's size is the sum with |W| over the input's size (a convolution with |W|);
backward, ``m`` is carried through |W| (a transposed convolution) and |f'(z)|, a skip adds its
two branches, dropout's 1/(1−p) scales both ways. A norm's size is x̂'s (its input's and its
mean's over σ), and m goes back through the one-formula backward term by term. Max pooling is
exact: its output's size is the size of the input it picked, and m goes back to that argmax;
average pooling averages the sizes and spreads m. A lookup is exact. ``T(W)`` is then the
weight gradient of the sizes: ``Σ_positions mᵀ X̃`` for a convolution, the scatter-add of m
into the rows looked up for an embedding table. Other layer types raise
:class:`TermsNotCovered`; the audit skips such a network with a note instead of judging it
against a wrong bound.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from ..functional import get_activation
from ..functional.dropout import dropout_noise
from ..modules import MLP, Layer, Neuron
from ..modules.cnn import CNN
from ..modules.conv import _ConvNd
from ..modules.embedmlp import EmbeddingMLP
from ..modules.norm import LayerNorm
from ..modules.pooling import MaxPool
from ..modules.resmlp import ResMLP
from .activation_terms import _activation_terms, carry_terms
from .rounding import (
    LOSS_TERMS,
    LayerPass,
    _loss_gradient_terms,
    gradient_terms,
)


class TermsNotCovered(TypeError):
    """The network holds a layer whose terms the rounding bound does not size yet."""


def _affine(layer: nn.Module, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """The layer's weighted sum with the weights ``w``, ``b`` (plain torch)."""
    if isinstance(layer, _ConvNd):
        conv = nn.functional.conv1d if layer.dims == 1 else nn.functional.conv2d
        return conv(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)
    return nn.functional.linear(x, w, b)


def _sized(layer: nn.Module, h: Tensor, size: Tensor, dtype) -> tuple[Tensor, Tensor]:
    """(z, its size): the weighted sum, and the sum of the sizes with |W| and |b|."""
    w = layer.weight.detach().to(dtype)
    b = None if layer.bias is None else layer.bias.detach().to(dtype)
    return _affine(layer, h, w, b), _affine(layer, size, w.abs(), None if b is None else b.abs())


def _back(layer: nn.Module, x_size: Tensor, m: Tensor, dtype
          ) -> tuple[Tensor, Tensor, Tensor]:
    """(T(W), T(b), m at the input): the weight gradient of the sizes, Σ m over everything
    but the channel, and m carried back through |W|."""
    with torch.enable_grad():
        x = x_size.detach().requires_grad_()
        w = layer.weight.detach().to(dtype).abs().requires_grad_()
        m_in, t_w = torch.autograd.grad(_affine(layer, x, w, None), (x, w), m)
    t_b = m.sum(0) if m.dim() == 2 else m.sum([0, *range(2, m.dim())])
    return t_w, t_b, m_in


def _norm_forward(norm: nn.Module, z: Tensor, z_size: Tensor, dtype) -> tuple:
    """(y, its size, what the backward needs) of a batch or layer norm of ``z``: x̂'s size is
    the input's (plus its mean's) over σ, y's is |γ|·that + |β|."""
    if isinstance(norm, LayerNorm):
        dims = list(range(z.dim() - len(norm.normalized_shape), z.dim()))
        param_shape = norm.normalized_shape
    else:  # batch norm: per channel, over the batch and the positions
        dims = [0, *range(2, z.dim())]
        param_shape = (z.shape[1],) + (1,) * (z.dim() - 2)
    batch_stats = isinstance(norm, LayerNorm) or norm.training or norm.running_mean is None
    if batch_stats:
        mean = z.mean(dims, keepdim=True)
        var = z.var(dims, unbiased=False, keepdim=True)
    else:
        mean = norm.running_mean.to(dtype).reshape(param_shape)
        var = norm.running_var.to(dtype).reshape(param_shape)
    sigma = (var + norm.eps).sqrt()
    xhat = (z - mean) / sigma
    xhat_size = (z_size + z_size.mean(dims, keepdim=True)) / sigma
    if norm.weight is None:
        gamma, beta = torch.ones((), dtype=dtype), torch.zeros((), dtype=dtype)
    else:
        gamma = norm.weight.detach().to(dtype).reshape(param_shape)
        beta = norm.bias.detach().to(dtype).reshape(param_shape)
    y = gamma * xhat + beta
    return y, gamma.abs() * xhat_size + beta.abs(), (norm, dims, sigma, xhat.abs(), xhat_size,
                                                     gamma.abs(), batch_stats)


def _norm_back(ctx: tuple, m: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor]:
    """(T(γ), T(β), m at the input) through ∂x = γσ⁻¹/n·(n∂y − Σ∂y − x̂Σ(∂y·x̂)), each term
    by its size (the running statistics' backward is γσ⁻¹·∂y alone)."""
    norm, dims, sigma, xhat, xhat_size, gamma, batch_stats = ctx
    # γ is per channel (batch norm: summed over dims) or per feature (layer norm: over rows)
    param_dims = list(range(m.dim() - len(norm.normalized_shape))) if isinstance(
        norm, LayerNorm) else dims
    t_g = t_b = None
    if norm.weight is not None:
        t_g = (m * xhat_size).sum(param_dims).reshape(norm.weight.shape)
        t_b = m.sum(param_dims).reshape(norm.bias.shape)
    if batch_stats:
        # x̂·Σ(∂y·x̂) to first order in x̂'s error: one factor at its size, the other its value
        m = (m + m.mean(dims, keepdim=True) + xhat_size * (m * xhat).mean(dims, keepdim=True)
             + xhat * (m * xhat_size).mean(dims, keepdim=True))
    return t_g, t_b, gamma / sigma * m


def _dropped(model: nn.Module, h: Tensor, size: Tensor, masks: list,
             rng_state: list[Tensor] | None) -> tuple[Tensor, Tensor]:
    """(h, size) through the model's dropout as the step drew it: with the step's RNG state
    (``rng_state``, what the audit keeps) the same mask m/(1 − p), drawn in the forward's order
    (kept in ``masks`` for the backward), on the values and the sizes; without it, the sizes
    scaled by 1/(1 − p), the values kept (a bound for some mask, not the step's)."""
    p = model.dropout.p if model.training else 0.0
    if p == 0:
        masks.append(None)
        return h, size
    if rng_state is None:
        masks.append(1.0 / (1.0 - p))
        return h, size * masks[-1]
    masks.append(dropout_noise(h, p))
    return h * masks[-1], size * masks[-1]


def _pool_forward(pool: nn.Module, a: Tensor, a_size: Tensor) -> tuple[Tensor, Tensor, tuple]:
    """(y, its size, what the backward needs) of a pooling: max is exact, so y's size is the
    size of the input it picked; an average's size is the average of the sizes."""
    dims, k = pool.dims, pool.kernel_size
    if isinstance(pool, MaxPool):
        fn = nn.functional.max_pool1d if dims == 1 else nn.functional.max_pool2d
        y, idx = fn(a, k, pool.stride, pool.padding, return_indices=True)
        size = a_size.flatten(2).gather(2, idx.flatten(2)).reshape(y.shape)
    else:
        fn = nn.functional.avg_pool1d if dims == 1 else nn.functional.avg_pool2d
        y, size = fn(a, k, pool.stride, pool.padding), fn(a_size, k, pool.stride, pool.padding)
    return y, size, (fn, a, k, pool.stride, pool.padding)


def _pool_back(ctx: tuple, m: Tensor) -> Tensor:
    """m carried back through the pooling: to each window's argmax, or spread over it."""
    fn, a, k, stride, padding = ctx
    with torch.enable_grad():
        x = a.detach().requires_grad_()
        out = fn(x, k, stride, padding)
        return torch.autograd.grad(out, x, m)[0]


def _embedding_terms(model: EmbeddingMLP, inputs: Tensor, dtype) -> tuple[Tensor, Tensor]:
    """(the looked-up vectors, their size): a lookup is exact."""
    tokens = model.tokens(inputs.to(model.embedding.weight.device))
    h = model.embedding.weight.detach().to(dtype)[tokens].flatten(1)
    return h, h.abs()


def _embedding_back(model: EmbeddingMLP, inputs: Tensor, m: Tensor) -> Tensor:
    """T of the table: the scatter-add of m into the rows looked up (none into padding's)."""
    emb = model.embedding
    tokens = model.tokens(inputs.to(emb.weight.device)).flatten()
    t = torch.zeros(emb.num_embeddings, emb.embedding_dim, dtype=m.dtype, device=m.device)
    t.index_add_(0, tokens, m.reshape(-1, emb.embedding_dim))
    if emb.padding_idx is not None:
        t[emb.padding_idx] = 0
    return t


@torch.no_grad()
def network_gradient_terms(model: nn.Module, inputs: Tensor, targets: Tensor, loss: str,
                           scale: Tensor | float = 1.0,
                           rng_state: list[Tensor] | None = None) -> dict[str, Tensor]:
    """``{parameter name: T}`` for a ``Neuron``, ``Layer``, ``MLP`` (:func:`.rounding.
    gradient_terms`), ``CNN`` (with or without norm and pooling), ``ResMLP`` or
    ``EmbeddingMLP`` (with or without a norm); ``TermsNotCovered`` for others. Arguments as
    :func:`.rounding.gradient_terms`'s; ``rng_state``: torch's generator state at the step's
    start (a list as ``torch.get_rng_state()`` first), so dropout's masks are the step's."""
    if isinstance(model, Neuron | Layer | MLP):
        return gradient_terms(model, inputs, targets, loss, scale)
    if not isinstance(model, CNN | ResMLP):
        raise TermsNotCovered(f"no rounding bound for a {type(model).__name__} yet")
    if loss not in LOSS_TERMS or loss == "mse":
        raise TermsNotCovered(f"loss={loss!r}: the bound of a {type(model).__name__} covers "
                              "cross_entropy and bce (on the logits)")
    p0 = model.layers[0].weight
    dtype = torch.promote_types(p0.dtype, torch.float32)
    masks: list = []
    pools = getattr(model, "pools", None) if getattr(model, "pool", None) else None
    named = {id(p): n for n, p in model.named_parameters()}
    terms: dict[str, Tensor] = {}

    def keep(layer, t_w, t_b):
        if t_w is not None and layer.weight is not None:
            terms[named[id(layer.weight)]] = t_w
        if t_b is not None and getattr(layer, "bias", None) is not None:
            terms[named[id(layer.bias)]] = t_b

    dropping = model.training and model.dropout.p > 0
    with torch.autocast(p0.device.type, enabled=False), \
            same_rng(rng_state if dropping else None):
        if isinstance(model, EmbeddingMLP):
            h, size = _embedding_terms(model, inputs, dtype)
        else:
            h = inputs.detach().to(device=p0.device, dtype=dtype).reshape(inputs.shape[0], -1)
            if isinstance(model, CNN):
                h = h.reshape(h.shape[0], *model.layout)
            size = h.abs()
        sizes, carries, norms, pooled = [], [], [], []
        hidden = list(model.layers[:-1])
        for i, layer in enumerate(hidden):
            z, z_size = _sized(layer, h, size, dtype)
            sizes.append(size)
            if model.norm is not None:
                z, z_size, ctx = _norm_forward(model.norms[i], z, z_size, dtype)
                norms.append(ctx)
            a = get_activation(model.activation, "autograd")(z)
            d, c = carry_terms(model.activation, z, z_size)  # T(f') + |f''(z)| Z̃
            carries.append(c)
            a_size = _activation_terms(model.activation, z, a) + d * z_size
            if pools is not None:
                a, a_size, ctx = _pool_forward(pools[i], a, a_size)
                pooled.append(ctx)
            if isinstance(model, ResMLP) and model.residual and i > 0:
                h, size = h + a, size + a_size
            else:
                h, size = a, a_size
            if isinstance(model, ResMLP):
                h, size = _dropped(model, h, size, masks, rng_state)
        shape = h.shape
        if isinstance(model, CNN):
            h, size = _dropped(model, h.flatten(1), size.flatten(1), masks, rng_state)
        last = model.layers[-1]
        z, z_size = _sized(last, h, size, dtype)
        m = _loss_gradient_terms(loss, LayerPass(size, z, z_size, z, z_size),
                                 targets.to(p0.device)).reshape(z.shape) * scale
        t_w, t_b, m = _back(last, size, m, dtype)
        keep(last, t_w, t_b)
        if isinstance(model, CNN):
            m = (m if masks[-1] is None else m * masks[-1]).reshape(shape)
        for i in range(len(hidden) - 1, -1, -1):
            if isinstance(model, ResMLP) and masks[i] is not None:
                m = m * masks[i]
            m_z = (m if pools is None else _pool_back(pooled[i], m)) * carries[i]
            if model.norm is not None:
                t_g, t_n, m_z = _norm_back(norms[i], m_z)
                keep(model.norms[i], t_g, t_n)
            t_w, t_b, m_in = _back(hidden[i], sizes[i], m_z, dtype)
            keep(hidden[i], t_w, t_b)
            skip = isinstance(model, ResMLP) and model.residual and i > 0
            m = m + m_in if skip else m_in
        if isinstance(model, EmbeddingMLP):
            keep(model.embedding, _embedding_back(model, inputs, m), None)
    return terms


@contextlib.contextmanager
def same_rng(state: list[Tensor] | None):
    """Run with torch's generators at ``state`` (a training step's: ``[CPU state]`` or
    ``[CPU state, CUDA state]``), then put them back as they were; ``None``: as they are."""
    if state is None:
        yield
        return
    devices = [torch.cuda.current_device()] if len(state) > 1 else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state[0])
        if devices:
            torch.cuda.set_rng_state(state[1])
        yield
