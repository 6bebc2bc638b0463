# pytest tests/test_sweeps.py            (fast: the preflight's checks)
# pytest -m slow tests/test_sweeps.py    (joblib, submitit_local and Optuna end to end)
"""Sweeps that outgrow one process: Hydra's joblib and submitit launchers and the resumable
Optuna search (``hparams_search=lr_init``), run as a user runs them (``neuronlab-train`` in a
subprocess), on tiny runs. The plugins come with the ``sweep`` extra (in ``dev``); a test whose
plugin is absent is skipped."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronlab.cli import train as train_cli
from neuronlab.config import sweeps
from neuronlab.config.preflight import preflight

TINY = ["data=moons", "model=mlp", "model.hidden=[8]", "trainer.max_epochs=2",
        "callbacks.progress_bar=null"]


def _plugin(name: str) -> bool:
    return importlib.util.find_spec(f"hydra_plugins.{name}") is not None


needs_joblib = pytest.mark.skipif(not _plugin("hydra_joblib_launcher"),
                                  reason="hydra-joblib-launcher absent (pip install -e '.[sweep]')")
needs_submitit = pytest.mark.skipif(not _plugin("hydra_submitit_launcher"),
                                    reason="hydra-submitit-launcher absent")
needs_optuna = pytest.mark.skipif(not _plugin("hydra_optuna_sweeper"),
                                  reason="hydra-optuna-sweeper absent")


def neuronlab_train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "neuronlab.cli.train", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def runs(sweep_dir: Path) -> dict[str, dict]:
    """Each run folder's metrics.json, by folder name."""
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")}


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder``: relative path → SHA-256 (to prove none changed)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the preflight (fast) ---------------------------------------------------------------

@pytest.mark.parametrize("argv, module", [
    (["-m", "hydra/launcher=joblib", "seed=0,1"], "hydra_joblib_launcher"),
    (["-m", "hydra/launcher=submitit_slurm", "seed=0,1"], "hydra_submitit_launcher"),
    (["hparams_search=lr_init"], "hydra_optuna_sweeper"),
])
def test_a_missing_plugin_is_one_line_naming_the_extra_exit_2(monkeypatch, capsys, argv, module):
    real = sweeps._has_module
    monkeypatch.setattr(sweeps, "_has_module", lambda name: name != module and real(name))
    monkeypatch.setattr(sys, "argv", ["neuronlab-train", *argv])
    with pytest.raises(SystemExit) as exit_:
        train_cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert 'pip install -e ".[sweep]"' in err and module.replace("_", "-") in err, err
    assert "Could not find" not in err


def test_an_unknown_launcher_is_named_with_the_options():
    problem = preflight(["-m", "hydra/launcher=jobib", "seed=0,1"])
    assert problem is not None and "'jobib'" in problem
    assert "joblib" in problem and "submitit_slurm" in problem


@needs_optuna
def test_sqlalchemy_2_is_refused_for_the_study(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "2.0.30" if name == "sqlalchemy" else real(name))
    problem = preflight(["hparams_search=lr_init"])
    assert problem is not None and "SQLAlchemy<2" in problem and ".[sweep]" in problem


@pytest.mark.slow  # a process start or a compile: seconds
@needs_joblib
@needs_submitit
@needs_optuna
def test_the_preflight_accepts_the_sweep_groups():
    assert preflight(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                      "optimizer.lr=0.1,1"]) is None
    assert preflight(["-m", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                      "seed=0,1"]) is None
    assert preflight(["hparams_search=lr_init", *TINY]) is None
    assert preflight(["hparams_search=lr_init", "hydra/launcher=joblib",
                      "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4"]) is None


@needs_joblib
def test_the_preflight_still_validates_a_parallel_sweeps_values():
    problem = preflight(["-m", "hydra/launcher=joblib", "optimizer.lr=0.1,-1"])
    assert problem is not None and "optimizer.lr=-1" in problem and "no job was run" in problem


