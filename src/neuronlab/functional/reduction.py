"""What every loss shares: the reduction over the N predictions, and its argument checks.

``reduction="mean"`` (the default, as in ``torch.nn.functional``) carries a 1/N into every
gradient; ``"sum"`` passes the upstream gradient as is; ``"none"`` keeps one loss per
prediction, so the upstream gradient has that shape too.

Argument positions are torch's. torch's deprecated ``size_average``/``reduce`` sit where a third
positional argument lands (``F.mse_loss(x, y, 'sum')`` is ``size_average='sum'``, which torch
reads as a *mean*); they are refused here with a message that names them, so that misuse raises
instead of silently averaging.
"""

from __future__ import annotations

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


def describe(value) -> str:
    """A short name for a value in an error message (a tensor by its shape and dtype)."""
    if isinstance(value, Tensor):
        return f"a Tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value)


def check_reduction(fn: str, reduction) -> str:
    """``reduction`` must be one of 'mean', 'sum', 'none'."""
    if not isinstance(reduction, str):
        raise TypeError(
            f"{fn}: reduction must be a str, one of: {', '.join(REDUCTIONS)}; "
            f"got {describe(reduction)}"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not one of: {', '.join(REDUCTIONS)}")
    return reduction


def reject_legacy(fn: str, size_average, reduce) -> None:
    """torch's deprecated ``size_average``/``reduce``: refused, naming the argument."""
    for name, value in (("size_average", size_average), ("reduce", reduce)):
        if value is not None:
            raise TypeError(
                f"{fn}: {name}={describe(value)} is not supported: it is torch's deprecated "
                f"argument, where a positional argument after the targets lands (as in torch); "
                f"pass reduction='mean' | 'sum' | 'none' as a keyword"
            )


def check_optional_tensor(fn: str, name: str, value) -> None:
    """``value`` is a tensor or ``None``; a non-tensor (a reduction string passed positionally,
    say) is named as what it is, not reported as a bad reduction."""
    if value is not None and not isinstance(value, Tensor):
        hint = "; pass reduction as a keyword" if isinstance(value, str) else ""
        raise TypeError(f"{fn}: {name} must be a Tensor or None, got {describe(value)}{hint}")


def check_constant(fn: str, name: str, value: Tensor | None) -> None:
    """Class weights and the like are constants: as in torch, they take no gradient."""
    if value is not None and value.requires_grad:
        raise ValueError(
            f"{fn}: {name} requires grad, but the loss is not differentiable with respect to "
            f"{name} (as in torch); pass {name}.detach()"
        )


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """The per-prediction losses reduced: their mean, their sum, or as they are."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def scale_grad(grad_output: Tensor, local: Tensor, reduction: str) -> Tensor:
    """upstream × local, with the 1/N of a mean (a sum's upstream broadcasts as is; 'none'
    has one upstream value per prediction, the shape of ``local``)."""
    if reduction == "mean":
        return grad_output * local / local.numel()
    return grad_output * local


def result_dtype(*tensors: Tensor | None) -> torch.dtype:
    """The dtype a loss returns: its floating inputs' promoted dtype."""
    dtype = None
    for t in tensors:
        if t is not None and t.is_floating_point():
            dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
    return dtype
