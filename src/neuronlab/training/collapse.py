"""``ChanceWatch``: a run that ends at the chance-level loss after having been below it.

The divergence guard ends a run whose loss is NaN/inf or explodes; a network that collapses
(every input mapped to the class frequencies: the loss sits at the chance level, accuracy at
the largest class's share) has a finite, steady loss and passes it. This callback reads the
epoch's validation loss (the training loss of the epoch without a validation split) once per
epoch and reports the run when the last value is back at the chance level although an
earlier one was clearly below it.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

AT_CHANCE = 0.95  # the last loss ≥ 95 % of the chance level: back at chance
BELOW_CHANCE = 0.8  # an earlier loss ≤ 80 % of it: the network had learned something
# with a validation split the accuracy must agree: at most a quarter of the way from the
# largest class's share to 1 (a loss blown up by a few confident mistakes is not a collapse)
ACC_MARGIN = 0.25


def chance_loss(loss: str, y: torch.Tensor, n_out: int) -> float:
    """The loss of predicting the class frequencies of ``y`` for every input (the best a
    network that ignores its input can do): the label entropy for cross-entropy.

    Args:
        loss: ``cross_entropy``, ``bce`` or ``mse`` (the task's loss).
        y: ``(N,)`` integer class labels.
        n_out: the network's outputs per example (1: one output, the positive class's).
    """
    y = y.reshape(-1).long().cpu()
    if y.numel() == 0:
        raise ValueError("y is empty: no chance level without labels")
    target = (F.one_hot(y, n_out) if n_out > 1 else y.reshape(-1, 1)).double()
    p = target.mean(0, keepdim=True).clamp(1e-12, 1 - 1e-12).expand_as(target)
    if loss == "cross_entropy":
        return float(F.cross_entropy(p.log(), y))
    if loss == "bce":
        return float(F.binary_cross_entropy_with_logits(torch.logit(p), target))
    if loss == "mse":
        return float(F.mse_loss(p, target))
    raise ValueError(f"loss={loss!r} is not one of: bce, cross_entropy, mse")


class ChanceWatch(L.Callback):
    """Flags a collapse: ``report`` is ``None``, or a dict with the chance level, the lowest
    loss and its epoch, and the last loss (what ``metrics.json`` stores as ``collapse``)."""

    def __init__(self) -> None:
        self.chance: float | None = None
        self.lowest: tuple[float, int] | None = None  # (loss, epoch)
        self.last: tuple[float, int] | None = None
        self.metric = "val/loss"
        self.chance_acc: float | None = None  # the largest class's share
        self.last_acc: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        tensors = getattr(dm, "train_tensors", None)
        if tensors is None or len(tensors[1]) == 0:
            return
        y = tensors[1]
        # the network's outputs per example, read off its last layer (no forward: it would
        # run before Lightning's precision plugin casts the inputs)
        sized = [m for m in pl_module.net.modules() if hasattr(m, "n_out")]
        if not sized:
            return
        n_out = int(sized[-1].n_out)
        self.chance = chance_loss(pl_module.loss_name, y, n_out)
        self.chance_acc = float(torch.bincount(y.reshape(-1).long().cpu()).max()) / len(y)
        has_val = len(getattr(dm, "val_tensors", ((),))[0]) > 0 and trainer.limit_val_batches
        self.metric = "val/loss" if has_val else "train/loss_epoch"

    def _read(self, trainer: L.Trainer, epoch: int) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if value is None or trainer.sanity_checking or epoch < 0:
            return
        loss = float(value)  # one host sync per epoch
        if not math.isfinite(loss):
            return
        self.last = (loss, epoch)
        acc = trainer.callback_metrics.get("val/acc") if self.metric == "val/loss" else None
        self.last_acc = None if acc is None else float(acc)
        if self.lowest is None or loss < self.lowest[0]:
            self.lowest = (loss, epoch)

    # the epoch's metrics reach callback_metrics after the epoch-end hooks: read them after
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.metric == "val/loss":
            self._read(trainer, trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.metric != "val/loss":
            self._read(trainer, trainer.current_epoch - 1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.metric != "val/loss":
            self._read(trainer, trainer.current_epoch - 1)

    @property
    def report(self) -> dict[str, Any] | None:
        if self.chance is None or self.lowest is None or self.last is None:
            return None
        if not (self.last[0] >= AT_CHANCE * self.chance
                and self.lowest[0] <= BELOW_CHANCE * self.chance):
            return None
        if self.last_acc is not None and self.chance_acc is not None and (
                self.last_acc > self.chance_acc + ACC_MARGIN * (1 - self.chance_acc)):
            return None
        return {"metric": self.metric, "chance_loss": self.chance, "lowest": self.lowest[0],
                "lowest_epoch": self.lowest[1], "last": self.last[0], "last_epoch": self.last[1],
                "last_acc": self.last_acc, "largest_class_share": self.chance_acc}

    def state_dict(self) -> dict[str, Any]:
        return {"lowest": self.lowest, "last": self.last, "last_acc": self.last_acc}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lowest, self.last = state.get("lowest"), state.get("last")
        self.last_acc = state.get("last_acc")


def collapse_warning(report: dict[str, Any]) -> str:
    """One line for the summary."""
    acc = report.get("last_acc")
    acc_text = f", accuracy {acc:.3g}" if acc is not None else ""
    return (f"collapsed: {report['metric']} ends at {report['last']:.4g}{acc_text} (epoch "
            f"{report['last_epoch']}), the chance level {report['chance_loss']:.4g} (predicting "
            f"the class frequencies), after {report['lowest']:.4g} at epoch "
            f"{report['lowest_epoch']}; the network stopped using its input (try a lower "
            "optimizer.lr or a larger data.batch_size)")
