# pytest tests/test_config_dir.py
"""The preflight sees what Hydra sees (issue 16, point 6): options added with `--config-dir`
or `hydra.searchpath` are accepted and checked; a missing folder is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronlab.config.preflight import preflight
from neuronlab.paths import config_dir


@pytest.fixture
def myconf(tmp_path: Path) -> Path:
    folder = tmp_path / "myconf" / "optimizer"
    folder.mkdir(parents=True)
    text = (config_dir() / "optimizer" / "sgd.yaml").read_text()
    (folder / "good.yaml").write_text(text.replace("lr: 0.5", "lr: 0.123"))
    (tmp_path / "myconf" / "mine").mkdir()
    (tmp_path / "myconf" / "mine" / "a.yaml").write_text("# @package _global_\nseed: 7\n")
    return tmp_path / "myconf"


@pytest.mark.parametrize("spell", ["--config-dir", "-cd", "--config-dir=", "searchpath"])
def test_an_option_of_an_added_config_dir_is_accepted(myconf, spell):
    if spell == "searchpath":
        args = [f"hydra.searchpath=[file://{myconf}]"]
    elif spell.endswith("="):
        args = [f"{spell}{myconf}"]
    else:
        args = [spell, str(myconf)]
    assert preflight([*args, "optimizer=good"]) is None
    assert preflight([*args, "+mine=a"]) is None
    # and its values are checked like the shipped ones
    assert "optimizer.lr" in (preflight([*args, "optimizer=good", "optimizer.lr=-1"]) or "")
    problem = preflight([*args, "optimizer=goodd"]) or ""
    assert "good" in problem and "did you mean 'good'" in problem


def test_without_the_folder_the_option_is_still_unknown(myconf):
    assert "optimizer='good' is not one of" in (preflight(["optimizer=good"]) or "")


@pytest.mark.parametrize("args", [["--config-dir", "nope"], ["hydra.searchpath=[file://nope]"]])
def test_a_missing_config_dir_is_one_clear_line(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problem = preflight([*args, "optimizer=good"])
    assert problem is not None and "\n" not in problem
    assert "nope" in problem and ("no such folder" in problem or "not a folder" in problem)


@pytest.mark.slow
def test_neuronlab_train_runs_with_an_added_config_dir(myconf, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(
        [sys.executable, "-m", "neuronlab.cli.train", "--config-dir", str(myconf),
         "optimizer=good", "trainer.max_epochs=1", "callbacks.progress_bar=null",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lr: 0.123" in (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    missing = subprocess.run(
        [sys.executable, "-m", "neuronlab.cli.train", "--config-dir", "nope", "optimizer=good"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
