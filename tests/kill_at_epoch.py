"""A callback for tests that kills its own process with SIGKILL when epoch ``epoch`` starts,
as a power cut or the OOM killer would: after the previous epoch's checkpoints are written,
with no chance to clean up. Used through the command line:
``+callbacks.killer._target_=kill_at_epoch.KillAtEpoch +callbacks.killer.epoch=N`` with this
folder on ``PYTHONPATH``."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAtEpoch(L.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
