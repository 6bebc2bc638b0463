# pytest tests/test_precision.py -m "slow or not slow"
"""Mixed precision with the hand-written backward: ``bf16-mixed`` (CPU and GPU) and
``16-mixed`` (GPU, with GradScaler) train where autograd trains, with the gradient audit on
and silent."""

from __future__ import annotations

import math

import pytest
import torch

from neuronlab.config import compose
from neuronlab.training.run import train

DIGITS = ["data=digits", "model=mlp", "optimizer.lr=0.1", "callbacks.progress_bar=null",
          "callbacks.gradient_audit.every_n_steps=10"]


def _pair(tmp_path, *overrides: str) -> dict[str, dict]:
    records = {}
    for backprop in ("manual", "autograd"):
        record = train(compose([*DIGITS, *overrides, f"model.backprop={backprop}"],
                               output_dir=tmp_path / backprop))
        assert record["status"] == "ok", record["message"]  # the audit never fired
        records[backprop] = record["metrics"]
    return records


def _assert_lands_together(records: dict[str, dict]) -> None:
    manual, autograd = records["manual"], records["autograd"]
    assert math.isfinite(manual["test/loss"])
    assert abs(manual["test/loss"] - autograd["test/loss"]) < 0.05, records
    assert abs(manual["test/acc"] - autograd["test/acc"]) < 0.03, records
    assert manual["test/acc"] > 0.9


def test_bf16_mixed_on_cpu_trains_a_few_steps_with_the_audit_on(tmp_path):
    records = _pair(tmp_path, "trainer.precision=bf16-mixed", "trainer.max_steps=30",
                    "callbacks.gradient_audit.every_n_steps=5")
    assert all(math.isfinite(r["test/loss"]) for r in records.values())


@pytest.mark.slow
def test_bf16_mixed_on_cpu_lands_where_autograd_lands(tmp_path):
    _assert_lands_together(_pair(tmp_path, "trainer.precision=bf16-mixed"))


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "32-true"])
def test_mixed_precision_on_the_gpu_lands_where_autograd_lands(tmp_path, precision):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    _assert_lands_together(_pair(tmp_path, "trainer=gpu", f"trainer.precision={precision}"))
