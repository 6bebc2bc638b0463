# pytest tests/test_audit_precision.py
"""The gradient audit under mixed precision.

``16-mixed``: GradScaler's factor is applied to both sides; a step whose scaled gradients
hold inf/NaN (one GradScaler skips) is not compared; DivergenceGuard watches the loss only,
so a skipped step is not divergence. ``bf16-mixed`` is judged with bfloat16's roundoff, and a
planted bug (``tests/planted.py``) is still caught, in the recomputation without autocast.
"""

from __future__ import annotations

import contextlib
import json
import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from audit_runs import PLANT_STEP, PlantAt, train_audited
from planted import PLANTS

import neuronlab.modules
from neuronlab.functional import get_loss
from neuronlab.training import DivergenceGuard, GradientAudit, GradientMismatch


class _Task:
    """What the audit uses of the LightningModule: ``net``, ``loss_name``, ``output_and_loss``."""

    loss_name = "cross_entropy"

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = neuronlab.modules.MLP([2, 16, 16, 2], activation="tanh")

    def output_and_loss(self, batch):
        x, y = batch
        logits = self.net.pre_activation(x)
        return logits, get_loss(self.loss_name, self.net.backprop)(logits, y)

    def parameters(self):
        return self.net.parameters()


def _task() -> _Task:
    return _Task()


def _batch(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, generator=g), torch.randint(0, 2, (n,), generator=g)


def _fake_trainer(precision: str, scaler=None, autocast=None) -> SimpleNamespace:
    context = autocast if autocast is not None else contextlib.nullcontext
    plugin = SimpleNamespace(scaler=scaler, forward_context=context)
    return SimpleNamespace(global_step=0, accumulate_grad_batches=1, world_size=1,
                           precision=precision, precision_plugin=plugin, logger=None)


def _manual_backward(task: _Task, batch, factor: float = 1.0) -> None:
    task.net.zero_grad(set_to_none=True)
    _, loss = task.output_and_loss(batch)
    (loss * factor).backward()


def _audit(trainer, task, batch, **kwargs) -> GradientAudit:
    audit = GradientAudit(every_n_steps=1, **kwargs)
    audit.on_train_batch_start(trainer, task, batch, 0)
    audit.on_after_backward(trainer, task)
    return audit


def test_16_mixed_compares_at_the_scalers_factor():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    task, batch = _task(), _batch()
    scaler.scale(torch.ones(()))  # GradScaler makes its factor on first use
    _manual_backward(task, batch, factor=2.0**12)  # what Lightning's backward leaves in .grad
    audit = _audit(_fake_trainer("16-mixed", scaler), task, batch)
    assert audit.skipped == 0 and 0 <= max(audit.last.values()) < 1, audit.last
    # grads without the factor are off by 4096×: the factor is really on the autograd side
    _manual_backward(task, batch)
    with pytest.raises(GradientMismatch, match=r"above the tolerance 1×"):
        _audit(_fake_trainer("16-mixed", scaler), task, batch)


def test_16_mixed_step_with_non_finite_scaled_gradients_is_skipped():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    scaler.scale(torch.ones(()))
    task, batch = _task(), _batch()
    _manual_backward(task, batch, factor=2.0**12)
    task.net.layers[0].weight.grad[0, 0] = math.inf  # the overflow GradScaler will skip
    audit = _audit(_fake_trainer("16-mixed", scaler), task, batch)
    assert audit.skipped == 1 and audit.last == {}
    # the same inf without a scaler is nobody's skipped step: a one-sided inf is a mismatch
    with pytest.raises(GradientMismatch, match="'layers.0.weight' differ by inf"):
        _audit(_fake_trainer("32-true"), task, batch)


def test_bf16_mixed_judges_the_steps_gradients_with_bfloat16_roundoff():
    """Gradients off by 2⁻⁹ (relative): rounding in bfloat16, a bug in float32. Under
    bf16-mixed the step's own gradients pass; the recomputation without autocast is fresh."""
    task, batch = _task(), _batch()
    _manual_backward(task, batch)
    for p in task.parameters():
        p.grad.mul_(1 + 2.0**-9)
    audit = _audit(_fake_trainer("bf16-mixed"), task, batch)
    assert max(audit.last.values()) < 1, audit.last
    with pytest.raises(GradientMismatch, match=r"in torch.float32\), above"):
        _audit(_fake_trainer("32-true"), task, batch)


