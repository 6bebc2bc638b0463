"""GradientFlow: per-layer statistics that show vanishing and exploding gradients."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from ..functional import get_activation
from ..modules import Layer

_SATURATING = {"sigmoid": lambda a: (a < 0.01) | (a > 0.99), "tanh": lambda a: a.abs() > 0.99}
_RECTIFYING = ("relu", "leaky_relu")


class GradientFlow(L.Callback):
    """Every ``every_n_steps`` steps, for each layer ``i`` of the network, log:

    - ``flow/layer{i}/grad_norm`` and ``weight_norm`` (‖∂L/∂W‖, ‖W‖),
    - ``flow/layer{i}/update_ratio`` (‖ΔW‖/‖W‖ of this step: ~1e-3 is healthy),
    - ``flow/layer{i}/act_mean`` and ``act_std`` of the layer's output (its activation's:
      after the norm where the network normalizes, before any pooling),
    - ``flow/layer{i}/saturated`` (sigmoid/tanh: share of outputs in the flat tails) or
      ``flow/layer{i}/dead`` (ReLU: share of units that are zero for the whole batch; a
      convolution's unit is a channel, zero at every position),

    and, with ``histograms``, TensorBoard histograms of each layer's weights and gradients.
    All statistics of a step are moved to the host in one transfer.
    """

    def __init__(self, every_n_steps: int = 50, histograms: bool = True) -> None:
        if every_n_steps < 1:
            raise ValueError(f"callbacks.gradient_flow.every_n_steps={every_n_steps} must be ≥ 1")
        self.every_n_steps = every_n_steps
        self.histograms = histograms
        self._hooks: list = []
        self._acts: dict[int, Tensor] = {}
        self._before: dict[int, Tensor] = {}
        self._stats: dict[str, Tensor] = {}

    @staticmethod
    def layers(pl_module: L.LightningModule) -> list[Layer]:
        net = pl_module.net
        return list(net.layers) if hasattr(net, "layers") else [net]

    def _due(self, trainer) -> bool:
        return trainer.global_step % self.every_n_steps == 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self._due(trainer):
            return
        net = pl_module.net
        norms = list(net.norms) if getattr(net, "norm", None) is not None else []
        for i, layer in enumerate(self.layers(pl_module)):
            if i < len(norms):  # a normalized layer: its output is act(norm(z)), after the norm
                act = get_activation(net.activation, "autograd")

                def keep_normed(module, args, output, i=i, act=act):
                    self._acts[i] = act(output.detach())
                self._hooks.append(norms[i].register_forward_hook(keep_normed))
                continue

            def keep(module, args, output, i=i):
                self._acts[i] = output.detach()
            self._hooks.append(layer.register_forward_hook(keep))

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self._hooks:
            return
        self._remove_hooks()
        for i, layer in enumerate(self.layers(pl_module)):
            w, g = layer.weight.detach(), layer.weight.grad
            self._before[i] = w.clone()
            stats = {"weight_norm": w.norm()}
            if g is not None:
                stats["grad_norm"] = g.norm()
            a = self._acts.get(i)
            if a is not None and a.numel():
                a = a.float()
                stats["act_mean"], stats["act_std"] = a.mean(), a.std(unbiased=False)
                if layer.activation in _SATURATING:
                    stats["saturated"] = _SATURATING[layer.activation](a).float().mean()
                elif layer.activation in _RECTIFYING:
                    # a unit: a feature of a dense layer, a channel of a convolution
                    flat = (a.transpose(0, 1).reshape(a.shape[1], -1).T if a.dim() > 2
                            else a.reshape(-1, a.shape[-1]) if a.dim() > 1 else a.reshape(-1, 1))
                    stats["dead"] = (flat <= 0).all(0).float().mean()
            for k, v in stats.items():
                self._stats[f"flow/layer{i}/{k}"] = v
            if self.histograms and trainer.logger is not None and hasattr(
                trainer.logger.experiment, "add_histogram"
            ):
                exp = trainer.logger.experiment
                exp.add_histogram(f"weights/layer{i}", w.float().cpu(), trainer.global_step)
                if g is not None:
                    exp.add_histogram(f"grads/layer{i}", g.float().cpu(), trainer.global_step)
        self._acts.clear()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._remove_hooks()
        if not self._before:
            return
        for i, layer in enumerate(self.layers(pl_module)):
            before = self._before[i]
            self._stats[f"flow/layer{i}/update_ratio"] = (
                (layer.weight.detach() - before).norm() / before.norm().clamp_min(1e-12)
            )
        self._before.clear()
        names = list(self._stats)
        values = torch.stack([v.float() for v in self._stats.values()]).cpu().tolist()
        self._stats.clear()
        if trainer.logger is not None:
            trainer.logger.log_metrics(dict(zip(names, values, strict=True)),
                                       step=trainer.global_step - 1)
