"""Ctrl-C (SIGINT) or SIGTERM stops a run cleanly: the state is saved first, then it ends.

Lightning's own answer to Ctrl-C is to catch the ``KeyboardInterrupt`` wherever it lands
(possibly half-way through an optimizer step), call the callbacks' ``on_exception`` and
``sys.exit(1)``. ``InterruptSaver`` instead turns the first Ctrl-C into a request that is
served at the next step boundary (``on_train_batch_end``): the full training state goes to
``checkpoints/interrupted.ckpt`` and :class:`Interrupted` ends the fit, so ``train`` can
record status ``interrupted`` in ``metrics.json``. A second Ctrl-C interrupts at once
(Lightning's path, nothing saved: the state may be half-way through a step). SIGTERM takes
Lightning's path, which already waits for a step boundary, and is saved the same way.
Saving needs a single process (``world_size == 1``).
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
        self._previous_handler = None

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
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore_handler()

    # ---- saving ---------------------------------------------------------------------------
    def _save(self, trainer: L.Trainer) -> None:
        if self.saved is None and trainer.world_size == 1:
            # the full state; atomic (SafeCheckpointIO); DivergenceGuard refuses NaN weights
            trainer.save_checkpoint(self.path, weights_only=False)
            self.saved = str(self.path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.requested:
            self._save(trainer)
            self.interrupted = Interrupted(trainer.global_step, self.saved)
            raise self.interrupted

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
