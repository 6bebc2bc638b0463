"""compare_gradients: a whole model's manual vs autograd gradients, per parameter."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..functional.registry import LOSSES, get_loss
from ._common import (
    _F64,
    _TINY,
    _amax,
    _table,
    relative_error,
)

# ---- compare_gradients -----------------------------------------------------------------


def default_tolerance(dtype: torch.dtype, device: str | torch.device = "cpu") -> float:
    """The relative error allowed between manual and autograd gradients in ``dtype``:
    float64 1e-10, float32 1e-5 (1e-3 on CUDA with TF32 matmuls on), float16 2e-2, bfloat16
    1e-1. Low precision needs room: summing over a batch cancels, and the two paths round
    differently (digits MLP, 8 seeds: up to 4.9e-3 in float16, 6.1e-2 in bfloat16, 1.7e-6 in
    float32). A real bug (a sign, a factor, a region) is off by ~0.3 to 2."""
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
    name: str
    shape: tuple[int, ...]
    max_abs_diff: float
    max_rel_error: float
    cosine: float
    passed: bool


@dataclass
class GradientReport:
    """Manual vs autograd gradients of a model's parameters on one batch."""

    loss: str
    dtype: str
    device: str
    tolerance: float
    loss_manual: float
    loss_autograd: float
    rows: list[ParameterRow] = field(default_factory=list)

    @property
    def loss_relative(self) -> float:
        return abs(self.loss_manual - self.loss_autograd) / max(abs(self.loss_autograd), _TINY)

    @property
    def worst_relative(self) -> float:
        return max((r.max_rel_error for r in self.rows), default=0.0)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.rows) and self.loss_relative <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        rows = [{**asdict(r), "shape": list(r.shape)} for r in self.rows]
        return {**asdict(self), "rows": rows, "ok": self.ok,
                "worst_relative": self.worst_relative, "loss_relative": self.loss_relative}

    def __str__(self) -> str:
        head = (f"compare_gradients: {'OK' if self.ok else 'FAILED'} (loss={self.loss}, "
                f"{self.dtype} on {self.device}, tolerance {self.tolerance:.0e}; loss manual "
                f"{self.loss_manual:.6g} vs autograd {self.loss_autograd:.6g})")
        rows = [(r.name, r.shape, f"{r.max_abs_diff:.2e}", f"{r.max_rel_error:.2e}",
                 f"{r.cosine:.9f}", "PASS" if r.passed else "FAIL") for r in self.rows]
        return head + "\n" + _table(("parameter", "shape", "max abs diff", "max rel err",
                                     "cosine", ""), rows)


def _cosine(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().to(_F64).flatten(), b.detach().to(_F64).flatten()
    na, nb = a.norm().item(), b.norm().item()
    return (a @ b).item() / (na * nb) if na and nb else float(na == nb)


@torch.enable_grad()
def compare_gradients(model: nn.Module, inputs: Tensor, targets: Tensor,
                      loss: str = "cross_entropy",
                      tolerance: float | None = None) -> GradientReport:
    """Backprop one batch through ``model`` with ``backprop="manual"`` and ``"autograd"``.

    Args:
        model: a ``Neuron``, ``Layer`` or ``MLP`` (anything with ``backprop`` and
            ``pre_activation``); its mode and its ``.grad`` are left as they were.
        inputs: ``(N, n_in)``, cast to the parameters' dtype and device.
        targets: ``(N,)`` class indices for ``cross_entropy``; for ``bce``/``mse``, values
            shaped like the output (cast to its dtype; integer classes are one-hot for mse).
        loss: ``mse`` (on ``model(x)``), ``bce`` or ``cross_entropy`` (on the logits,
            ``model.pre_activation(x)``).
        tolerance: the relative error allowed; default :func:`default_tolerance`.
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
    tolerance = default_tolerance(p0.dtype, p0.device) if tolerance is None else tolerance
    if not tolerance > 0:
        raise ValueError(f"tolerance={tolerance!r} must be > 0")
    x = inputs.to(device=p0.device, dtype=p0.dtype)  # (N, n_in)
    original, grads, values = model.backprop, {}, {}
    try:
        for mode in ("manual", "autograd"):
            model.backprop = mode
            out = model.pre_activation(x) if LOSSES[loss][2] else model(x)
            y = targets.to(out.device)
            if loss == "mse" and not y.is_floating_point() and out.dim() == y.dim() + 1:
                y = nn.functional.one_hot(y, out.shape[-1])
            if loss != "cross_entropy":  # bce/mse: float targets shaped like the output
                y = y.to(out.dtype).reshape(out.shape) if y.numel() == out.numel() else y
            value = get_loss(loss, mode)(out, y)
            values[mode] = value.item()
            grads[mode] = torch.autograd.grad(value, [p for _, p in named], allow_unused=True)
    finally:
        model.backprop = original
    report = GradientReport(loss, str(p0.dtype).removeprefix("torch."), str(p0.device),
                            tolerance, values["manual"], values["autograd"])
    for (name, p), gm, ga in zip(named, grads["manual"], grads["autograd"], strict=True):
        gm, ga = (torch.zeros_like(p) if g is None else g for g in (gm, ga))
        rel = relative_error(gm, ga)
        report.rows.append(ParameterRow(name, tuple(p.shape), _amax(gm.to(_F64) - ga.to(_F64)),
                                        rel, _cosine(gm, ga), rel <= tolerance))
    return report
