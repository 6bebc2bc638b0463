# pytest tests/test_audit.py
"""The gradient audit's rule: rounding never raises an alarm, a wrong backward always does.

- A run that descends to a minimum (full batch with momentum: the batch gradient shrinks to
  ~1e-4 of the terms it is summed from) raises no alarm, and ``compare_gradients`` passes the
  network it ends with. The old rule — a per-tensor relative error against a fixed 1e-5 —
  failed this run at step 80 ("'layers.2.bias' differ by 1.91e-05 (relative)"), as it failed
  ``data=moons model=mlp trainer.max_epochs=1000`` at step 10250.
- Every planted backward bug, swapped in after 100 correct steps, ends the run as ``failed``
  at the next audit, naming a parameter the bug reaches.
- ``16-mixed``: GradScaler's factor is applied to both sides; a step whose scaled gradients
  hold inf/NaN (one GradScaler skips) is not compared; DivergenceGuard watches the loss only,
  so a skipped step is not divergence. ``bf16-mixed`` is judged with bfloat16's roundoff.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from test_planted_bugs import AUDIT_BUGS, PLANTS

import neuronlab.functional.activations as A
import neuronlab.modules
import neuronlab.training.run as run_module
from neuronlab.config import compose
from neuronlab.functional import ACTIVATIONS, LOSSES, get_loss
from neuronlab.functional.linear import LinearFunction
from neuronlab.gradcheck import compare_gradients
from neuronlab.gradcheck.rounding import gradient_terms, rounding_bounds, unit_roundoff
from neuronlab.training import DivergenceGuard, GradientAudit, GradientMismatch
from neuronlab.training.run import train

QUIET = ["callbacks.progress_bar=null", "~logger", "callbacks.lr_monitor=null",
         "callbacks.gradient_flow=null", "callbacks.model_checkpoint=null", "torch_threads=1",
         "+trainer.check_val_every_n_epoch=10000"]  # validation: not what is tested here
HIDDEN = {f"layers.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}  # model=mlp: [64, 64]
EVERY = 10  # audit every 10 steps


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is fastest (and train() sets torch_threads=1 anyway)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(tmp_path, *overrides: str, extra_callbacks=()) -> tuple[dict, GradientAudit]:
    cfg = compose(["data=moons", "model=mlp", *QUIET,
                   f"callbacks.gradient_audit.every_n_steps={EVERY}", *overrides],
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


# ---- no false alarm near a minimum ---------------------------------------------------------


@pytest.fixture(scope="module")
def converged(tmp_path_factory) -> tuple[dict, GradientAudit]:
    """Full-batch descent with momentum on moons, 200 steps: train loss ≈ 1e-3."""
    return _train(tmp_path_factory.mktemp("converged"), "data.batch_size=null",
                  "optimizer.momentum=0.9", "trainer.max_steps=200", "trainer.max_epochs=5000")


def test_a_run_that_converges_raises_no_false_alarm(converged):
    record, audit = converged
    assert record["status"] == "ok", record["message"]
    assert record["steps"] == 200
    assert set(audit.last) == HIDDEN | {"layers.2.weight", "layers.2.bias"}
    assert max(audit.last.values()) < 0.5, audit.last  # a multiple of the rounding bound
    assert record["metrics"]["train/loss"] < 0.01


def test_compare_gradients_passes_the_converged_network(converged):
    record, _ = converged
    x, y = record["trainer"].datamodule.train_tensors  # the full batch it was trained on
    report = compare_gradients(record["task"].net, x, y, loss="cross_entropy")
    assert report.ok, str(report)
    assert report.worst < 0.5


def test_the_bound_scales_with_the_terms_not_with_the_gradient():
    """Two batches, same network: one balanced (its gradient cancels), one not."""
    torch.manual_seed(0)
    net = neuronlab.modules.MLP([2, 8, 2], activation="tanh")
    x = torch.randn(64, 2)
    y_mixed, y_same = torch.arange(64) % 2, torch.zeros(64, dtype=torch.long)
    mixed = gradient_terms(net, x, y_mixed, "cross_entropy")["layers.1.bias"]
    same = gradient_terms(net, x, y_same, "cross_entropy")["layers.1.bias"]
    # each sample contributes (softmax + onehot)/N, whatever the labels: the terms sum to 2
    assert mixed.sum().item() == pytest.approx(2.0) and same.sum().item() == pytest.approx(2.0)
    u = unit_roundoff(torch.float32)
    assert u == 2.0**-24 and unit_roundoff(torch.bfloat16) == 2.0**-8
    bounds = rounding_bounds([mixed, torch.zeros(3)], u)
    assert bounds[0] == pytest.approx(16 * u * (mixed.max() * (1 + 2**-10)))
    assert bounds[1] == pytest.approx(16 * u * 2**-10 * mixed.max())  # the model-wide floor


# ---- every planted bug is still caught, mid-training ---------------------------------------


class PlantAt(L.Callback):
    """At ``step``, swap the planted bug in (``plant(monkeypatch)``)."""

    def __init__(self, step: int, plant, monkeypatch) -> None:
        self.step, self.plant, self.mp, self.planted_at = step, plant, monkeypatch, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.planted_at is None:
            self.plant(self.mp)
            self.planted_at = trainer.global_step


def _activation(name: str, plant: str):
    def plant_it(mp):
        mp.setitem(ACTIVATIONS, name,
                   dataclasses.replace(ACTIVATIONS[name], manual=PLANTS[plant].function.apply))
    return plant_it


def _loss(name: str, plant: str):
    def plant_it(mp):
        mp.setitem(LOSSES, name,
                   dataclasses.replace(LOSSES[name], manual=PLANTS[plant].function.apply))
    return plant_it


def _linear(plant: str):
    def plant_it(mp):
        mp.setattr(neuronlab.modules, "linear", PLANTS[plant].function.apply)
    return plant_it


def _helper(kind: str):
    _, helper, wrong = AUDIT_BUGS[kind]

    def plant_it(mp):
        mp.setattr(A, helper, wrong)
    return plant_it


def _bias_forgotten(mp):
    right = LinearFunction.backward

    def backward(ctx, g):
        grad_input, grad_weight, _ = right(ctx, g)
        return grad_input, grad_weight, None

    mp.setattr(LinearFunction, "backward", staticmethod(backward))


ALL = HIDDEN | {"layers.2.weight", "layers.2.bias"}
# name: (overrides, plant, the parameters the bug reaches)
MID_TRAINING = {
    "sigmoid wrong sign": (["model.activation=sigmoid"],
                           _activation("sigmoid", "sigmoid wrong sign"), HIDDEN),
    "sigmoid upstream ignored": (["model.activation=sigmoid"],
                                 _activation("sigmoid", "sigmoid upstream ignored"), HIDDEN),
    "tanh 1 - a": (["model.activation=tanh"], _activation("tanh", "tanh 1 - a"), HIDDEN),
    "relu passes z < 0": ([], _activation("relu", "relu passes z < 0"), HIDDEN),
    "softplus sigmoid(-z)": (["model.activation=softplus"],
                             _activation("softplus", "softplus sigmoid(-z)"), HIDDEN),
    "gelu without z phi(z)": (["model.activation=gelu"],
                              _activation("gelu", "gelu without z phi(z)"), HIDDEN),
    "bce (y - sigma)": (["model.loss=bce"], _loss("bce", "bce (y - sigma)"), ALL),
    "mse missing 2": (["model.loss=mse"], _loss("mse", "mse missing 2"), ALL),
    "mse grads swapped": (["model.loss=mse"], _loss("mse", "mse grads swapped"), ALL),
    "cross_entropy missing 1/N": ([], _loss("cross_entropy", "cross_entropy missing 1/N"), ALL),
    "cross_entropy exp unnormalized": ([], _loss("cross_entropy",
                                                 "cross_entropy exp unnormalized"), ALL),
    "linear bias g[0]": ([], _linear("linear bias g[0]"), {f"layers.{i}.bias" for i in range(3)}),
    "linear x^T g (square layers)": (["model.hidden=[2,2]"], _linear("linear x^T g"),
                                     {f"layers.{i}.weight" for i in range(3)}),
    "linear bias gradient forgotten": ([], _bias_forgotten,
                                       {f"layers.{i}.bias" for i in range(3)}),
    **{f"derivative helper: {kind}": ([f"model.activation={AUDIT_BUGS[kind][0]}"],
                                      _helper(kind), HIDDEN) for kind in AUDIT_BUGS},
}
PLANT_STEP = 100


@pytest.mark.parametrize("bug", list(MID_TRAINING))
def test_a_bug_swapped_in_mid_training_is_caught(tmp_path, monkeypatch, bug):
    overrides, plant, reached = MID_TRAINING[bug]
    plant_at = PlantAt(PLANT_STEP, plant, monkeypatch)
    record, audit = _train(tmp_path, *overrides, "trainer.max_steps=300",
                           "trainer.max_epochs=100", extra_callbacks=[plant_at])
    assert plant_at.planted_at == PLANT_STEP
    assert record["status"] == "failed", record["message"]
    m = re.search(r"gradient audit failed at step (\d+): manual and autograd gradients of "
                  r"'([\w.]+)' differ by \S+, (\S+)× their rounding bound", record["message"])
    assert m, record["message"]
    assert int(m.group(1)) == PLANT_STEP  # the first audit after the swap
    assert m.group(2) in reached and float(m.group(3)) > 1
    assert {n for n, v in audit.last.items() if v > 1} <= reached, audit.last


# ---- 16-mixed: GradScaler, skipped steps; bf16-mixed -----------------------------------------


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
    record, audit = _train(tmp_path / "ok", "trainer.precision=bf16-mixed",
                           "trainer.max_steps=200", "trainer.max_epochs=100")
    assert record["status"] == "ok", record["message"]
    assert audit.last and max(audit.last.values()) < 1, audit.last
    overrides, plant, reached = MID_TRAINING["derivative helper: factor"]
    record, _ = _train(tmp_path / "bug", "trainer.precision=bf16-mixed", *overrides,
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
