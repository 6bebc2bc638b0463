# pytest tests/test_run_folder.py
"""A finished run folder never changes (issue 16, point 3): another config into it is refused
in one line, and the same config again is skipped without touching a file, `.hydra/` included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FAST = ["trainer.max_epochs=1", "callbacks.progress_bar=null"]


def train_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "neuronlab.cli.train", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # two real neuronlab-train processes
def test_another_config_into_a_finished_folder_is_refused_and_nothing_changes(tmp_path):
    run = tmp_path / "run"
    first = train_cli(tmp_path, *FAST, "data=moons", f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-2000:]
    before = snapshot(run)
    other = train_cli(tmp_path, *FAST, "data=moons", "trainer.max_epochs=3",
                      f"hydra.run.dir={run}")
    assert other.returncode == 2, other.stdout + other.stderr
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1, other.stderr
    assert "trainer.max_epochs" in lines[0] and "ckpt_path=last" in lines[0]
    assert "new folder" in lines[0]
    assert snapshot(run) == before


@pytest.mark.slow  # two real neuronlab-train processes
def test_the_same_config_again_is_skipped_and_touches_nothing(tmp_path):
    run = tmp_path / "run"
    first = train_cli(tmp_path, *FAST, f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-2000:]
    before = snapshot(run)
    again = train_cli(tmp_path, *FAST, f"hydra.run.dir={run}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already finished, skipped" in again.stdout
    assert snapshot(run) == before


@pytest.mark.slow
def test_a_rerun_sweep_skips_its_finished_runs_and_touches_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, "optimizer.lr=0.1,0.5", f"hydra.sweep.dir={sweep}"]
    first = train_cli(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-2000:]
    runs = [p for p in sweep.iterdir() if p.is_dir()]
    assert len(runs) == 2
    before = {p.name: snapshot(p) for p in runs}
    again = train_cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already finished, skipped") == 2
    assert {p.name: snapshot(p) for p in runs} == before


@pytest.mark.slow
def test_ckpt_path_last_trains_on_in_a_finished_folder(tmp_path):
    run = tmp_path / "run"
    assert train_cli(tmp_path, *FAST, f"hydra.run.dir={run}").returncode == 0
    more = train_cli(tmp_path, "trainer.max_epochs=2", "callbacks.progress_bar=null",
                     "ckpt_path=last", f"hydra.run.dir={run}")
    assert more.returncode == 0, more.stderr[-2000:]
    assert "max_epochs: 2" in (run / ".hydra" / "config.yaml").read_text()


@pytest.mark.slow  # a process start or a compile: seconds
def test_the_resolvers_are_registered_on_import_for_launcher_workers():
    """A launcher's worker process (joblib, submitit) unpickles the task function, importing
    neuronlab.cli.train, and resolves conf/hydra/default.yaml there: no main() ran in it."""
    code = ("from omegaconf import OmegaConf; import neuronlab.cli.train; "
            "print(OmegaConf.has_resolver('neuronlab.config_subdir'), "
            "OmegaConf.has_resolver('neuronlab.log_file'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120).stdout
    assert out.split() == ["True", "True"]


def test_the_resolvers_keep_a_finished_folder_only(tmp_path):
    from neuronlab.training.records import write_metrics
    from neuronlab.training.run_folder import config_subdir, log_file

    assert config_subdir(str(tmp_path), None) == ".hydra"
    assert log_file(str(tmp_path), "train", None) == f"{tmp_path}/train.log"
    for status, kept in (("interrupted", False), ("failed", False), ("ok", True),
                         ("diverged", True)):
        write_metrics(tmp_path, {"status": status})
        assert (config_subdir(str(tmp_path), None) is None) is kept, status
        assert (log_file(str(tmp_path), "train", None) == os.devnull) is kept, status
        assert config_subdir(str(tmp_path), "last") == ".hydra"  # training on: rewritten
