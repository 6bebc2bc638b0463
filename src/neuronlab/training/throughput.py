"""Training throughput: rows trained per second of training, validation left out.

Lightning's ``ThroughputMonitor`` synchronizes with the GPU after every batch, which would
undo the sync-free step (``training/step.py``). ``TrainThroughput`` counts rows on the host
(batch sizes are Python ints) and reads the clock only at the edges of the training time —
epoch start and end, validation start and end — after one device synchronization there, so
every queued step is counted in the time it took. It writes ``perf/train_samples_per_s`` per
epoch to the logger; ``samples_per_s`` (over the whole ``fit``: compile, graph capture and the
eager steps of the gradient audit and flow included) and ``last_epoch_samples_per_s`` go into
the run's record. Under DDP the rows of every process are counted (one all-reduce per epoch).
The gradient audit's comparison (its bound and its autograd pass, on its steps) is a check,
as validation is, not training: ``checking(trainer)`` leaves its seconds out of the training
time and counts them in ``check_seconds``; the audited step's own forward and backward stay in.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch


def _now(device: torch.device) -> float:
    """The clock, after the device has finished what is queued (a CUDA device only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class TrainThroughput(L.Callback):
    """Rows per second of training time (forward, backward, update, the loop around them)."""

    def __init__(self) -> None:
        self.rows = 0  # over the fit
        self.seconds = 0.0
        self._epoch_rows = 0
        self._epoch_seconds = 0.0
        self._t0: float | None = None  # when the running stretch of training time began
        self._in_epoch = False
        self.last_epoch_samples_per_s: float | None = None  # past warm-up, compile, capture
        self.check_seconds = 0.0  # the gradient audit's comparisons, left out of the above

    @property
    def samples_per_s(self) -> float | None:
        return self.rows / self.seconds if self.seconds > 0 and self.rows else None

    def _resume(self, pl_module: L.LightningModule) -> None:
        self._t0 = _now(pl_module.device)

    def _pause(self, pl_module: L.LightningModule) -> None:
        if self._t0 is not None:
            self._epoch_seconds += _now(pl_module.device) - self._t0
            self._t0 = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_rows, self._epoch_seconds = 0, 0.0
        self._in_epoch = True
        self._resume(pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._epoch_rows += len(batch[0])

    # validation runs inside the training epoch (after its last batch, or every
    # val_check_interval): its time is not training time

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._in_epoch:
            self._resume(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause(pl_module)
        self._in_epoch = False
        rows = self._epoch_rows
        if trainer.world_size > 1:  # DDP: every process trains its share of each batch
            rows = int(trainer.strategy.reduce(
                torch.tensor(float(rows), device=pl_module.device), reduce_op="sum").item())
        self.rows += rows
        self.seconds += self._epoch_seconds
        if rows and self._epoch_seconds > 0:
            self.last_epoch_samples_per_s = rows / self._epoch_seconds
            if trainer.logger is not None and trainer.is_global_zero:
                # the step the epoch's other scalars (train/loss_epoch, val/*) are written at
                trainer.logger.log_metrics(
                    {"perf/train_samples_per_s": self.last_epoch_samples_per_s},
                    step=max(trainer.global_step - 1, 0))


@contextlib.contextmanager
def checking(trainer: L.Trainer, pl_module: L.LightningModule) -> Iterator[None]:
    """Leave the time inside out of the run's training time (a check such as the gradient
    audit's comparison) and count it in ``TrainThroughput.check_seconds``."""
    meter = next((c for c in getattr(trainer, "callbacks", ()) if isinstance(c, TrainThroughput)),
                 None)
    if meter is None or meter._t0 is None:
        yield
        return
    meter._pause(pl_module)
    start = _now(pl_module.device)
    try:
        yield
    finally:
        meter._resume(pl_module)
        meter.check_seconds += meter._t0 - start
