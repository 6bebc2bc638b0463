"""Shared by the audit tests: a short audited training run on moons, and a callback that swaps
a planted bug (``tests/planted.py``) in at a given step."""

from __future__ import annotations

import lightning as L
import pytest
from planted import Plant

import neuronlab.training.run as run_module
from neuronlab.config import compose
from neuronlab.training import GradientAudit
from neuronlab.training.run import train

QUIET = ["callbacks.progress_bar=null", "~logger", "callbacks.lr_monitor=null",
         "callbacks.gradient_flow=null", "callbacks.model_checkpoint=null", "torch_threads=1",
         "+trainer.check_val_every_n_epoch=10000"]  # validation: not what is tested here
HIDDEN = {f"layers.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}  # model=mlp: [64, 64]
ALL = HIDDEN | {"layers.2.weight", "layers.2.bias"}
EVERY = 10  # audit every 10 steps
PLANT_STEP = 100  # mid-training: after this many right steps (10 audits)


def train_audited(tmp_path, *overrides: str, every: int = EVERY,
                  extra_callbacks=()) -> tuple[dict, GradientAudit]:
    """``train`` on ``data=moons model=mlp`` with the audit every ``every`` steps; the run's
    record and its ``GradientAudit``."""
    cfg = compose(["data=moons", "model=mlp", *QUIET,
                   f"callbacks.gradient_audit.every_n_steps={every}", *overrides],
                  output_dir=tmp_path)
    build = run_module.build

    def build_with_extras(*args, **kwargs):
        datamodule, task, trainer = build(*args, **kwargs)
        trainer.callbacks.extend(extra_callbacks)
        return datamodule, task, trainer

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_module, "build", build_with_extras)
        record = train(cfg)
    audit = next(c for c in record["trainer"].callbacks if isinstance(c, GradientAudit))
    return record, audit


class PlantAt(L.Callback):
    """At ``step``, swap the planted bug in (undone by ``monkeypatch`` after the test)."""

    def __init__(self, step: int, plant: Plant, monkeypatch: pytest.MonkeyPatch) -> None:
        self.step, self.plant, self.mp, self.planted_at = step, plant, monkeypatch, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.planted_at is None:
            self.plant.install(self.mp)
            self.planted_at = trainer.global_step
