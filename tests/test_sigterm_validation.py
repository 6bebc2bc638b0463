# pytest tests/test_sigterm_validation.py
"""A SIGTERM during validation keeps that epoch's val/* point after the resume (issue 16,
point 7): the validation under way finishes and is logged, then the run stops and saves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from neuronlab.config import compose
from neuronlab.training.run import train

COMMON = ["data=digits", "model=mlp", "callbacks.progress_bar=null", "torch_threads=1",
          "callbacks.gradient_flow=null", "callbacks.gradient_audit=null"]
EPOCHS = 4


def _points(run_dir: Path, tag: str) -> list[int]:
    steps = []
    for events in sorted((run_dir / "tb").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events.parent))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            steps = [e.step for e in acc.Scalars(tag)]
    return steps


@pytest.mark.slow
def test_sigterm_during_validation_keeps_that_epochs_val_point(tmp_path):
    run_dir = tmp_path / "run"
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"},
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "neuronlab.cli.train", *COMMON, f"trainer.max_epochs={EPOCHS}",
         "+callbacks.term._target_=term_in_validation.TermInValidation", "+callbacks.term.epoch=1",
         f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 130, proc.stdout[-2000:] + proc.stderr[-2000:]
    stored = json.loads((run_dir / "metrics.json").read_text())
    assert stored["status"] == "interrupted" and "SIGTERM" in stored["message"]
    resumed = train(compose([*COMMON, f"trainer.max_epochs={EPOCHS}", "ckpt_path=last"],
                            output_dir=run_dir))
    assert resumed["status"] == "ok"
    for tag in ("val/loss", "val/acc"):
        steps = _points(run_dir, tag)
        assert len(steps) == EPOCHS and steps == sorted(set(steps)), (tag, steps)
