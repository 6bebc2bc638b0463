"""GradientAudit: every N steps, check the manual backward against autograd, mid-training."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from ..gradcheck import default_tolerance


def _compute_dtype(trainer: L.Trainer, param_dtype: torch.dtype) -> torch.dtype:
    """The dtype the step computes in: mixed precision works in half, whatever the weights."""
    precision = str(trainer.precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return param_dtype


class GradientMismatch(RuntimeError):
    """The hand-written backward disagreed with autograd beyond the dtype's tolerance."""


class GradientAudit(L.Callback):
    """Recompute the gradients with plain autograd on the same batch and parameters, and log
    the worst relative difference per parameter as ``grad_audit/<name>`` (and
    ``grad_audit/worst``). A difference above ``tolerance`` (default: the dtype's, see
    ``neuronlab.gradcheck.default_tolerance``) stops the run with :class:`GradientMismatch`.

    Cost: one extra forward and backward every ``every_n_steps`` steps (≈ 1/N of training).
    Only runs while the network is in ``backprop="manual"`` mode.
    """

    def __init__(self, every_n_steps: int = 50, tolerance: float | None = None,
                 stop_on_mismatch: bool = True) -> None:
        if every_n_steps < 1:
            raise ValueError(f"callbacks.gradient_audit.every_n_steps={every_n_steps} must be ≥ 1")
        self.every_n_steps = every_n_steps
        self.tolerance = tolerance
        self.stop_on_mismatch = stop_on_mismatch
        self._batch: Any = None
        self.last: dict[str, float] = {}

    def _due(self, trainer: L.Trainer) -> bool:
        return trainer.global_step % self.every_n_steps == 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch = batch if self._due(trainer) else None

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = pl_module.net
        if self._batch is None or net.backprop != "manual" or trainer.accumulate_grad_batches > 1:
            return  # with accumulation, .grad holds several batches: nothing to compare
        batch, self._batch = self._batch, None
        named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        if not named:
            return
        params = [p for _, p in named]
        # a parameter the manual backward left without a gradient counts as a zero gradient
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        net.backprop = "autograd"
        try:
            with torch.enable_grad(), trainer.precision_plugin.forward_context():
                _, loss = pl_module.output_and_loss(batch)
                ref = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
        finally:
            net.backprop = "manual"
        if trainer.world_size > 1:  # DDP has averaged the manual grads across processes
            ref = [trainer.strategy.reduce(g, reduce_op="mean") for g in ref]
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None:  # 16-mixed: the manual grads carry GradScaler's factor
            ref = [g * scaler.get_scale() for g in ref]
        # one device→host transfer for all parameters
        rel = torch.stack([
            (g - r).abs().max()
            / torch.maximum(g.abs().max(), r.abs().max()).clamp_min(torch.finfo(r.dtype).tiny)
            for g, r in zip(grads, ref, strict=True)
        ]).float().cpu().tolist()
        self.last = {name: v for (name, _), v in zip(named, rel, strict=True)}
        worst_name = max(self.last, key=self.last.get)
        worst = self.last[worst_name]
        metrics = {f"grad_audit/{n}": v for n, v in self.last.items()}
        metrics["grad_audit/worst"] = worst
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)
        tol = self.tolerance
        if tol is None:
            tol = default_tolerance(_compute_dtype(trainer, params[0].dtype), params[0].device)
        if self.stop_on_mismatch and not worst <= tol:
            raise GradientMismatch(
                f"gradient audit failed at step {trainer.global_step}: manual and autograd "
                f"gradients of '{worst_name}' differ by {worst:.3g} (relative), above the "
                f"tolerance {tol:.1e} for {params[0].dtype}"
            )
