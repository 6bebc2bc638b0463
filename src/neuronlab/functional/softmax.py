"""Softmax and log-softmax along one dimension, each with its backward written out.

For ``x`` and the dimension ``d`` (the classes)::

    y_i = e^{x_i} / Σ_j e^{x_j}                    # softmax
    ℓ_i = x_i − log Σ_j e^{x_j}                    # log-softmax

Their Jacobians are ∂y_i/∂x_k = y_i (δ_ik − y_k) and ∂ℓ_i/∂x_k = δ_ik − y_k, so given the
upstream gradient g (same shape as the output) the chain rule is::

    ∂L/∂x = y ⊙ (g − Σ_d g ⊙ y)                    # softmax: needs only the output y
    ∂L/∂x = g − e^{ℓ} ⊙ Σ_d g                      # log-softmax: y = e^{ℓ}, from the output

Both save their output; for bfloat16/float16 inputs they save the input instead and backward
recomputes y in float32 (g − y·Σg cancels where one class dominates, and a y rounded to 8 bits
would be off by percents there). ``dtype=`` casts the input first (as torch does), a
cast autograd records. Dtypes (see ``precision``): on CUDA, autocast puts softmax and
log-softmax on its float32 list; on the CPU they are on no list and keep their input's dtype.
bfloat16/float16 inputs get float32 inner math, rounded once.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .dispatch import ChainRuleFunction
from .precision import FLOAT32, HALF_DTYPES, INPUT_DTYPE, DtypeRule, autocast_inputs, opmath

# on CUDA autocast's float32 list, on no list on the CPU
SOFTMAX = DtypeRule(INPUT_DTYPE, autocast_cuda=FLOAT32)


# ---- the math: plain functions (the network-level loop calls these too) ------------------


def softmax_forward(input: Tensor, dim: int) -> Tensor:
    """y = softmax(x) along ``dim``, float32 inner math for half inputs: what backward needs
    is y itself."""
    return torch.softmax(opmath(input), dim).to(input.dtype)


def softmax_backward(grad_output: Tensor, output: Tensor, dim: int) -> Tensor:
    """∂L/∂x = y ⊙ (g − Σ_d g ⊙ y), given g = ∂L/∂y and the saved output y."""
    g, y = opmath(grad_output), opmath(output)
    return (y * (g - (g * y).sum(dim, keepdim=True))).to(grad_output.dtype)


def log_softmax_forward(input: Tensor, dim: int) -> Tensor:
    """ℓ = x − log Σ e^{x} along ``dim`` (float32 inner math for half inputs)."""
    return torch.log_softmax(opmath(input), dim).to(input.dtype)


def log_softmax_backward(grad_output: Tensor, output: Tensor, dim: int) -> Tensor:
    """∂L/∂x = g − e^{ℓ} ⊙ Σ_d g, given g = ∂L/∂ℓ and the saved output ℓ."""
    g, ell = opmath(grad_output), opmath(output)
    return (g - torch.exp(ell) * g.sum(dim, keepdim=True)).to(grad_output.dtype)


# ---- the Functions ------------------------------------------------------------------------


def _save(ctx, inputs, output) -> None:
    """The output, or for half inputs the input (backward recomputes y in float32)."""
    input, ctx.dim = inputs
    ctx.recompute = input.dtype in HALF_DTYPES
    ctx.save_for_backward(input if ctx.recompute else output)


def _saved_output(ctx, forward) -> Tensor:
    (saved,) = ctx.saved_tensors
    return forward(saved.float(), ctx.dim) if ctx.recompute else saved


class SoftmaxFunction(ChainRuleFunction):
    """y = e^{x} / Σ_d e^{x}.  Backward: ∂L/∂x = y ⊙ (g − Σ_d g ⊙ y)."""

    generate_vmap_rule = True
    dtypes = SOFTMAX

    @staticmethod
    def forward(input: Tensor, dim: int) -> Tensor:
        return softmax_forward(input, dim)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _save(ctx, inputs, output)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        y = _saved_output(ctx, softmax_forward)
        return softmax_backward(grad_output, y, ctx.dim), None


class LogSoftmaxFunction(ChainRuleFunction):
    """ℓ = x − log Σ_d e^{x}.  Backward: ∂L/∂x = g − e^{ℓ} ⊙ Σ_d g."""

    generate_vmap_rule = True
    dtypes = SOFTMAX

    @staticmethod
    def forward(input: Tensor, dim: int) -> Tensor:
        return log_softmax_forward(input, dim)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _save(ctx, inputs, output)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        ell = _saved_output(ctx, log_softmax_forward)
        return log_softmax_backward(grad_output, ell, ctx.dim), None


# ---- public functions, named and called like torch.nn.functional --------------------------


def _softmax_dim(name: str, input: Tensor, dim: int | None) -> int:
    """``dim`` checked; ``None`` is torch's deprecated implicit choice (0 for 0-, 1- and 3-D
    inputs, else 1), with torch's warning."""
    if dim is None:
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. "
                      "Change the call to include dim=X as an argument.", stacklevel=3)
        return 0 if input.dim() in (0, 1, 3) else 1
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{name}: dim must be an int, got {dim!r}")
    rank = max(input.dim(), 1)
    if not -rank <= dim < rank:
        raise IndexError(f"{name}: dim={dim} is out of range for a {input.dim()}-D input "
                         f"(allowed: {-rank} to {rank - 1})")
    return dim


def _prepare(name: str, input: Tensor, dim: int | None, dtype: torch.dtype | None):
    dim = _softmax_dim(name, input, dim)
    if dtype is not None:
        input = input.to(dtype)  # torch casts first; autograd records the cast
    (input,) = autocast_inputs(SOFTMAX, input)
    return input, dim


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype: torch.dtype | None = None) -> Tensor:
    """e^{x} / Σ e^{x} along ``dim`` (as ``F.softmax``; ``dtype`` casts the input first)."""
    input, dim = _prepare("softmax", input, dim, dtype)
    return SoftmaxFunction.apply(input, dim)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
                dtype: torch.dtype | None = None) -> Tensor:
    """x − log Σ e^{x} along ``dim`` (as ``F.log_softmax``; ``dtype`` casts the input first)."""
    input, dim = _prepare("log_softmax", input, dim, dtype)
    return LogSoftmaxFunction.apply(input, dim)
