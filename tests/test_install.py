# pytest tests/test_install.py -m "slow or not slow"
"""neuronlab installs like a package: the configs travel inside the wheel, the console
scripts run from any folder, and a bad ``NEURONLAB_CONFIG_DIR`` is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HYDRA_FULL_ERROR", "NEURONLAB_CONFIG_DIR", "PYTHONPATH")}
    return {**env, **extra}


def test_the_wheel_lists_every_package_under_src_and_the_configs():
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set(find_packages(ROOT / "src"))
    # hydra_plugins is a namespace package (no __init__.py; Hydra's plugins share it)
    found |= {f"hydra_plugins.{p}" for p in find_packages(ROOT / "src" / "hydra_plugins")}
    assert set(listed["packages"]) == found | {"neuronlab.conf"}, "update pyproject's packages"
    assert listed["package-dir"]["neuronlab.conf"] == "conf"


def test_a_bad_config_dir_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "neuronlab.cli.train"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env=_env(NEURONLAB_CONFIG_DIR=str(tmp_path / "nowhere")))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "NEURONLAB_CONFIG_DIR=" in lines[0] and "nowhere" in lines[0]


@pytest.mark.slow
def test_a_built_wheel_runs_from_another_folder(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-w", str(dist), str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("neuronlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.removeprefix("neuronlab/conf/") for n in names if n.startswith("neuronlab/conf/")}
    in_repo = {str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml")}
    assert shipped == in_repo

    site = tmp_path / "site"  # the wheel alone; its dependencies come from this interpreter
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
                    "--target", str(site), str(wheel)], check=True, capture_output=True,
                   timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(PYTHONPATH=str(site))
    where = subprocess.run([sys.executable, "-c", "import neuronlab; print(neuronlab.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(site))  # the wheel's copy, not the source tree
    proc = subprocess.run(
        [sys.executable, str(site / "bin" / "neuronlab-train"), "trainer.max_epochs=2",
         "callbacks.progress_bar=null"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (metrics,) = (elsewhere / "outputs").rglob("metrics.json")
    assert json.loads(metrics.read_text())["status"] == "ok"
    assert "test accuracy" in proc.stdout


def test_neuronlab_config_dir_overrides_the_shipped_configs(tmp_path, monkeypatch):
    import shutil

    from neuronlab.config import compose

    mine = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", mine)
    sgd = mine / "optimizer" / "sgd.yaml"
    sgd.write_text(sgd.read_text().replace("lr: 0.5", "lr: 0.25"))
    monkeypatch.setenv("NEURONLAB_CONFIG_DIR", str(mine))
    assert compose([]).optimizer.lr == 0.25
    monkeypatch.delenv("NEURONLAB_CONFIG_DIR")
    assert compose([]).optimizer.lr == 0.5
