"""Ctrl-C (SIGINT) or SIGTERM stops a run cleanly: the state is saved first, then it ends.

Lightning's own answer to Ctrl-C is to catch the ``KeyboardInterrupt`` wherever it lands
(possibly half-way through an optimizer step), call the callbacks' ``on_exception`` and
``sys.exit(1)``. ``InterruptSaver`` instead turns the first Ctrl-C into a request that is
served at the next step boundary (``on_train_batch_end``, or the end of the epoch when it
came during validation): the full training state goes to
``checkpoints/interrupted.ckpt`` and :class:`Interrupted` ends the fit, so ``train`` can
record status ``interrupted`` in ``metrics.json``. A second Ctrl-C interrupts at once
(Lightning's path, nothing saved: the state may be half-way through a step). SIGTERM takes
Lightning's path, which already waits for a step boundary, and is saved the same way; a
SIGTERM during validation lets that validation finish first (its val/* point is logged).
All this needs a single process; under DDP Lightning's own handling stays (nothing saved,
resume from ``last.ckpt``).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

INTERRUPTED_CKPT = "interrupted.ckpt"


class Interrupted(RuntimeError):
    """The run was stopped by Ctrl-C or SIGTERM; ``checkpoint`` is the saved state (or None)."""

    def __init__(self, step: int, checkpoint: str | None, signal_name: str = "SIGINT") -> None:
        self.step, self.checkpoint, self.signal_name = step, checkpoint, signal_name
        saved = f"state saved to {checkpoint}" if checkpoint else "no checkpoint could be saved"
        super().__init__(f"interrupted ({signal_name}) at step {step}; {saved}")


class InterruptSaver(L.Callback):
    """Save ``<checkpoint_dir>/interrupted.ckpt`` and stop when Ctrl-C or SIGTERM arrives.

    Args:
        checkpoint_dir: where to save; ``None``: the ``ModelCheckpoint``'s folder, else
            ``<trainer.default_root_dir>/checkpoints``.
    """

    def __init__(self, checkpoint_dir: str | Path | None = None) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.path: Path | None = None
        self.requested = False
        self.saved: str | None = None
        self.interrupted: Interrupted | None = None
        self._installed = False
        self._previous_handler = None
        self._sigterm_deferred = False  # a SIGTERM held until the validation under way ends

    # ---- the SIGINT handler: Ctrl-C sets a flag; a second Ctrl-C interrupts at once ----------
    def _on_sigint(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def on_fit_start(self, trainer, pl_module) -> None:
        self.requested, self.saved, self.interrupted = False, None, None
        folder = self.checkpoint_dir
        if folder is None:
            ckpt_cb = trainer.checkpoint_callback
            folder = getattr(ckpt_cb, "dirpath", None) or Path(trainer.default_root_dir,
                                                                "checkpoints")
        self.path = Path(folder) / INTERRUPTED_CKPT
        # one process only: under DDP each rank would see Ctrl-C at a different step and
        # stop alone while the others wait in an all-reduce; Lightning's own path stops them all
        if trainer.world_size == 1 and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True

    def _restore_handler(self) -> None:
        if self._installed and threading.current_thread() is threading.main_thread():
            previous = self._previous_handler
            signal.signal(signal.SIGINT, previous if previous is not None
                          else signal.default_int_handler)
            self._installed, self._previous_handler = False, None

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore_handler()

    # ---- saving ---------------------------------------------------------------------------
    def _save(self, trainer: L.Trainer) -> None:
        if self.saved is None and trainer.world_size == 1:
            # the full state; atomic (SafeCheckpointIO); DivergenceGuard refuses NaN weights
            trainer.save_checkpoint(self.path, weights_only=False)
            self.saved = str(self.path)

    def _stop_if_requested(self, trainer: L.Trainer) -> None:
        if self.requested:
            try:
                self._save(trainer)
            except OSError:  # disk full, folder gone: stop all the same, and say so
                self.saved = None
            self.interrupted = Interrupted(trainer.global_step, self.saved)
            raise self.interrupted

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_if_requested(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # Ctrl-C during validation
        self._stop_if_requested(trainer)

    # ---- SIGTERM during validation: finish it (its val/* point is logged), then stop ----------
    # Lightning would raise after the current validation batch: the epoch's validation never
    # logs, and the resumed run goes on to the next epoch, so that epoch's point is lost.
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx: int = 0) -> None:
        connector = getattr(trainer, "_signal_connector", None)
        if (trainer.world_size == 1 and not trainer.sanity_checking and connector is not None
                and getattr(connector, "received_sigterm", False)):
            connector.received_sigterm = False  # Lightning checks it after this hook
            self._sigterm_deferred = True

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._sigterm_deferred:
            self._sigterm_deferred = False
            trainer._signal_connector.received_sigterm = True  # stops at the next boundary

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore_handler()
        if isinstance(exception, SIGTERMException):  # raised by Lightning on a step boundary
            try:
                self._save(trainer)
            except Exception:  # noqa: BLE001 - a failed save must not hide the interrupt
                self.saved = None
            self.interrupted = Interrupted(trainer.global_step, self.saved, "SIGTERM")
        elif isinstance(exception, KeyboardInterrupt):  # a second Ctrl-C: maybe mid-step
            self.interrupted = Interrupted(trainer.global_step, None)
