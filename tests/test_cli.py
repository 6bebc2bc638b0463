# pytest tests/test_cli.py
"""neuronlab-train as a user runs it: exit codes, one-line errors, what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronlab.cli.train import report
from neuronlab.config.preflight import preflight

FAST = ["trainer.max_epochs=2", "callbacks.progress_bar=null"]


def neuronlab_train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "neuronlab.cli.train", *args, f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )


@pytest.mark.slow  # a whole neuronlab-train process (~6 s)
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
    ("dta=moons", "dta=moons is not a config group or key (did you mean data?)"),
    ("optimizer.lrr=1", "(did you mean optimizer.lr?)"),
    ("test_ckpt=first", "test_ckpt='first' is not one of: best, last"),
    # a key of another option of the group: say which (``+model.pool`` would only be refused)
    ("model.pool=max", "model.pool=max: this model has no pool; it is a key of model=cnn"),
    # a key of a callback this config switches off: turn it on whole, with its _target_
    ("callbacks.gradient_audit.every_n_steps=50",
     "callbacks.gradient_audit is off (null) in this config; turn it on whole with "
     "'callbacks.gradient_audit={_target_:neuronlab.training.GradientAudit,every_n_steps:50}'"),
]
EXTRA = {"model.hidden": ["model=mlp"], "model.pool": ["model=mlp"],
         "callbacks.gradient_audit": ["experiment=mnist1d_cnn"]}


@pytest.mark.parametrize("override,expected", BAD)
def test_preflight_names_the_problem_on_one_line(override, expected):
    extra = next((v for k, v in EXTRA.items() if override.startswith(k)), [])
    problem = preflight([*extra, override])
    assert problem is not None and expected in problem and "\n" not in problem, problem


def test_a_bad_value_ends_with_one_line_exit_2_and_no_folder(tmp_path):
    proc = neuronlab_train(tmp_path, "init.scheme=xavir")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "init.scheme='xavir' is not one of" in lines[0] and "did you mean 'xavier'" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # no folder left that looks like a run


def test_preflight_does_not_import_lightning():
    code = ("import sys; from neuronlab.config.preflight import preflight; "
            "assert preflight(['optimizer.lr=-1']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]"


def _record(tmp_path: Path, **extra) -> dict:
    (tmp_path / "metrics.json").write_text("{}")
    return {"status": "ok", "message": None, "steps": 10, "seconds": 0.5, "run_dir": str(tmp_path),
            "metrics": {"test/acc": 0.9, "test/loss": 0.3}, "feature_weights": None, **extra}


def test_the_summary_names_only_what_the_run_folder_holds(tmp_path, capsys):
    report(_record(tmp_path, tested_on="the final weights (no best-by-val/loss checkpoint)"))
    out = capsys.readouterr().out
    assert "checkpoints/" not in out and "tb/" not in out and "tensorboard" not in out
    assert "tested on the final weights" in out
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "tb").mkdir()
    report(_record(tmp_path))
    out = capsys.readouterr().out
    assert "checkpoints/" in out and f"tensorboard --logdir {tmp_path}" in out


def test_a_resume_command_is_printed_on_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    command = ("neuronlab-train data=moons model=mlp trainer.max_epochs=100 "
               f"hydra.run.dir={tmp_path} ckpt_path=last")
    report(_record(tmp_path, status="interrupted",
                   message=f"interrupted (SIGINT) at step 7; resume with: {command}"))
    lines = capsys.readouterr().out.splitlines()
    assert any(line.endswith(command) for line in lines), lines


def test_the_neuron_table_reads_the_data_sets_own_classes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    report(_record(tmp_path, feature_weights={"x0": 2.0, "x1": -1.9},
                   class_names=["benign", "malignant"]))
    out = capsys.readouterr().out
    assert "malignant" in out and "cat" not in out
