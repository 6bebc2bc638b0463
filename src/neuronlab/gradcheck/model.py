"""compare_gradients: a whole model's manual vs autograd gradients, per parameter."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..functional.registry import LOSSES, get_loss
from .conv_terms import network_gradient_terms
from .grading import F64, TINY, relative_error, text_table
from .rounding import (
    ROUNDING_FACTOR,
    compare_to_bound,
    loss_targets,
    unit_roundoff,
)


def default_tolerance(dtype: torch.dtype, device: str | torch.device = "cpu") -> float:
    """The relative error allowed between a *single op*'s manual and torch results on random
    inputs (``neuronlab-check``'s per-op rows): float64 1e-10, float32 1e-5 (1e-3 on CUDA
    with TF32 matmuls on), float16 2e-2, bfloat16 1e-1. Random inputs do not cancel, so a
    relative error is meaningful there. A model's gradients on real data do cancel (a batch
    sum near a minimum): :func:`compare_gradients` and the audit use the rounding bound of
    :mod:`neuronlab.gradcheck.rounding` instead."""
    if dtype == torch.float32:
        tf32 = (torch.backends.cuda.matmul.allow_tf32
                or torch.get_float32_matmul_precision() != "highest")
        return 1e-3 if torch.device(device).type == "cuda" and tf32 else 1e-5
    table = {torch.float64: 1e-10, torch.float16: 2e-2, torch.bfloat16: 1e-1}
    if dtype not in table:
        raise TypeError(f"dtype={dtype} is not one of: float64, float32, float16, bfloat16")
    return table[dtype]


@dataclass
class ParameterRow:
    """One parameter: its largest difference, the rounding bound, their ratio (≤ 1 passes
    at tolerance 1), and for reading: the difference relative to the gradient, the cosine."""

    name: str
    shape: tuple[int, ...]
    max_abs_diff: float
    bound: float
    error: float  # max_abs_diff / bound
    max_rel_error: float
    cosine: float
    passed: bool


@dataclass
class GradientReport:
    """Manual vs autograd gradients of a model's parameters on one batch.

    ``tolerance`` is the error allowed as a multiple of each tensor's rounding bound (see
    :mod:`neuronlab.gradcheck.rounding`); the loss values get the same rule, with the size of
    the loss's own terms (``loss_bound``).
    """

    loss: str
    dtype: str
    device: str
    tolerance: float
    loss_manual: float
    loss_autograd: float
    loss_bound: float = 0.0
    rows: list[ParameterRow] = field(default_factory=list)

    @property
    def loss_relative(self) -> float:
        return abs(self.loss_manual - self.loss_autograd) / max(abs(self.loss_autograd), TINY)

    @property
    def loss_error(self) -> float:
        """The loss values' difference as a multiple of its rounding bound."""
        diff = abs(self.loss_manual - self.loss_autograd)
        return 0.0 if diff == 0 else diff / self.loss_bound if self.loss_bound else math.inf

    @property
    def worst_relative(self) -> float:
        return max((r.max_rel_error for r in self.rows), default=0.0)

    @property
    def worst(self) -> float:
        """The largest difference as a multiple of its rounding bound (≤ tolerance passes)."""
        return max((r.error for r in self.rows), default=0.0)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.rows) and self.loss_error <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        rows = [{**asdict(r), "shape": list(r.shape)} for r in self.rows]
        return {**asdict(self), "rows": rows, "ok": self.ok, "worst": self.worst,
                "worst_relative": self.worst_relative, "loss_relative": self.loss_relative,
                "loss_error": self.loss_error}

    def __str__(self) -> str:
        head = (f"compare_gradients: {'OK' if self.ok else 'FAILED'} (loss={self.loss}, "
                f"{self.dtype} on {self.device}; worst error {self.worst:.2g}× its rounding "
                f"bound, tolerance {self.tolerance:g}×; loss manual {self.loss_manual:.6g} vs "
                f"autograd {self.loss_autograd:.6g}, {self.loss_error:.2g}× its bound)")
        rows = [(r.name, r.shape, f"{r.max_abs_diff:.2e}", f"{r.bound:.2e}", f"{r.error:.3f}",
                 f"{r.max_rel_error:.2e}", f"{r.cosine:.9f}", "PASS" if r.passed else "FAIL")
                for r in self.rows]
        return head + "\n" + text_table(("parameter", "shape", "max abs diff", "rounding bound",
                                         "× bound", "max rel err", "cosine", ""), rows)


