"""DivergenceGuard: a non-finite or exploding loss ends the run at once, with a clear message."""

from __future__ import annotations

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

    Every step, the first bad step and its loss are recorded *on the device* (no host sync);
    every ``check_every_n_steps`` steps the record is read (one sync) and a bad step ends the
    run, reported exactly, up to N−1 steps after it happened. ``null`` (the default): every
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
        self._first_bad: torch.Tensor | None = None  # (2,): step, loss of the first bad step
        self._step: torch.Tensor | None = None  # global_step, counted on the device

    def on_train_start(self, trainer, pl_module) -> None:
        if self.check_every_n_steps is None:
            on_gpu = trainer.strategy.root_device.type == "cuda"
            self.check_every_n_steps = self.GPU_CHECK_EVERY if on_gpu else 1
        self._step = None

    def _lr(self, trainer: L.Trainer) -> float | None:
        if not trainer.optimizers:
            return None
        return float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        loss = loss.detach().float()
        step = trainer.global_step  # this loss was computed at the N-th step (counting from 1)
        if self._step is None:  # one host→device copy, then counted on the device
            self._step = torch.tensor(float(step), device=loss.device)
        else:
            self._step += 1
        bad = ~torch.isfinite(loss) | (loss > self.max_loss)
        here = torch.stack([self._step, loss])
        if self._first_bad is None:
            self._first_bad = torch.full_like(here, float("nan"))
        fresh = bad & torch.isnan(self._first_bad[0])
        self._first_bad = torch.where(fresh, here, self._first_bad)
        if step % (self.check_every_n_steps or 1) == 0:
            self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        """Raise :class:`Diverged` if a bad step has been seen (one host sync)."""
        if self._first_bad is None:
            return
        step, loss = self._first_bad.cpu().tolist()
        seen = step == step  # not NaN: a bad step was recorded
        if trainer.world_size > 1:
            # every process must stop together, or the others wait forever in the next all-reduce
            seen = trainer.strategy.reduce_boolean_decision(seen, all=False)
        if seen:
            raise Diverged(int(step) if step == step else trainer.global_step, loss,
                           self._lr(trainer))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.check(trainer)
        finite = torch.stack([torch.isfinite(p).all() for p in pl_module.parameters()]).all()
        if not bool(finite):
            raise Diverged(trainer.global_step, float("nan"), self._lr(trainer))
