# pytest tests/test_audit.py
"""The gradient audit's rule: rounding never raises an alarm, a wrong backward always does.

- A run that descends to a minimum (full batch with momentum: the batch gradient shrinks to
  ~1e-4 of the terms it is summed from) raises no alarm, and ``compare_gradients`` passes the
  network it ends with. The old rule — a per-tensor relative error against a fixed 1e-5 —
  failed this run at step 80 ("'layers.2.bias' differ by 1.91e-05 (relative)"), as it failed
  ``data=moons model=mlp trainer.max_epochs=1000`` at step 10250.
- Each activation, audited at every step, raises no alarm.
- Every planted bug of ``tests/planted.py`` that reaches a model's gradients, swapped in after
  100 right steps, ends the run as ``failed`` at the next audit, naming a parameter it reaches.

Mixed precision (GradScaler, skipped steps, bf16) is in test_audit_precision.py.
"""

from __future__ import annotations

import re

import pytest
import torch
from audit_runs import ALL, PLANT_STEP, PlantAt, train_audited
from planted import IN_MODELS, PLANTS

import neuronlab.modules
from neuronlab.gradcheck import compare_gradients
from neuronlab.gradcheck.rounding import gradient_terms, rounding_bounds, unit_roundoff
from neuronlab.training import GradientAudit

# ---- no false alarm near a minimum ---------------------------------------------------------


@pytest.fixture(scope="module")
def converged(tmp_path_factory) -> tuple[dict, GradientAudit]:
    """Full-batch descent with momentum on moons, 200 steps: train loss ≈ 1e-3."""
    return train_audited(tmp_path_factory.mktemp("converged"), "data.batch_size=null",
                         "optimizer.momentum=0.9", "trainer.max_steps=200",
                         "trainer.max_epochs=5000")


def test_a_run_that_converges_raises_no_false_alarm(converged):
    record, audit = converged
    assert record["status"] == "ok", record["message"]
    assert record["steps"] == 200
    assert set(audit.last) == ALL
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
    # each sample contributes (softmax + onehot)/N, whatever the labels: those terms sum to 2;
    # the logits' own rounding carried through the loss (softmax ⊙ their term sizes) adds the
    # same for both batches: it does not depend on the labels either
    assert mixed.sum().item() == pytest.approx(same.sum().item()) and mixed.sum() > 2
    u = unit_roundoff(torch.float32)
    assert u == 2.0**-24 and unit_roundoff(torch.bfloat16) == 2.0**-8
    bounds = rounding_bounds([mixed, torch.zeros(3)], u)
    assert bounds[0] == pytest.approx(16 * u * (mixed.max() * (1 + 2**-10)))
    assert bounds[1] == pytest.approx(16 * u * 2**-10 * mixed.max())  # the model-wide floor


# ---- each activation: no alarm at any step --------------------------------------------------


@pytest.mark.parametrize("activation", sorted({PLANTS[n].activation for n in IN_MODELS}))
def test_audit_passes_the_right_backward(tmp_path, activation):
    record, audit = train_audited(tmp_path, f"model.activation={activation}",
                                  "trainer.max_steps=3", every=1)
    assert record["status"] == "ok" and record["message"] is None, record["message"]
    assert record["steps"] == 3
    assert set(audit.last) == ALL  # it did compare, every parameter
    assert max(audit.last.values()) <= 1, audit.last  # differences / their rounding bounds


# ---- every planted bug is caught, mid-training ---------------------------------------------


@pytest.mark.slow  # 20 short trainings (~6 s); the per-op plant tests stay fast
@pytest.mark.parametrize("name", IN_MODELS)
def test_a_bug_swapped_in_mid_training_is_caught(tmp_path, monkeypatch, name):
    plant = PLANTS[name]
    plant_at = PlantAt(PLANT_STEP, plant, monkeypatch)
    record, audit = train_audited(tmp_path, *plant.overrides, "trainer.max_steps=300",
                                  "trainer.max_epochs=100", extra_callbacks=[plant_at])
    reached = plant.reached(3)  # model=mlp: two hidden layers and the output layer
    assert plant_at.planted_at == PLANT_STEP
    assert record["status"] == "failed", record["message"]
    m = re.search(r"gradient audit failed at step (\d+): manual and autograd gradients of "
                  r"'([\w.]+)' differ by \S+, (\S+)× their rounding bound", record["message"])
    assert m, record["message"]
    assert int(m.group(1)) == PLANT_STEP  # the first audit after the swap
    assert record["steps"] == PLANT_STEP  # the run ends there: the wrong step is not taken
    assert m.group(2) in reached and float(m.group(3)) > 1
    # only what the bug reaches fails; not always all of it: two sign flips in a row cancel,
    # so the sigmoid sign plant leaves layers.0's gradient right
    assert {n for n, v in audit.last.items() if v > 1} <= reached, audit.last
