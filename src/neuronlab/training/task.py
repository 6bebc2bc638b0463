"""The training task: network, loss, metrics, optimizer — built from primitives.

Everything the constructor takes is a name, a number or a list of them, so
``save_hyperparameters`` stores primitives and checkpoints reload with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torchmetrics
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import Tensor

from ..errors import unknown_choice
from ..functional import LOSSES, get_loss
from ..functional.loop_pass import LoopPass
from ..functional.precision import opmath_dtype
from ..gradcheck.rounding import loss_targets
from ..init import InitConfig, initialize_
from ..modules import ModelConfig, Neuron, build_network
from ..optim import OptimizerConfig, SchedulerConfig, build_optimizer, build_scheduler
from .step import TrainStep
from .step_optimizer import StepOptimizer


class LearnTask(L.LightningModule):
    """Classification with a neuronlab network, a named loss and torchmetrics accuracy.

    Args:
        n_in: number of input features.
        n_classes: number of classes of the data.
        model, init, optimizer, scheduler: each group's config dataclass
            (:class:`~neuronlab.modules.ModelConfig`, :class:`~neuronlab.init.InitConfig`,
            :class:`~neuronlab.optim.OptimizerConfig`, :class:`~neuronlab.optim.SchedulerConfig`)
            or the same as a mapping (a checkpoint's hyperparameters).
        seed: seeds the initial weights.
        feature_names: names of the inputs, for reading a neuron's weights.
        layout: one row's shape for a conv model (the data set's ``layout``), or ``None``.
    """

    def __init__(
        self,
        n_in: int,
        n_classes: int,
        model: ModelConfig | Mapping[str, Any],
        init: InitConfig | Mapping[str, Any],
        optimizer: OptimizerConfig | Mapping[str, Any],
        scheduler: SchedulerConfig | Mapping[str, Any],
        seed: int = 0,
        feature_names: list[str] | None = None,
        step_mode: str = "eager",
        layout: list[int] | None = None,
    ) -> None:
        super().__init__()
        if step_mode not in ("eager", "compiled", "graph"):
            raise unknown_choice("step_mode", step_mode, ("eager", "compiled", "graph"))
        # eager: Lightning's own loop; compiled / graph: a TrainStep does forward, backward
        # and update in one call (manual optimization), see training/step.py
        self.step_mode = step_mode
        self.automatic_optimization = step_mode == "eager"
        self.train_step: TrainStep | None = None
        self._pending: LoopPass | None = None  # this step's loop, run in ``backward``
        self._epoch_loss: Tensor | None = None  # Σ loss·rows over the epoch so far, on the device
        self._epoch_rows = 0
        self.model_config = ModelConfig.from_mapping(model)
        self.init_config = InitConfig.from_mapping(init)
        self.optimizer_config = OptimizerConfig.from_mapping(optimizer)
        self.scheduler_config = SchedulerConfig.from_mapping(scheduler)
        # primitives only, so checkpoints load with weights_only=True
        self.save_hyperparameters({
            "n_in": n_in, "n_classes": n_classes, "model": self.model_config.to_dict(),
            "init": self.init_config.to_dict(), "optimizer": self.optimizer_config.to_dict(),
            "scheduler": self.scheduler_config.to_dict(), "seed": seed,
            "feature_names": feature_names, "step_mode": step_mode,
            "layout": None if layout is None else [int(n) for n in layout],
        }, logger=False)
        self.loss_name = self.model_config.loss
        self.takes_logits = LOSSES[self.loss_name].takes_logits
        self.n_classes = n_classes
        self.net = build_network(self.model_config, n_in, n_classes, layout)
        with torch.no_grad():
            initialize_(self.net, **self.init_config.to_dict(),
                        generator=torch.Generator().manual_seed(int(seed)))
        if self.model_config.compile:
            self.net.compile()
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=max(n_classes, 2))
        self.test_acc = self.val_acc.clone()

    # ---- the step ---------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """The network's output (``(B,)`` for a neuron, ``(B, n_out)`` for an MLP)."""
        return self.net(x)

    def output_and_loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Logits (bce, cross_entropy) or outputs (mse), and the loss, for ``batch = (x, y)``."""
        x, y = batch
        if self.loss_name == "cross_entropy":  # at granularity=network: the loss in the loop
            return self.net.logits_and_loss(x, y, self.loss_name)
        out = self.net.pre_activation(x) if self.takes_logits else self.net(x)
        loss_fn = get_loss(self.loss_name, self.net.backprop)
        if self.loss_name != "cross_entropy" and not (out.dim() == 2 and out.shape[-1] > 1):
            out = out.reshape(y.shape)  # one output: shaped like the labels
        # one output per class (bce, mse): one-hot rows; the rule the audit's bound uses too
        return out, loss_fn(out, loss_targets(self.loss_name, out, y))

    def predict_classes(self, out: Tensor) -> Tensor:
        if out.dim() == 2 and out.shape[-1] > 1:
            return out.argmax(-1)
        threshold = 0.0 if self.takes_logits else 0.5
        return (out.reshape(-1) > threshold).long()

    # The training loss reaches Lightning twice: ``train/loss`` on the steps its loggers write
    # (``_lightning_writes_this_step``), ``train/loss_epoch`` once per epoch from a sum kept on
    # the device. Each ``self.log`` call costs Lightning ~0.1-0.3 ms of host time, as much as
    # a small model's whole step: two calls every step were most of its per-step overhead.

    def loop_pass(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, LoopPass] | None:
        """The logits and loss of ``(x, y)`` and the ``LoopPass`` that fills ``.grad`` without
        the autograd graph (``_Switchable.loop_pass``: the network loop at
        ``granularity="network"``, the same bits as ``loss.backward()``), or ``None`` where the
        graph is needed: a loss other than the cross-entropy, ``model.compile``, a strategy of
        several devices (DDP reduces the gradients from autograd's hooks), besides what the
        network's ``loop_pass`` itself refuses."""
        trainer = self._trainer
        if (trainer is None or self.loss_name != "cross_entropy" or self.model_config.compile
                or not isinstance(trainer.strategy, SingleDeviceStrategy)):
            return None
        return self.net.loop_pass(x, y, self.loss_name)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Lightning's backward of the training step's loss: this step's ``LoopPass`` where
        ``training_step`` ran one (no graph: the loss Lightning passes, divided by
        ``accumulate_grad_batches``, is a plain tensor), else ``loss.backward()``."""
        pending, self._pending = self._pending, None
        if pending is None or loss.requires_grad:
            super().backward(loss, *args, **kwargs)
            return
        k = self.trainer.accumulate_grad_batches  # Lightning's loss / k, as its backward would
        one = torch.ones_like(pending.loss)
        pending.backward(one if k == 1 else one / k)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        if self.automatic_optimization:
            self._pending = None
            got = self.loop_pass(*batch)
            if got is None:
                _, loss = self.output_and_loss(batch)
            else:
                _, loss, self._pending = got
        else:
            loss = self._stepped(*batch)
        n = batch[0].shape[0]
        self._last_train_loss = (loss.detach(), n)
        if self._epoch_loss is None:  # float32 at least, as Lightning's own epoch mean
            self._epoch_loss = torch.zeros((), dtype=opmath_dtype(loss.dtype), device=loss.device)
        elif self._epoch_loss.device != loss.device:  # restored from a checkpoint on the CPU
            self._epoch_loss = self._epoch_loss.to(loss.device)
        self._epoch_loss.add_(loss.detach(), alpha=n)  # one kernel, no sync
        self._epoch_rows += n
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # after the callbacks' hooks, so a step that stops the run (divergence) is written too;
        # also the last step of an epoch or of the run: what callback_metrics ends with
        trainer = self.trainer
        last = trainer.is_last_batch or 0 < trainer.max_steps <= trainer.global_step
        if last or trainer.fast_dev_run or _lightning_writes_this_step(trainer):
            loss, n = self._last_train_loss
            # on the progress bar only in eager mode: the bar reads the value (a sync)
            self.log("train/loss", loss, on_step=True, on_epoch=False,
                     prog_bar=self.automatic_optimization, batch_size=n)

    def on_train_epoch_end(self) -> None:
        if self._epoch_loss is not None:  # the mean over the epoch's rows (every process's)
            rows = torch.tensor(self._epoch_rows, dtype=self._epoch_loss.dtype,
                                device=self._epoch_loss.device)
            total = torch.stack([self._epoch_loss, rows])  # float64 runs stay float64
            total = self.trainer.strategy.reduce(total, reduce_op="sum")  # DDP: one all-reduce
            # already the same on every process: sync_dist averages equal values (it only
            # tells Lightning the value is global)
            self.log("train/loss_epoch", total[0] / total[1], on_step=False, on_epoch=True,
                     batch_size=1, sync_dist=self.trainer.world_size > 1)
        self._epoch_loss, self._epoch_rows = None, 0  # an epoch-end checkpoint holds no sum

    def _stepped(self, x: Tensor, y: Tensor) -> Tensor:
        """One ``TrainStep`` call (compiled or replayed graph); on the steps a callback needs
        the backward hooks (gradient audit, gradient flow), an eager step that runs them."""
        step = self.train_step
        if any(self.trainer.global_step % n == 0 for n in self._hook_steps):
            plugin = self.trainer.precision_plugin
            def closure() -> Tensor:
                return step.forward_backward(
                    x, y, after_backward=lambda loss: plugin.post_backward(loss, self))
        else:
            def closure() -> Tensor:
                return step(x, y)
        self.optimizers().step(closure=closure)
        self.lr_schedulers().step()
        return step.last_loss

    def on_fit_start(self) -> None:
        from .audit import GradientAudit
        from .flow import GradientFlow

        self._hook_steps = [cb.every_n_steps for cb in self.trainer.callbacks
                            if isinstance(cb, GradientAudit | GradientFlow)]
        if not self.automatic_optimization:  # the step scales a 16-mixed loss on the device
            self.trainer.precision_plugin.scaler = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # torch's generators: dropout draws its masks there, so a resumed run draws the masks
        # the uninterrupted one would have (the data order has its own seeded generator)
        checkpoint["rng"] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        if self.train_step is not None:  # the 16-mixed loss scale (empty otherwise)
            checkpoint["train_step"] = self.train_step.state_dict()
        # saved mid-epoch: the epoch's loss so far, for the epoch mean (not after the last
        # batch, as at validation end: the epoch's end hook, which logs it, runs again)
        if self._epoch_rows and not self.trainer.is_last_batch:
            checkpoint["train_loss_epoch"] = {"sum": self._epoch_loss.detach().cpu(),
                                              "rows": self._epoch_rows}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("rng") or {}  # (absent from checkpoints of older versions)
        if "cpu" in rng:
            torch.set_rng_state(rng["cpu"])
        if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == \
                torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self._train_step_state = checkpoint.get("train_step") or {}
        partial = checkpoint.get("train_loss_epoch")
        if partial:
            self._epoch_loss = partial["sum"].to(self.device)
            self._epoch_rows = int(partial["rows"])

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
        opt = build_optimizer(self.net.parameters(), self.optimizer_config)
        if not self.automatic_optimization:
            self.train_step = TrainStep(lambda x, y: self.output_and_loss((x, y))[1], opt,
                                        mode=self.step_mode, precision=self.trainer.precision,
                                        loop_fn=self.loop_pass)
            self.train_step.load_state_dict(getattr(self, "_train_step_state", {}))
            opt = StepOptimizer(self.train_step)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        sched = build_scheduler(opt, self.scheduler_config, int(total))
        # named "lr", so LearningRateMonitor logs the rate under that tag
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step",
                                                    "name": "lr"}}

    def feature_weights(self) -> dict[str, float] | None:
        """For a neuron: each input feature's learned weight, by name."""
        if not isinstance(self.net, Neuron):
            return None
        names = self.hparams.feature_names or [f"x{i}" for i in range(self.net.n_in)]
        return {n: float(w) for n, w in zip(names, self.net.w.detach().cpu().tolist(), strict=True)}


def _lightning_writes_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning writes step metrics to the loggers after this batch (every
    ``trainer.log_every_n_steps`` steps, and when the run stops). Lightning keeps the answer on
    a private object; where it is missing, every step is logged as before."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True))