def _cosine(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().to(F64).flatten(), b.detach().to(F64).flatten()
    na, nb = a.norm().item(), b.norm().item()
    return (a @ b).item() / (na * nb) if na and nb else float(na == nb)


def _targets_for(loss: str, out: Tensor, targets: Tensor) -> Tensor:
    """``targets`` as the loss takes them (see :func:`compare_gradients`)."""
    return loss_targets(loss, out, targets)


def _loss_value_terms(loss: str, out: Tensor, y: Tensor) -> float:
    """The size of the terms the loss value is summed from (mean over the batch)."""
    out, y = out.detach().to(F64), y.detach().to(F64) if y.is_floating_point() else y
    if loss == "cross_entropy":  # logsumexp(z) − z_y
        picked = out.gather(-1, y.unsqueeze(-1)).abs().squeeze(-1)
        return (torch.logsumexp(out, -1).abs() + picked).mean().item()
    if loss == "bce":  # max(z, 0) − z·y + log(1 + e^−|z|)
        return (out.abs() * (1 + y.abs()) + 1).mean().item()
    return ((out.abs() + y.abs()) ** 2).mean().item()  # mse: (ŷ − y)²


@torch.enable_grad()
def compare_gradients(model: nn.Module, inputs: Tensor, targets: Tensor,
                      loss: str = "cross_entropy",
                      tolerance: float | None = None) -> GradientReport:
    """Backprop one batch through ``model`` with ``backprop="manual"`` and ``"autograd"``.

    Each parameter's largest difference is compared with its rounding bound
    ``c·u·(size of the terms its gradient is summed from)`` (see
    :mod:`neuronlab.gradcheck.rounding`): a difference rounding cannot explain fails.

    Args:
        model: a ``Neuron``, ``Layer`` or ``MLP`` (anything with ``backprop`` and
            ``pre_activation``); its mode and its ``.grad`` are left as they were.
        inputs: ``(N, n_in)``, cast to the parameters' dtype and device.
        targets: ``(N,)`` class indices for ``cross_entropy``; for ``bce``/``mse``, values
            shaped like the output (cast to its dtype; integer classes are one-hot for mse).
        loss: ``mse`` (on ``model(x)``), ``bce`` or ``cross_entropy`` (on the logits,
            ``model.pre_activation(x)``).
        tolerance: the difference allowed, as a multiple of the rounding bound; default 1.
    """
    if not isinstance(model, nn.Module) or not all(
            hasattr(model, a) for a in ("backprop", "pre_activation")):
        raise TypeError(f"model must be a neuronlab module (with backprop and pre_activation), "
                        f"got {type(model).__name__}")
    get_loss(loss)  # validates the name
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise TypeError(f"inputs and targets must be tensors, got {type(inputs).__name__} and "
                        f"{type(targets).__name__}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no parameters that require grad")
    p0 = named[0][1]
    tolerance = 1.0 if tolerance is None else tolerance
    if not tolerance > 0:
        raise ValueError(f"tolerance={tolerance!r} must be > 0 (a multiple of the rounding "
                         "bound; 1 is the default)")
    x = inputs.to(device=p0.device, dtype=p0.dtype)  # (N, n_in)
    original, grads, values = model.backprop, {}, {}
    rng = torch.get_rng_state()  # dropout: both passes draw the same mask
    buffers = [b.clone() for b in model.buffers()]  # a norm's running statistics
    try:
        for mode in ("manual", "autograd"):
            model.backprop = mode
            torch.set_rng_state(rng)
            with torch.no_grad():  # each pass starts from (and leaves) the same statistics
                for b, saved in zip(model.buffers(), buffers, strict=True):
                    b.copy_(saved)
            out = model.pre_activation(x) if LOSSES[loss].takes_logits else model(x)
            y = _targets_for(loss, out, targets)
            value = get_loss(loss, mode)(out, y)
            values[mode] = value.item()
            grads[mode] = torch.autograd.grad(value, [p for _, p in named], allow_unused=True)
    finally:
        model.backprop = original
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers, strict=True):
                b.copy_(saved)
    u = unit_roundoff(p0.dtype, p0.device)
    terms = network_gradient_terms(model, x, targets, loss)  # the statistics both passes saw
    # a parameter a backward left without a gradient counts as a zero gradient
    manual, auto = ([torch.zeros_like(p) if g is None else g
                     for (_, p), g in zip(named, grads[mode], strict=True)]
                    for mode in ("manual", "autograd"))
    sizes = [terms.get(n, torch.zeros_like(p)) for n, p in named]
    ratios, diffs, bounds = compare_to_bound(manual, auto, sizes, u)
    ratios = ratios.tolist()
    report = GradientReport(loss, str(p0.dtype).removeprefix("torch."), str(p0.device),
                            tolerance, values["manual"], values["autograd"],
                            ROUNDING_FACTOR * u * _loss_value_terms(loss, out, y))
    for (name, p), gm, ga, diff, bound, ratio in zip(named, manual, auto, diffs.tolist(),
                                                     bounds.tolist(), ratios, strict=True):
        report.rows.append(ParameterRow(name, tuple(p.shape), diff, bound, ratio,
                                        relative_error(gm, ga), _cosine(gm, ga),
                                        ratio <= tolerance))
    return report
