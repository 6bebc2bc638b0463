# pytest tests/test_best_and_collapse.py
""""Best" as Lightning users mean it, and a run that collapses to the chance level (issue 16,
point 4): a classifier's best checkpoint is its highest val/acc (mse: lowest val/loss), the
summary shows the last epoch when the best is another, and a loss back at the chance level
after having been below it is flagged in the summary and metrics.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from neuronlab.cli.train import report
from neuronlab.config import compose
from neuronlab.training.collapse import ChanceWatch, chance_loss
from neuronlab.training.run import build, train

FAST = ["callbacks.progress_bar=null"]


def _best_callback(*overrides: str) -> ModelCheckpoint:
    _, _, trainer = build(compose([*FAST, *overrides], output_dir="unused"))
    return next(c for c in trainer.checkpoint_callbacks if c.monitor)


@pytest.mark.parametrize("overrides, monitor, mode", [
    (["data=digits", "model=mlp"], "val/acc", "max"),
    (["data=moons", "model=mlp", "model.loss=bce"], "val/acc", "max"),
    (["data=moons", "model=mlp", "model.loss=mse"], "val/loss", "min"),
    (["data=moons", "callbacks.model_checkpoint.monitor=val/loss"], "val/loss", "min"),
])
def test_a_classifier_keeps_its_highest_val_acc_and_mse_its_lowest_val_loss(overrides, monitor,
                                                                            mode):
    cb = _best_callback(*overrides)
    assert (cb.monitor, cb.mode) == (monitor, mode)


@pytest.mark.parametrize("loss, n_out, expected", [
    ("cross_entropy", 10, math.log(10)), ("bce", 1, math.log(2)), ("mse", 1, 0.25),
    ("mse", 4, 0.1875), ("bce", 4, 4 * (-(0.25 * math.log(0.25) + 0.75 * math.log(0.75))) / 4),
])
def test_the_chance_level_of_balanced_classes(loss, n_out, expected):
    y = torch.arange(max(n_out, 2)).repeat(50)
    assert chance_loss(loss, y, n_out) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("loss", ["cross_entropy", "bce", "mse"])
def test_no_constant_prediction_beats_the_chance_level(loss):
    """The chance level is the best an input-blind network can do (the minimum over constant
    outputs), so a collapse cannot hide below it."""
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0] * 70 + [1] * 20 + [2] * 10)
    n_out = 3
    chance = chance_loss(loss, y, n_out)
    target = torch.nn.functional.one_hot(y, n_out).double()
    for _ in range(200):
        c = torch.randn(1, n_out, generator=g, dtype=torch.float64).expand(len(y), n_out)
        if loss == "cross_entropy":
            value = torch.nn.functional.cross_entropy(c, y)
        elif loss == "bce":
            value = torch.nn.functional.binary_cross_entropy_with_logits(c, target)
        else:
            value = torch.nn.functional.mse_loss(torch.sigmoid(c), target)
        assert float(value) >= chance - 1e-12


def _watch(losses: list[float], accs: list[float] | None = None) -> ChanceWatch:
    watch = ChanceWatch()
    watch.chance, watch.chance_acc = math.log(10), 0.1
    for epoch, loss in enumerate(losses):
        metrics = {"val/loss": torch.tensor(loss)}
        if accs is not None:
            metrics["val/acc"] = torch.tensor(accs[epoch])
        watch._read(SimpleNamespace(callback_metrics=metrics, sanity_checking=False), epoch)
    return watch


def test_a_loss_back_at_chance_after_being_below_is_a_collapse():
    report_ = _watch([1.0, 0.3, 2.31], [0.7, 0.95, 0.096]).report
    assert report_ is not None and report_["lowest_epoch"] == 1 and report_["last_epoch"] == 2
    assert _watch([0.5, 2.2, 2.30]).report is not None  # no accuracy: the loss alone


@pytest.mark.parametrize("losses, accs", [
    ([2.31, 2.30, 2.30], [0.1, 0.1, 0.1]),  # never learned: not a collapse, just no learning
    ([1.0, 0.3, 0.25], [0.7, 0.95, 0.96]),  # learned and stayed
    ([1.0, 0.3, 1.9], [0.7, 0.95, 0.6]),    # worse, but above the chance level
    ([1.0, 0.3, 2.38], [0.7, 0.95, 0.90]),  # a few confident mistakes, accuracy still high
])
def test_what_is_not_a_collapse(losses, accs):
    assert _watch(losses, accs).report is None


def test_the_summary_shows_the_last_epoch_and_the_collapse(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text("{}")
    collapse = {"metric": "val/loss", "chance_loss": 2.302, "lowest": 0.31, "lowest_epoch": 2,
                "last": 2.33, "last_epoch": 29, "last_acc": 0.096, "largest_class_share": 0.1}
    report({"status": "ok", "message": None, "steps": 10, "seconds": 0.5,
            "run_dir": str(tmp_path), "metrics": {"test/acc": 0.93, "test/loss": 0.3},
            "tested_on": "the best checkpoint (best-epoch002.ckpt, val/acc=0.97)",
            "last_epoch_test": {"epoch": 29, "test/acc": 0.12, "test/loss": 2.29},
            "collapse": collapse})
    out = capsys.readouterr().out
    assert "last epoch (29): test accuracy 0.1200" in out
    warning = [line for line in out.splitlines() if line.startswith("warning: collapsed")]
    assert len(warning) == 1 and "2.302" in warning[0] and "epoch 2" in warning[0]


def test_best_and_last_are_both_tested_when_they_differ(tmp_path):
    record = train(compose([*FAST, "data=digits", "model=mlp", "trainer.max_epochs=4",
                            "optimizer.lr=0.5"], output_dir=tmp_path))
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert "val/acc=" in record["tested_on"]
    best = next(Path(tmp_path, "checkpoints").glob("best-epoch*.ckpt"))
    if best.name == "best-epoch003.ckpt":
        assert stored["last_epoch_test"] is None
    else:
        assert stored["last_epoch_test"]["epoch"] == 3
        assert 0 <= stored["last_epoch_test"]["test/acc"] <= 1
    assert "collapse" in stored


@pytest.mark.slow
def test_digits_with_batch_16_collapses_and_says_so(tmp_path):
    """The issue's run: `neuronlab-train data=digits model=mlp data.batch_size=16`."""
    record = train(compose([*FAST, "data=digits", "model=mlp", "data.batch_size=16"],
                           output_dir=tmp_path))
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "ok"
    assert stored["collapse"] is not None, stored["metrics"]
    assert stored["collapse"]["last"] >= 0.95 * math.log(10) > stored["collapse"]["lowest"]
    assert stored["last_epoch_test"]["test/acc"] < 0.3
