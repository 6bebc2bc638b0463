# pytest tests/test_small_trust.py
"""Issue 16, point 7: the smaller things that break a user's trust, one test each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronlab.config.preflight import preflight

ENV = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=300)


# ---- hydra.run.dir under a file -------------------------------------------------------------


@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir"])
def test_a_run_dir_under_a_file_is_one_line(key, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    problem = preflight([f"{key}={tmp_path / 'notes.txt' / 'run'}"])
    assert problem is not None and "\n" not in problem and "is a file" in problem


@pytest.mark.slow  # a process start or a compile: seconds
def test_neuronlab_train_into_a_file_exits_2_with_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    proc = _cli(tmp_path, "neuronlab.cli.train", "hydra.run.dir=notes.txt/run")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "notes.txt" in proc.stderr


# ---- trainer.precision=bf16 -------------------------------------------------------------------


@pytest.mark.parametrize("given, meant", [("bf16", "bf16-mixed"), ("bfloat16", "bf16-mixed")])
def test_precision_bf16_suggests_bf16_mixed(given, meant):
    problem = preflight([f"trainer.precision={given}"]) or ""
    assert f"did you mean '{meant}'" in problem and "\n" not in problem


# ---- --help ---------------------------------------------------------------------------------


COMMANDS = ["train", "check", "explain", "report", "lr_find", "init_sweep"]


@pytest.mark.slow  # a process start or a compile: seconds
@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_complete_and_points_to_nothing_the_wheel_lacks(command, tmp_path):
    proc = _cli(tmp_path, f"neuronlab.cli.{command}", "--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "README" not in text and "docs/architecture" not in text, text
    if command == "lr_find":  # the description used to stop mid-sentence ("…the Hydra")
        assert "overrides describe, with a suggestion read from the raw loss" in text
        assert "--min-lr" in text and "the first rate tried" in text


@pytest.mark.slow  # a process start or a compile: seconds
def test_train_help_names_the_installed_config_folder(tmp_path):
    text = _cli(tmp_path, "neuronlab.cli.train", "--help").stdout
    assert "config_dir()" in text


# ---- MNIST-1D says what it is doing ---------------------------------------------------------


def test_mnist1d_generation_says_so(monkeypatch, tmp_path, capsys):
    from neuronlab.data.mnist1d import make_mnist1d

    monkeypatch.setenv("NEURONLAB_CACHE_DIR", str(tmp_path))
    make_mnist1d(n_samples=500, seed=11)
    err = capsys.readouterr().err
    assert "mnist1d: generating 500 signals once" in err and "100%" in err
    make_mnist1d(n_samples=500, seed=11)  # cached: silent
    assert capsys.readouterr().err == ""


# ---- neuronlab-report on a plain lr sweep ---------------------------------------------------


def _fake_run(sweep: Path, lr: float, steps: list[int], losses: list[float]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    run = sweep / f"optimizer.lr={lr}"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={lr}\n")
    record = {"status": "ok", "message": None, "steps": steps[-1] + 1, "seconds": 0.1,
              "metrics": {"train/loss_epoch": losses[-1], "test/loss": losses[-1]}, "seed": 0,
              "config": {"optimizer": {"name": "sgd", "lr": lr}, "model": {"kind": "neuron"}}}
    (run / "metrics.json").write_text(json.dumps(record))
    writer = SummaryWriter(str(run / "tb"))
    for step, loss in zip(steps, losses, strict=True):
        writer.add_scalar("train/loss", loss, step)
    writer.add_scalar("train/loss_epoch", losses[-1], steps[-1])
    writer.close()


def test_lr_verdicts_read_the_real_step_axis(tmp_path):
    """A plain `-m optimizer.lr=0.01,0.1,1,3` sweep logs every 10 steps: lr 3's first point
    (after 9 updates) is already low. It has the lowest loss and must not be "partial"."""
    from neuronlab.experiments.report import build_report

    steps = [9, 19, 29, 39]
    _fake_run(tmp_path, 0.01, steps, [0.69, 0.68, 0.67, 0.66])
    _fake_run(tmp_path, 0.1, steps, [0.60, 0.50, 0.45, 0.40])
    _fake_run(tmp_path, 1.0, steps, [0.30, 0.20, 0.15, 0.12])
    _fake_run(tmp_path, 3.0, steps, [0.040, 0.035, 0.032, 0.030])
    report = build_report(tmp_path, write=True)
    verdicts = {float(row[0]): row[1] for row in report.rows}
    assert verdicts[3.0] == "converged" and verdicts[1.0] == "converged", verdicts
    assert verdicts[0.01] == "slow" and verdicts[0.1] == "partial", verdicts


def test_lr_verdicts_still_use_each_runs_own_init_loss_when_logged_every_step(tmp_path):
    from neuronlab.experiments.lr_sweep import read_lr_sweep

    _fake_run(tmp_path, 0.01, [0, 1, 2], [0.9, 0.89, 0.88])
    _fake_run(tmp_path, 1.0, [0, 1, 2], [0.7, 0.3, 0.1])
    sweep = read_lr_sweep(tmp_path)
    assert [r.initial for r in sweep.runs] == pytest.approx([0.9, 0.7])


def test_the_loss_curves_axis_names_the_real_first_step(tmp_path):
    from neuronlab.experiments.plots import loss_curves_figure
    from neuronlab.experiments.sweep import read_sweep

    _fake_run(tmp_path, 0.1, [9, 19], [0.6, 0.5])
    _fake_run(tmp_path, 1.0, [9, 19], [0.3, 0.2])
    fig = loss_curves_figure(read_sweep(tmp_path), ["optimizer.lr"])
    label = fig.axes[0].get_xlabel()
    assert "step 10" in label and "loss at init" in label and "step 1'" not in label


# ---- the end-of-sweep table -----------------------------------------------------------------


def test_the_sweep_table_folds_long_run_names_at_80_columns(tmp_path):
    from rich.console import Console

    from neuronlab.experiments.report import sweep_summary

    names = []
    for i, lr in enumerate([0.0123456789, 0.987654321, 3.14159265]):
        run = tmp_path / f"run{i}"
        (run / ".hydra").mkdir(parents=True)
        overrides = [f"optimizer.lr={lr}", f"model.hidden=[{64 * (i + 1)},{64 * (i + 1)}]"]
        names.extend(overrides)
        (run / ".hydra" / "overrides.yaml").write_text("".join(f"- '{o}'\n" for o in overrides))
        diverged = i == 2
        (run / "metrics.json").write_text(json.dumps(
            {"status": "diverged" if diverged else "ok", "steps": 10, "seconds": 0.1, "seed": 0,
             "message": ("diverged at step 54 (loss=1.3e+07 > callbacks.divergence.max_loss); "
                         f"lower optimizer.lr (now {lr})") if diverged else None,
             "metrics": {"val/loss": 0.5 - i * 0.1, "test/acc": 0.8, "test/loss": 0.5}}))
    console = Console(width=80, record=True)
    console.print(sweep_summary(tmp_path))
    text = console.export_text()
    assert "…" not in text, text
    column = "".join(line.split("│")[1].strip() for line in text.splitlines()
                     if line.count("│") >= 3)
    for name in names:
        assert name in column, (name, text)