@needs_optuna
@pytest.mark.parametrize("override, key", [
    ("hydra.sweeper.params.optimizer.lr=tag(log, interval(-1, 1))", "optimizer.lr"),
    ("hydra.sweeper.params.init.scale=interval(0, 2)", "init.scale"),
    ("init.scale=choice(1, 0)", "init.scale"),  # a sweep on a search's command line
    ("hydra.sweeper.params.model.activation=choice(relu, swish)", "model.activation"),
])
def test_a_search_range_is_validated_at_both_ends(override, key):
    problem = preflight(["hparams_search=lr_init", override])
    assert problem is not None and problem.startswith(key), problem
    assert "no trial was run" in problem


def test_a_continued_study_gets_another_seed_and_display_keys_do_not_matter():
    from neuronlab.cli.search import continued_seed, task_overrides

    seeds = {continued_seed(0, done) for done in range(0, 50, 5)}
    assert len(seeds) == 10 and continued_seed(0, 3) == continued_seed(0, 3)
    assert task_overrides(["model=mlp", "callbacks.progress_bar=null", "data=moons"]) == \
        ["data=moons", "model=mlp"]


# --- end to end (slow) -------------------------------------------------------------------

@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> dict[str, dict]:
    """The reference: the same sweep with Hydra's basic (sequential) launcher."""
    out = tmp_path_factory.mktemp("sequential")
    proc = neuronlab_train(out, "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={out / 'sweep'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return runs(out / "sweep")


def _same_metrics(got: dict[str, dict], want: dict[str, dict]) -> None:
    for name, record in want.items():
        assert got[name]["status"] == "ok", got[name]
        for key in ("val/loss", "test/acc", "test/loss", "train/loss_epoch"):
            assert got[name]["metrics"][key] == pytest.approx(record["metrics"][key],
                                                              rel=1e-6, abs=0), (name, key)


@pytest.mark.slow
@needs_joblib
def test_joblib_gives_the_sequential_metrics_with_threads_within_the_cores(tmp_path, sequential):
    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("two jobs in parallel need two cores")
    # a second, larger job: torch_threads null leaves torch's default (all cores) to it
    proc = neuronlab_train(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                           *TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same_metrics(runs(tmp_path / "sweep"), sequential)
    big = neuronlab_train(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                          *TINY, "model.hidden=[1024,1024]", "data.batch_size=256",
                          "trainer.max_epochs=1", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'big'}")
    assert big.returncode == 0, big.stderr[-3000:]
    threads = [r["torch_threads"] for r in runs(tmp_path / "big").values()]
    assert len(threads) == 2 and all(2 * t <= cores for t in threads), (threads, cores)


@pytest.mark.slow
@needs_submitit
def test_submitit_local_runs_a_two_run_sweep(tmp_path, sequential):
    proc = neuronlab_train(tmp_path, "-m", "hydra/launcher=submitit_local",
                           "hydra.launcher.timeout_min=10", *TINY, "seed=0,1",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "sweep" / ".submitit").is_dir()
    _same_metrics(runs(tmp_path / "sweep"), sequential)


@pytest.mark.slow
@needs_optuna
@needs_joblib
def test_a_search_continues_its_study_and_tensorboard_lists_every_trial(tmp_path):
    import optuna
    from test_tensorboard import Served

    sweep = tmp_path / "search"
    command = ["hparams_search=lr_init", *TINY, "trainer.max_epochs=1",
               f"hydra.sweep.dir={sweep}"]
    first = neuronlab_train(tmp_path, *command, "hydra.sweeper.n_trials=3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "best of 3 trials" in first.stdout
    assert sorted(runs(sweep)) == ["trial_0", "trial_1", "trial_2"]
    before = {name: fingerprint(sweep / name) for name in runs(sweep)}
    # the same command again, 2 more trials at a time through joblib
    again = neuronlab_train(tmp_path, *command, "hydra.sweeper.n_trials=2",
                            "hydra/launcher=joblib", "hydra.sweeper.n_jobs=2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(runs(sweep)) == [f"trial_{i}" for i in range(5)]
    for name, files in before.items():  # the earlier trials' folders are untouched
        assert fingerprint(sweep / name) == files, name
    study = optuna.load_study(study_name="lr_init", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert len(study.trials) == 5
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(points)) == 5, points  # no start-up point proposed again
    for trial in study.trials:  # folder trial_<n> is Optuna's trial n, its value the run's
        record = runs(sweep)[f"trial_{trial.number}"]
        assert trial.value == pytest.approx(record["metrics"]["val/loss"], rel=1e-6)
        assert record["config"]["optimizer"]["lr"] == pytest.approx(trial.params["optimizer.lr"])
    best = min(study.trials, key=lambda t: t.value)
    assert f"best of 5 trials: trial {best.number} " in again.stdout
    # another task into the same study is refused in one line
    other = neuronlab_train(tmp_path, *(a.replace("=moons", "=circles") for a in command),
                            "hydra.sweeper.n_trials=1")
    assert other.returncode == 2 and "another hydra.sweep.dir" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1, other.stderr
    served = Served(sweep)
    try:
        served.wait_for_runs(5)
        groups = served.post("/data/plugin/hparams/session_groups", {
            "startIndex": 0, "sliceSize": 10, "allowedStatuses": [
                "STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            "colParams": [{"hparam": "optimizer.lr"}, {"hparam": "init.scale"},
                          {"metric": {"tag": "val/loss"}}],
        })["sessionGroups"]
        assert len(groups) == 5
        shown = sorted((g["hparams"]["optimizer.lr"], g["hparams"]["init.scale"]) for g in groups)
        stored = sorted((t.params["optimizer.lr"], t.params["init.scale"]) for t in study.trials)
        assert [v for pair in shown for v in pair] == pytest.approx(
            [v for pair in stored for v in pair])
        for g in groups:
            (metric,) = [m for m in g["metricValues"] if m["name"]["tag"] == "val/loss"]
            assert metric["value"] > 0
    finally:
        served.stop()


@pytest.mark.slow  # starts joblib worker processes
def test_map_jobs_runs_in_worker_processes_in_order():
    from neuronlab.experiments.parallel import map_jobs

    assert map_jobs(pow, [(2, 3), (3, 2), (5, 1)], jobs=2) == [8, 9, 5]
    pids = map_jobs(os.getpid, [()] * 2, jobs=2)
    assert os.getpid() not in pids
    assert map_jobs(os.getpid, [()], jobs=1) == [os.getpid()]
    with pytest.raises(ValueError, match="jobs=0"):
        map_jobs(pow, [(1, 1)], jobs=0)


@pytest.mark.slow
def test_the_init_sweep_in_two_processes_gives_the_same_cells(tmp_path):
    from neuronlab.cli.train import quiet_lightning
    from neuronlab.config import compose
    from neuronlab.experiments.init_sweep import run_training, sweep_params

    extra = ["seed=0,1", "init.scale=1", "model.activation=relu", "init.scheme=kaiming",
             "init.distribution=normal", "trainer.max_epochs=1"]
    one = run_training(tmp_path / "one", sweep_params(), compose, extra)
    two = run_training(tmp_path / "two", sweep_params(), compose, extra, jobs=2,
                       setup=quiet_lightning)
    assert len(one) == len(two) == 1 and len(one[0].losses) == 2
    assert two[0].losses == pytest.approx(one[0].losses, rel=1e-6, abs=0)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one").iterdir())


def test_train_returns_the_named_metric_and_the_worst_value_for_a_diverged_run(capsys):
    ok = {"status": "ok", "metrics": {"val/loss": 0.25, "val/acc": 0.9}}
    assert train_cli.objective(ok) == 0.25
    assert train_cli.objective(ok, "val/acc") == 0.9
    assert train_cli.objective({"status": "diverged", "metrics": {"val/loss": 0.5}}) == math.inf
    assert train_cli.objective({"status": "ok", "metrics": {"val/loss": math.nan}}) == math.inf
    with pytest.raises(SystemExit) as exit_:
        train_cli.objective(ok, "val/los")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "optimized_metric='val/los'" in err and "val/acc, val/loss" in err
    # no search asked for it: a run that never validated (fewer epochs than
    # check_val_every_n_epoch) has no objective, and that is no error
    assert train_cli.objective({"status": "ok", "metrics": {"test/acc": 0.9}},
                               required=False) is None
