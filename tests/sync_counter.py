"""A callback for tests: counts host-device synchronisations per training step on CUDA.

``torch.cuda.set_sync_debug_mode("warn")`` makes every synchronizing call warn; the callback
records the warnings of the whole ``fit`` and, at each batch start, how many there were, so
``per_step[s]`` is the number of syncs from the start of step ``s`` to the start of step
``s + 1`` (the step, Lightning's work after it, the next batch's fetch). Used through the
command line: ``+callbacks.syncs._target_=sync_counter.SyncCounter`` with this folder on
``sys.path``; find it afterwards in ``record["trainer"].callbacks``.
"""

from __future__ import annotations

import warnings

import lightning as L
import torch


class SyncCounter(L.Callback):
    def __init__(self) -> None:
        self.per_step: dict[int, int] = {}
        self._caught: list = []
        self._mark: tuple[int, int] | None = None  # (step, warnings so far) at its start
        self._ctx = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ctx = warnings.catch_warnings(record=True)
        self._caught = self._ctx.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

    def _close(self, step_end: bool) -> None:
        if self._mark is not None and step_end:
            step, before = self._mark
            self.per_step[step] = sum(
                "synchroniz" in str(w.message) for w in self._caught[before:])
        self._mark = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch, batch_idx: int) -> None:
        self._close(step_end=True)
        self._mark = (trainer.global_step, len(self._caught))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close(step_end=False)  # the last step's window runs into the end of fit
        torch.cuda.set_sync_debug_mode(0)
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None
