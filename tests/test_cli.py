# pytest tests/test_cli.py
"""neuronlab-train as a user runs it: exit codes, one-line errors, what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAST = ["trainer.max_epochs=2", "callbacks.progress_bar=null"]


def neuronlab_train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "neuronlab.cli.train", *args, f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )


def test_default_run_prints_weights_accuracy_and_tensorboard(tmp_path):
    proc = neuronlab_train(tmp_path, *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "test accuracy:" in out
    for feature in ("tail", "two_eyes", "horn"):
        assert feature in out
    assert "tensorboard --logdir" in out
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert stored["status"] == "ok"


BAD = [
    ("optimizer.lr=-1", "optimizer.lr=-1"),
    ("init.scheme=xavir", "init.scheme='xavir' is not one of"),
    ("data=nope", "data='nope' is not one of"),
    ("model.hidden=[0]", "model.hidden[0]=0"),
    ("trainer.devices=0", "trainer.devices=0"),
    ("ckpt_path=/no/such.ckpt", "ckpt_path='/no/such.ckpt'"),
]


@pytest.mark.parametrize("override,expected", BAD)
def test_bad_values_end_with_one_line(tmp_path, override, expected):
    extra = ["model=mlp"] if override.startswith("model.hidden") else []
    proc = neuronlab_train(tmp_path, *extra, override)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run").exists()  # no folder left that looks like a run


def test_typo_gets_a_suggestion(tmp_path):
    proc = neuronlab_train(tmp_path, "init.scheme=xavir")
    assert "did you mean 'xavier'" in proc.stderr