class _LitTask(L.LightningModule):
    """A LightningModule around ``_Task``, trained with torch's SGD (no neuronlab config)."""

    def __init__(self) -> None:
        super().__init__()
        self.task = _Task()
        self.net, self.loss_name = self.task.net, self.task.loss_name

    def output_and_loss(self, batch):
        return self.task.output_and_loss(batch)

    def training_step(self, batch, batch_idx):
        return self.output_and_loss(batch)[1]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_16_mixed_on_cpu_skipped_steps_are_neither_divergence_nor_mismatch():
    """A real GradScaler that starts at 2⁴⁰: the first ~20 steps overflow float16 and are
    skipped (the scale halves each time), then training goes on, audited every step."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    x, y = _batch(256)
    y = (x[:, 0] * x[:, 1] > 0).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    audit, guard = GradientAudit(every_n_steps=1), DivergenceGuard()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=40, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[audit, guard],
                        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    task = _LitTask()
    before = task.net.layers[0].weight.detach().clone()
    trainer.fit(task, loader)  # neither Diverged nor GradientMismatch
    assert trainer.global_step == 40
    assert 10 <= audit.skipped < 40 and scaler.get_scale() < 2.0**40
    assert audit.last and max(audit.last.values()) < 1, audit.last
    assert not torch.equal(task.net.layers[0].weight, before)  # the later steps did train


def test_bf16_mixed_run_audits_silently_and_still_catches_a_bug(tmp_path, monkeypatch):
    record, audit = train_audited(tmp_path / "ok", "trainer.precision=bf16-mixed",
                                  "trainer.max_steps=200", "trainer.max_epochs=100")
    assert record["status"] == "ok", record["message"]
    assert audit.last and max(audit.last.values()) < 1, audit.last
    plant = PLANTS["tanh derivative 1 - a"]
    record, _ = train_audited(tmp_path / "bug", *plant.overrides, "trainer.precision=bf16-mixed",
                              "trainer.max_steps=300", "trainer.max_epochs=100",
                              extra_callbacks=[PlantAt(PLANT_STEP, plant, monkeypatch)])
    assert record["status"] == "failed", record["message"]
    assert "recomputed without autocast" in record["message"]


def test_divergence_guard_ignores_a_skipped_step_with_a_finite_loss():
    """GradScaler's skipped step: inf gradients, a finite loss. Only the loss is watched."""
    guard = DivergenceGuard(check_every_n_steps=1)
    task = _task()
    for p in task.parameters():
        p.grad = torch.full_like(p, math.inf)
    trainer = SimpleNamespace(global_step=7, world_size=1, optimizers=[])
    guard.on_train_batch_end(trainer, task, {"loss": torch.tensor(0.3)}, None, 0)
    guard.check(trainer)  # no Diverged
    guard.on_save_checkpoint(trainer, task, {})  # the weights are still finite: no Diverged


@pytest.mark.slow
def test_long_runs_script_quick(tmp_path):
    """``scripts/long_runs.py --quick`` on three of its runs (float64, bf16-mixed, a neuron)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parents[1] / "scripts" / "long_runs.py"
    spec = importlib.util.spec_from_file_location("long_runs", path)
    long_runs = importlib.util.module_from_spec(spec)
    sys.modules["long_runs"] = long_runs  # dataclasses look their module up there
    spec.loader.exec_module(long_runs)
    assert len(long_runs.RUNS) >= 20
    only = "moons mlp tanh cross_entropy 64-true,iris mlp gelu,cats neuron sigmoid mse"
    assert long_runs.main(["--quick", "--only", only, "--root", str(tmp_path),
                           "--json", str(tmp_path / "rows.json")]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) == 3 and all(r["status"] == "ok" and r["worst"] < 1 for r in rows)
