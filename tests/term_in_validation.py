"""A callback for tests: SIGTERM to its own process during the validation of epoch ``epoch``,
after its first validation batch (as a scheduler's preemption would), once. Used through the
command line: ``+callbacks.term._target_=term_in_validation.TermInValidation
+callbacks.term.epoch=N`` with this folder on ``PYTHONPATH``."""

from __future__ import annotations

import os
import signal

import lightning as L


class TermInValidation(L.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.sent = False

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs,
                                batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or self.sent or trainer.current_epoch != self.epoch:
            return
        self.sent = True
        os.kill(os.getpid(), signal.SIGTERM)
