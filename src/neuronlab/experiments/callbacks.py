"""Small callbacks the experiments add to a run; each writes one JSON file into the run folder.

- :class:`WeightTrace`: a neuron's weight per feature every N steps (``weight_trace.json``,
  and TensorBoard scalars ``weights/<feature>``), to watch the weights move.
- :class:`InitFingerprint`: a SHA-256 of the initial parameters (``init.json``), so a sweep
  can show that every run started from the very same weights.
- :class:`FitMetrics`: the scalars Lightning holds when ``fit`` ends (``fit_metrics.json``):
  ``train/loss_epoch``, ``val/loss``... (``metrics.json`` keeps only what ``test`` returns).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..modules import Neuron

INIT_FILE = "init.json"
FIT_METRICS_FILE = "fit_metrics.json"
WEIGHT_TRACE_FILE = "weight_trace.json"


def _write_json(trainer: L.Trainer, name: str, data: Any) -> None:
    if not trainer.is_global_zero:
        return
    folder = Path(trainer.default_root_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data, indent=2) + "\n")


def parameters_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in ``named_parameters`` order."""
    digest = hashlib.sha256()
    for name, p in module.named_parameters():
        digest.update(name.encode())
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class InitFingerprint(L.Callback):
    """Write ``init.json`` = ``{"sha256": ..., "param_norm": ...}`` of the weights at the start."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = getattr(pl_module, "net", pl_module)
        norm = torch.sqrt(sum((p.detach().float() ** 2).sum() for p in net.parameters()))
        _write_json(trainer, INIT_FILE, {"sha256": parameters_sha256(net),
                                         "param_norm": float(norm)})


class FitMetrics(L.Callback):
    """Write the scalar ``trainer.callback_metrics`` at the end of ``fit`` (or when it stops on
    an exception, e.g. divergence) to ``fit_metrics.json``."""

    def _dump(self, trainer: L.Trainer) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        _write_json(trainer, FIT_METRICS_FILE, metrics)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._dump(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._dump(trainer)


class WeightTrace(L.Callback):
    """Record a neuron's weights (one per input feature) at step 0 and every ``every_n_steps``.

    The history goes to ``weight_trace.json`` (``{"steps": [...], "weights": {name: [...]}}``)
    and, when the run has a logger, to the scalars ``weights/<feature>``. Networks other than a
    single ``Neuron`` are left alone.
    """

    def __init__(self, every_n_steps: int = 5) -> None:
        if every_n_steps < 1:
            raise ValueError(f"callbacks.weight_trace.every_n_steps={every_n_steps} must be ≥ 1")
        self.every_n_steps = every_n_steps
        self.steps: list[int] = []
        self.weights: dict[str, list[float]] = {}

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = getattr(pl_module, "net", None)
        if not isinstance(net, Neuron):
            return
        step = int(trainer.global_step)
        if self.steps and self.steps[-1] == step:
            return
        names = list(getattr(pl_module.hparams, "feature_names", None) or [])
        names = names or [f"x{i}" for i in range(net.n_in)]
        values = net.w.detach().cpu().tolist()
        self.steps.append(step)
        for name, w in zip(names, values, strict=True):
            self.weights.setdefault(name, []).append(float(w))
        if trainer.logger is not None:
            trainer.logger.log_metrics({f"weights/{n}": w for n, w in zip(names, values,
                                                                          strict=True)}, step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.steps, self.weights = [], {}
        self._record(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs,
                           batch, batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._record(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, pl_module)
        if self.steps:
            _write_json(trainer, WEIGHT_TRACE_FILE, {"steps": self.steps, "weights": self.weights})
