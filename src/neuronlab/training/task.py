"""The training task: network, loss, metrics, optimizer — built from primitives.

Everything the constructor takes is a name, a number or a list of them, so
``save_hyperparameters`` stores primitives and checkpoints reload with ``weights_only=True``.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torchmetrics
from torch import Tensor

from ..functional import LOSSES, get_loss
from ..functional.registry import unknown_choice
from ..init import initialize_
from ..modules import Neuron, build_network
from ..optim import build_optimizer, build_scheduler


class LearnTask(L.LightningModule):
    """Classification with a neuronlab network, a named loss and torchmetrics accuracy.

    Args:
        n_in: number of input features.
        n_classes: number of classes of the data.
        model: ``kind`` (neuron | mlp), ``hidden``, ``activation``, ``output_activation``,
            ``backprop`` (manual | autograd), ``loss`` (bce | cross_entropy | mse), ``compile``.
        init: ``distribution``, ``scheme``, ``scale``, ``std``, ``gain``.
        optimizer: ``name``, ``lr`` and the optimizer's own keys.
        scheduler: ``name`` and the schedule's keys.
        seed: seeds the initial weights.
        feature_names: names of the inputs, for reading a neuron's weights.
    """

    def __init__(
        self,
        n_in: int,
        n_classes: int,
        model: dict[str, Any],
        init: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        seed: int = 0,
        feature_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.loss_name = model.get("loss", "cross_entropy")
        if self.loss_name not in LOSSES:
            raise unknown_choice("model.loss", self.loss_name, LOSSES)
        self.takes_logits = LOSSES[self.loss_name][2]
        self.n_classes = n_classes
        self.net = build_network(
            model.get("kind", "mlp"), n_in, n_classes, hidden=list(model.get("hidden") or []),
            activation=model.get("activation", "relu"),
            output_activation=model.get("output_activation"),
            backprop=model.get("backprop", "manual"), loss=self.loss_name,
        )
        self._init_weights(init or {}, seed)
        if model.get("compile", False):
            self.net.compile()
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=max(n_classes, 2))
        self.test_acc = self.val_acc.clone()

    @torch.no_grad()
    def _init_weights(self, init: dict[str, Any], seed: int) -> None:
        initialize_(
            self.net, distribution=init["distribution"], scheme=init["scheme"],
            scale=init.get("scale", 1.0), std=init.get("std"), gain=init.get("gain"),
            generator=torch.Generator().manual_seed(int(seed)),
        )

    # ---- the step ---------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """The network's output (``(B,)`` for a neuron, ``(B, n_out)`` for an MLP)."""
        return self.net(x)

    def output_and_loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Logits (bce, cross_entropy) or outputs (mse), and the loss, for ``batch = (x, y)``."""
        x, y = batch
        out = self.net.pre_activation(x) if self.takes_logits else self.net(x)
        loss_fn = get_loss(self.loss_name, self.net.backprop)
        if self.loss_name == "cross_entropy":
            target = y
        elif out.dim() == 2 and out.shape[-1] > 1:  # mse on an MLP: one-hot targets
            target = torch.nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)
        else:
            out = out.reshape(y.shape)
            target = y.to(out.dtype)
        return out, loss_fn(out, target)

    def predict_classes(self, out: Tensor) -> Tensor:
        if out.dim() == 2 and out.shape[-1] > 1:
            return out.argmax(-1)
        threshold = 0.0 if self.takes_logits else 0.5
        return (out.reshape(-1) > threshold).long()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        _, loss = self.output_and_loss(batch)
        n = batch[0].shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def _eval_step(self, batch, stage: str, metric: torchmetrics.Metric) -> Tensor:
        out, loss = self.output_and_loss(batch)
        metric.update(self.predict_classes(out), batch[1])
        n = batch[0].shape[0]
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", batch_size=n,
                 sync_dist=True)
        self.log(f"{stage}/acc", metric, on_epoch=True, prog_bar=stage == "val", batch_size=n)
        return loss

    def validation_step(self, batch, batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test", self.test_acc)

    def configure_optimizers(self):
        opt = build_optimizer(self.net.parameters(), dict(self.hparams.optimizer or {"lr": 0.1}))
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        sched = build_scheduler(opt, dict(self.hparams.scheduler or {}), int(total))
        # named "lr", so LearningRateMonitor logs the rate under that tag
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step",
                                                    "name": "lr"}}

    def feature_weights(self) -> dict[str, float] | None:
        """For a neuron: each input feature's learned weight, by name."""
        if not isinstance(self.net, Neuron):
            return None
        names = self.hparams.feature_names or [f"x{i}" for i in range(self.net.n_in)]
        return {n: float(w) for n, w in zip(names, self.net.w.detach().cpu().tolist(), strict=True)}
