"""Embedding: row lookup, and its backward, a scatter-add of the gradient into the rows.

For a table W of shape ``(V, D)`` and integer indices ``i`` of any shape, y[…] = W[i[…]], so
with g = ∂L/∂y (shape ``(*i.shape, D)``)::

    ∂L/∂W[v] = Σ_{positions p : i[p] = v} g[p]        (rows never looked up get 0)

— a row looked up twice collects both gradients. The row ``padding_idx`` gets none (its
lookups are treated as constants, as torch's). The indices get no gradient. Both steps are
differentiable torch ops (``index_select``, ``index_add``), so double backward and vmap work.

Not supported, refused in one line (ValueError): ``max_norm`` (renormalizes rows of W in place
during the forward), ``scale_grad_by_freq`` and ``sparse=True``.

Dtypes: on no autocast list; bfloat16/float16 gradients of repeated rows are summed in float32
and rounded once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dispatch import ChainRuleFunction
from .precision import INPUT_DTYPE, DtypeRule, autocast_inputs, opmath

EMBEDDING = DtypeRule(INPUT_DTYPE)


# ---- the math: plain functions (the network-level loop calls these too) ------------------


def embedding_forward(indices: Tensor, weight: Tensor) -> Tensor:
    """y = W[i]: ``(*i.shape, D)``; backward needs the indices and W's row count."""
    rows = weight.index_select(0, indices.reshape(-1))  # (P, D)
    return rows.reshape(*indices.shape, weight.shape[1])


def embedding_backward(grad_output: Tensor, indices: Tensor, num_rows: int,
                       padding_idx: int | None) -> Tensor:
    """∂L/∂W: g scatter-added into the rows it was looked up from (none to ``padding_idx``)."""
    flat = indices.reshape(-1)
    g = opmath(grad_output).reshape(flat.shape[0], grad_output.shape[-1])  # (P, D)
    if padding_idx is not None:
        g = g * (flat != padding_idx).unsqueeze(1).to(g.dtype)
    grad = g.new_zeros(num_rows, g.shape[1]).index_add(0, flat, g)  # (V, D)
    return grad.to(grad_output.dtype)


# ---- the Function -------------------------------------------------------------------------


class EmbeddingFunction(ChainRuleFunction):
    """y = W[i].  Backward: ∂L/∂W[v] = Σ_{p : i[p] = v} g[p] (0 for ``padding_idx``)."""

    generate_vmap_rule = True
    dtypes = EMBEDDING

    @staticmethod
    def forward(indices: Tensor, weight: Tensor, padding_idx: int | None) -> Tensor:
        return embedding_forward(indices, weight)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        indices, weight, ctx.padding_idx = inputs
        ctx.save_for_backward(indices)
        ctx.num_rows = weight.shape[0]

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (indices,) = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[1]:
            grad = embedding_backward(grad_output, indices, ctx.num_rows, ctx.padding_idx)
        return None, grad, None


# ---- the public function, named and called like torch.nn.functional ----------------------


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Look up rows of ``weight`` (as ``F.embedding``).

    Args:
        input: integer indices, any shape, each in [0, V).
        weight: ``(V, D)``.
        padding_idx: a row whose lookups get no gradient (negative: counted from the end).
        max_norm, scale_grad_by_freq, sparse: not supported (refused); ``norm_type`` goes with
            ``max_norm`` and is ignored without it.

    Returns:
        ``(*input.shape, D)``.
    """
    for key, value, default in (("max_norm", max_norm, None),
                                ("scale_grad_by_freq", scale_grad_by_freq, False),
                                ("sparse", sparse, False)):
        if value != default:
            raise ValueError(f"embedding: {key}={value!r} is not supported (only the default, "
                             f"{default!r})")
    if input.is_floating_point() or input.is_complex() or input.dtype == torch.bool:
        raise TypeError(f"embedding: input must hold integer indices, got {input.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"embedding: weight must have shape (V, D), got {tuple(weight.shape)}")
    rows = weight.shape[0]
    if padding_idx is not None:
        if not -rows <= padding_idx < rows:
            raise ValueError(f"embedding: padding_idx={padding_idx} must be within the "
                             f"{rows} rows of weight")
        padding_idx = padding_idx % rows
    (weight,) = autocast_inputs(EMBEDDING, weight)
    return EmbeddingFunction.apply(input, weight, padding_idx)
