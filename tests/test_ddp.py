# pytest tests/test_ddp.py -m slow
"""DDP over 2 CPU processes (gloo) gives the weights one process gives with the same global
batch: each rank takes half of every global batch and DDP averages the two gradients."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neuronlab.training.checkpoint import load_checkpoint

COMMON = ["data=moons", "model=mlp", "trainer.max_epochs=2", "data.batch_size=64",
          "callbacks.progress_bar=null", "optimizer.momentum=0.9"]


def _train(run_dir: Path, *extra: str) -> dict[str, torch.Tensor]:
    proc = subprocess.run(
        [sys.executable, "-m", "neuronlab.cli.train", *COMMON, *extra,
         f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("net.")}


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process(tmp_path):
    one = _train(tmp_path / "one", "trainer=cpu")
    two = _train(tmp_path / "two", "trainer=ddp", "trainer.devices=2")
    assert one.keys() == two.keys()
    for k in one:
        # the same math, summed in a different order: equal to float32 rounding
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
    # the epoch mean and the throughput count every process's rows, not rank 0's half
    rec = {n: json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two")}
    assert rec["two"]["metrics"]["train/loss_epoch"] == pytest.approx(
        rec["one"]["metrics"]["train/loss_epoch"], rel=1e-4)
    # rows = rate × seconds, with seconds rounded to 1 ms in metrics.json: a few % apart, not 2×
    rows = {n: r["train_samples_per_s"] * r["train_seconds"] for n, r in rec.items()}
    assert rows["two"] == pytest.approx(rows["one"], rel=0.05)
