# pytest tests/test_planted_in_models.py
"""compare_gradients catches every planted bug that reaches a model's gradients
(``tests/planted.py``): an MLP routed through the bug fails on the parameters the bug reaches
and passes on the others, each failure far beyond the rounding bound; without the plant it
passes. (The training audit's check of the same table, mid-run, is in test_audit.py.)"""

from __future__ import annotations

import pytest
import torch
from planted import IN_MODELS, PLANTS, Plant

from neuronlab import MLP
from neuronlab.functional import OPS
from neuronlab.gradcheck import compare_gradients


def _model_and_batch(plant: Plant) -> tuple[MLP, torch.Tensor, torch.Tensor]:
    """A float64 MLP (2 features, 2 classes: one logit for bce) running through the plant's op,
    and a batch of 32."""
    n_out = 1 if plant.loss == "bce" else 2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MLP([2, *(plant.hidden or (8, 8)), n_out], activation=plant.activation)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 2, generator=gen), torch.randint(0, 2, (32,), generator=gen)
    return model.double(), x, y


def test_every_op_reaches_a_model_through_some_plant():
    # the MLP's ops; the layer ops reach their models in the models' own tests
    assert {PLANTS[n].op for n in IN_MODELS} == {
        name for name, spec in OPS.items() if spec.kind in ("linear", "activation", "loss")}
    assert {PLANTS[n].reaches for n in IN_MODELS} == {"hidden", "all", "biases", "weights"}


@pytest.mark.parametrize("name", IN_MODELS)
def test_compare_gradients_catches_the_planted_bug(name, monkeypatch):
    plant = PLANTS[name]
    model, x, y = _model_and_batch(plant)
    assert compare_gradients(model, x, y, loss=plant.loss).ok  # the model is right without it
    plant.install(monkeypatch)
    report = compare_gradients(model, x, y, loss=plant.loss)
    failed = {r.name for r in report.rows if not r.passed}
    reached = plant.reached(len(model.layers))
    # not always all it reaches: two sign flips in a row cancel (the sigmoid plant leaves
    # layers.0 right)
    assert not report.ok and failed and failed <= reached, str(report)
    assert min(r.error for r in report.rows if not r.passed) > 1e6, str(report)
    assert model.backprop == "manual" and all(p.grad is None for p in model.parameters())
