"""DivergenceGuard: a non-finite or exploding loss ends the run at once, with a clear message."""

from __future__ import annotations

import math

import lightning as L
import torch


class Diverged(RuntimeError):
    """Training diverged; ``step``, ``loss`` and ``lr`` say where."""

    def __init__(self, step: int, loss: float, lr: float | None) -> None:
        self.step, self.loss, self.lr = step, loss, lr
        lr_text = f" (now {lr:g})" if lr is not None else ""
        super().__init__(f"diverged at step {step} (loss={loss:g}); lower optimizer.lr{lr_text}")


class DivergenceGuard(L.Callback):
    """Stop at the first step whose training loss is NaN/inf or above ``max_loss``.

    Every step, the loss is copied into a buffer *on the device* (one copy, no host sync);
    every ``check_every_n_steps`` steps the buffer is read (one sync) and the first bad step
    ends the run, reported exactly, up to N−1 steps after it happened. ``null`` (the default): every
    step on the CPU (where reading is free), every ``GPU_CHECK_EVERY`` steps on a GPU, so the
    steady-state step never waits on the host.
    Before any checkpoint is written the parameters are checked too, so a checkpoint never
    holds non-finite weights: the last one kept is the last finite one.

    Only the loss (unscaled, as ``training_step`` returned it) and the weights are watched,
    never the gradients: under ``16-mixed`` GradScaler skips a step whose *scaled* gradients
    overflow to inf/NaN and lowers its factor — routine, with a finite loss and the weights
    left as they were, so it is not divergence. (The step still counts in ``global_step``.)
    """

    GPU_CHECK_EVERY = 100

    def __init__(self, max_loss: float = 1e6, check_every_n_steps: int | None = None) -> None:
        if not max_loss > 0:
            raise ValueError(f"callbacks.divergence.max_loss={max_loss} must be > 0")
        if check_every_n_steps is not None and check_every_n_steps < 1:
            raise ValueError(
                f"callbacks.divergence.check_every_n_steps={check_every_n_steps} must be ≥ 1"
            )
        self.max_loss = max_loss
        self.check_every_n_steps = check_every_n_steps
        self._losses: torch.Tensor | None = None  # the losses since the last check, on the device
        self._steps: list[int] = []  # their step numbers, on the host

    def on_train_start(self, trainer, pl_module) -> None:
        if self.check_every_n_steps is None:
            on_gpu = trainer.strategy.root_device.type == "cuda"
            self.check_every_n_steps = self.GPU_CHECK_EVERY if on_gpu else 1
        self._steps = []

    def _lr(self, trainer: L.Trainer) -> float | None:
        if not trainer.optimizers:
            return None
        return float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        n = self.check_every_n_steps or 1
        dtype = torch.promote_types(loss.dtype, torch.float32)  # float64 stays float64
        fits = self._losses is not None and (self._losses.device, self._losses.dtype) == (
            loss.device, dtype)
        if not fits and not self._steps:  # (re)made only while it holds nothing unread
            self._losses = torch.empty(n, dtype=dtype, device=loss.device)
        # one copy into the device buffer per step, no sync; the step numbers stay on the
        # host (this loss was computed at the N-th step, counting from 1)
        self._losses[len(self._steps)].copy_(loss.detach())
        self._steps.append(trainer.global_step)
        if len(self._steps) == n:
            self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        """Raise :class:`Diverged` at the first bad loss recorded since the last check (one
        host sync to read them)."""
        first: tuple[int, float] | None = None
        if self._steps:
            losses = self._losses[: len(self._steps)].cpu().tolist()
            for step, loss in zip(self._steps, losses, strict=True):
                if not math.isfinite(loss) or loss > self.max_loss:
                    first = (step, loss)
                    break
            self._steps.clear()
        seen = first is not None
        if trainer.world_size > 1:
            # every process must stop together, or the others wait forever in the next all-reduce
            seen = trainer.strategy.reduce_boolean_decision(seen, all=False)
        if seen:
            step, loss = first if first is not None else (trainer.global_step, float("nan"))
            raise Diverged(step, loss, self._lr(trainer))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.check(trainer)
        finite = torch.stack([torch.isfinite(p).all() for p in pl_module.parameters()]).all()
        if not bool(finite):
            raise Diverged(trainer.global_step, float("nan"), self._lr(trainer))
