"""GradientAudit: every N steps, check the manual backward against autograd, mid-training."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from ..gradcheck.conv_terms import TermsNotCovered, network_gradient_terms
from ..gradcheck.conv_terms import same_rng as _same_rng
from ..gradcheck.rounding import (
    ROUNDING_FACTOR,
    compare_to_bound,
    unit_roundoff,
)
from ..modules.dropout import Dropout
from .throughput import checking


def _compute_dtype(trainer: L.Trainer, param_dtype: torch.dtype) -> torch.dtype:
    """The dtype the step computes in: mixed precision works in half, whatever the weights."""
    precision = str(trainer.precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return param_dtype


def _loss_scale(trainer: L.Trainer) -> Tensor | None:
    """The 16-mixed loss scale the gradients carry during the backward hooks, as a device
    tensor (read without a host sync), or None: a ``TrainStep``'s own scale when one does the
    step, else Lightning's GradScaler's."""
    step = getattr(getattr(trainer, "lightning_module", None), "train_step", None)
    if step is not None and step.loss_scale is not None:
        return step.loss_scale
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is None or not scaler.is_enabled():
        return None
    scale = scaler._get_scale_async() if hasattr(scaler, "_get_scale_async") else None
    return scale if isinstance(scale, Tensor) else torch.tensor(float(scaler.get_scale()))


class GradientMismatch(RuntimeError):
    """The hand-written backward disagreed with autograd by more than rounding explains."""


class GradientAudit(L.Callback):
    """Every ``every_n_steps`` steps, recompute the gradients with plain autograd on the same
    batch and parameters, and compare them with the manual backward's, tensor by tensor.

    The rule (:mod:`neuronlab.gradcheck.rounding`): the largest difference in a tensor must
    stay within its rounding bound ``c·u·T`` — u the compute dtype's unit roundoff (bfloat16's
    under ``bf16-mixed``, float16's under ``16-mixed``), T the size of the terms the gradient
    is summed from and of the forward's rounding carried into it (so a gradient that shrinks
    by cancellation near a minimum, or a confident logit summed from large terms, does not
    shrink its bound) and c = 16. Logged as ``grad_audit/<name>``: the difference *as a
    multiple of its bound* (≤ 0.07 for correct code in long runs; 1 is the alarm line), and
    ``grad_audit/worst``, the largest. Above ``tolerance`` (default 1) the run stops with
    :class:`GradientMismatch`.

    Under mixed precision a bfloat16 bound is wide (a batch's gradient is often only a few
    bfloat16 ulps of its terms), so the same batch is also recomputed both ways without
    autocast, in the weights' dtype, and held to that dtype's bound; each tensor logs the worse
    of the two comparisons.

    Under ``16-mixed`` the manual gradients carry GradScaler's factor: the autograd side is
    computed from the loss times the same factor (no underflow either side) and the bound
    scales with it. A step whose scaled gradients hold inf/NaN is one GradScaler skips (and
    then lowers its factor): it is not compared (``skipped`` counts them). ``last`` holds the
    latest comparison per parameter, ``worst_seen`` the largest over the run, ``audits`` how
    many were made.

    Cost: one extra forward and backward (three under mixed precision), and one more pass for
    the bound, every N steps, and one device→host transfer. Only runs while the network is in
    ``backprop="manual"`` mode.
    """

    def __init__(self, every_n_steps: int = 50, tolerance: float | None = None,
                 stop_on_mismatch: bool = True) -> None:
        if every_n_steps < 1:
            raise ValueError(f"callbacks.gradient_audit.every_n_steps={every_n_steps} must be ≥ 1")
        if tolerance is not None and not tolerance > 0:
            raise ValueError(f"callbacks.gradient_audit.tolerance={tolerance} must be > 0 (a "
                             "multiple of the rounding bound; default 1)")
        self.every_n_steps = every_n_steps
        self.tolerance = 1.0 if tolerance is None else float(tolerance)
        self.stop_on_mismatch = stop_on_mismatch
        self._batch: Any = None
        self.last: dict[str, float] = {}  # per parameter: difference / rounding bound
        self.worst_seen = 0.0  # the largest of those over the run so far
        self.audits = 0  # comparisons made
        self.skipped = 0  # audits skipped: scaled gradients not finite (GradScaler skips too)
        self.not_covered: str | None = None  # why the bound cannot judge this network, if so
        self._rng: list[Tensor] | None = None  # the step's RNG state, for dropout's mask

    def _due(self, trainer: L.Trainer) -> bool:
        return trainer.global_step % self.every_n_steps == 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch = batch if self._due(trainer) else None
        self._rng = _rng_state(pl_module.net) if self._batch is not None else None

    @staticmethod
    def _gradients(pl_module, batch, params, backprop: str, context,
                   scale: Tensor | None, rng: list[Tensor] | None = None
                   ) -> tuple[Tensor, ...]:
        """The gradients of ``batch``'s loss (times ``scale``) through ``backprop``; ``rng``:
        the training step's RNG state, so dropout draws the same mask."""
        net = pl_module.net
        original, net.backprop = net.backprop, backprop
        buffers = [b.clone() for b in net.buffers()]  # a norm's running statistics
        try:
            with torch.enable_grad(), context, _same_rng(rng):
                _, loss = pl_module.output_and_loss(batch)
                if scale is not None:
                    loss = loss * scale.to(loss.device)
                return torch.autograd.grad(loss, params, allow_unused=True,
                                           materialize_grads=True)
        finally:
            net.backprop = original
            with torch.no_grad():  # the step updated them once; the audit's passes do not
                for b, saved in zip(net.buffers(), buffers, strict=True):
                    b.copy_(saved)

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = pl_module.net
        if self._batch is None or net.backprop != "manual" or trainer.accumulate_grad_batches > 1:
            return  # with accumulation, .grad holds several batches: nothing to compare
        batch, self._batch = self._batch, None
        with checking(trainer, pl_module):  # a check, not training: out of the throughput
            self._audit(trainer, pl_module, net, batch)

    def _audit(self, trainer: L.Trainer, pl_module: L.LightningModule, net, batch) -> None:
        try:
            terms = network_gradient_terms(net, batch[0], batch[1], pl_module.loss_name,
                                           rng_state=self._rng)
        except TermsNotCovered as e:
            if self.not_covered is None:
                rank_zero_warn(f"gradient audit skipped: {e}")
            self.not_covered = str(e)
            return
        named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        if not named:
            return
        params = [p for _, p in named]
        # a parameter the manual backward left without a gradient counts as a zero gradient
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        scale = _loss_scale(trainer)  # 16-mixed: the manual grads carry GradScaler's factor
        ref = self._gradients(pl_module, batch, params, "autograd",
                              trainer.precision_plugin.forward_context(), scale, self._rng)
        sizes = [terms.get(n, torch.zeros_like(p)) for n, p in named]
        step_sizes = sizes if scale is None else [t * scale.to(t) for t in sizes]
        if trainer.world_size > 1:  # DDP has averaged the manual grads across processes
            ref = [trainer.strategy.reduce(g, reduce_op="mean") for g in ref]
            step_sizes = [trainer.strategy.reduce(t, reduce_op="mean") for t in step_sizes]
        dtype = _compute_dtype(trainer, params[0].dtype)
        checks = [(grads, ref, step_sizes, dtype)]
        if dtype != params[0].dtype:  # mixed precision: the same batch in the weights' dtype too
            checks.append((*(self._gradients(pl_module, batch, params, mode,
                                             contextlib.nullcontext(), None, self._rng)
                             for mode in ("manual", "autograd")), sizes, params[0].dtype))
        parts = []
        for g, r, s, dt in checks:
            parts += compare_to_bound(g, r, s, unit_roundoff(dt, params[0].device))
        finite = torch.stack([g.isfinite().all() for g in grads]).all().to(parts[0])
        # one device→host transfer for everything
        values = torch.cat([*parts, finite.reshape(1)]).cpu().tolist()
        if scale is not None and not values[-1]:
            self.skipped += 1  # GradScaler will skip this step and lower its factor
            return
        self._record(trainer, named, values, [c[3] for c in checks])

    def _record(self, trainer: L.Trainer, named, values: list[float], dtypes) -> None:
        """Log the ratios (the worse comparison per tensor); raise above the tolerance.

        ``values``: per comparison, the ratios, differences and bounds of the n tensors."""
        n = len(named)
        checks = [values[3 * n * c:3 * n * (c + 1)] for c in range(len(dtypes))]
        self.last = {name: _worse(c[k] for c in checks) for k, (name, _) in enumerate(named)}
        worst_name = max(self.last, key=lambda name: math.inf if math.isnan(self.last[name])
                         else self.last[name])
        worst = self.last[worst_name]
        self.audits += 1
        self.worst_seen = _worse([self.worst_seen, worst])
        metrics = {f"grad_audit/{name}": v for name, v in self.last.items()}
        metrics["grad_audit/worst"] = worst
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)
        if self.stop_on_mismatch and not worst <= self.tolerance:
            k = [name for name, _ in named].index(worst_name)
            c = next(i for i, check in enumerate(checks) if not check[k] < worst)
            diff, bound = checks[c][n + k], checks[c][2 * n + k]
            where = f"{dtypes[c]}" + (", recomputed without autocast" if c else "")
            raise GradientMismatch(
                f"gradient audit failed at step {trainer.global_step}: manual and autograd "
                f"gradients of '{worst_name}' differ by {diff:.3g}, {worst:.3g}× their "
                f"rounding bound {bound:.2g} ({ROUNDING_FACTOR:g}·u·terms in {where}), above "
                f"the tolerance {self.tolerance:g}×"
            )


def _worse(values) -> float:
    """The largest of ``values``; NaN if one is NaN (a NaN must never look small)."""
    values = list(values)
    return math.nan if any(math.isnan(v) for v in values) else max(values)


def _rng_state(net: torch.nn.Module) -> list[Tensor] | None:
    """The RNG state a network with dropout draws its mask from (``None`` without dropout)."""
    if not any(m.p > 0 for m in net.modules() if isinstance(m, Dropout)):
        return None
    device = next(net.parameters()).device
    state = [torch.get_rng_state()]
    if device.type == "cuda":
        state.append(torch.cuda.get_rng_state(device))
    return state
