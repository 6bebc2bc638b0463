"""A resumable Optuna search: Hydra's Optuna sweeper, with the study continued in its folder.

``conf/hparams_search/*.yaml`` name ``hydra_plugins.neuronlab_search.resumable_optuna.
ResumableOptunaSweeper`` as ``hydra.sweeper._target_`` (Hydra takes sweepers only from the
``hydra_plugins`` namespace); it calls :func:`continue_study`. Running the same
search command with the same ``hydra.sweep.dir`` again adds ``hydra.sweeper.n_trials`` trials
to the study stored there (``optuna.db``) and reports the best over all of them. Two things
the plugin alone gets wrong on a continued study are decided here:

- the sampler's seed is mixed with the number of trials already stored
  (:func:`continued_seed`), so a seeded sampler does not propose its first (random start-up)
  points again;
- Hydra numbers the jobs of each invocation from 0; here they continue from the number of
  trials already stored, so ``hydra.job.num`` is the Optuna trial number and the run folders
  (``trial_${hydra.job.num}``) of earlier trials are never reused.

A study remembers the command-line overrides it was started with; continuing it with others
(another data set, another model) is refused in one line, exit 2: its trials would not be
comparable.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
SQLITE = "sqlite:///"
OVERRIDES_ATTR = "neuronlab_overrides"


def sqlite_path(storage: Any) -> Path | None:
    """The file of a ``sqlite:///<path>`` storage URL, else ``None``."""
    if isinstance(storage, str) and storage.startswith(SQLITE):
        return Path(storage[len(SQLITE):])
    return None


def stored_trials(storage: Any, study_name: str | None) -> tuple[int, list[str] | None]:
    """(trials already in the stored study, the overrides it was started with), or (0, None)
    when the storage holds no such study."""
    import optuna

    if storage is None or study_name is None:
        return 0, None
    path = sqlite_path(storage)
    if path is not None and not path.exists():
        return 0, None
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # optuna 2.x: no study of that name in the storage
        return 0, None
    return len(study.trials), study.user_attrs.get(OVERRIDES_ATTR)


# overrides that change how a run is shown, not what it computes
COSMETIC = ("callbacks.progress_bar", "trainer.enable_progress_bar", "torch_threads")


def task_overrides(arguments: list[str]) -> list[str]:
    """The overrides that define a search's task (sorted; display-only keys left out)."""
    return sorted(a for a in arguments if a.split("=", 1)[0].lstrip("+~") not in COSMETIC)


def continued_seed(seed: int, done: int) -> int:
    """The sampler seed for a study continued after ``done`` trials: ``seed`` and ``done``
    mixed by NumPy's ``SeedSequence`` (``seed + done`` is not enough: RandomState(0) and
    RandomState(3) draw 0.549, 0.715 and 0.551, 0.708 first — the same points, nearly)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, done]).generate_state(1)[0])


def continue_study(impl: Any, config: DictConfig, arguments: list[str]) -> None:
    """Run ``impl`` (the plugin's ``OptunaSweeperImpl``) as a continuation of the study in its
    storage: sampler seed and job numbers offset by the trials stored (module doc), the
    overrides checked against the study's, then the best trial over all printed."""
    path = sqlite_path(impl.storage)
    if path is not None:  # SQLite creates the file, not its folder
        path.parent.mkdir(parents=True, exist_ok=True)
    done, started_with = stored_trials(impl.storage, impl.study_name)
    task = task_overrides(arguments)
    if started_with is not None and started_with != task:
        print(f"neuronlab-train: error: the study {impl.study_name!r} in {path or impl.storage} "
              f"was started with the overrides {' '.join(started_with) or '(none)'}, not "
              f"{' '.join(task) or '(none)'}: its trials would not be comparable; give this "
              "search another hydra.sweep.dir", file=sys.stderr)
        sys.exit(2)
    sampler_cfg = config.hydra.sweeper.get("sampler")
    if done and sampler_cfg is not None and sampler_cfg.get("seed") is not None:
        # a seeded sampler would propose its start-up points again
        impl.sampler = instantiate(sampler_cfg, seed=continued_seed(int(sampler_cfg.seed), done))
    impl.job_idx = done  # hydra.job.num = the Optuna trial number
    if done:
        log.info(f"Continuing the study {impl.study_name!r}: {done} trials stored")
    impl.sweep(arguments)
    if impl.storage is not None:
        _remember(impl, task)
    print_best(impl, config, done)


def _remember(impl: Any, task: list[str]) -> None:
    import optuna

    study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
    if OVERRIDES_ATTR not in study.user_attrs:
        study.set_user_attr(OVERRIDES_ATTR, task)


def print_best(impl: Any, config: DictConfig, before: int = 0) -> None:
    """One line for the best trial over the whole study: number, folder, values, objective."""
    results = Path(config.hydra.sweep.dir) / "optimization_results.yaml"
    if not results.is_file():
        return
    best = OmegaConf.load(results)
    total, number = before + impl.n_trials, None
    if impl.storage is not None:
        import optuna

        study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
        total, number = len(study.trials), study.best_trial.number
    values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in best.best_params.items())
    where = ""
    if number is not None:
        sweep = OmegaConf.to_container(config.hydra.sweep, resolve=False)
        subdir = str(sweep.get("subdir", "")).replace("${hydra.job.num}", str(number))
        folder = Path(config.hydra.sweep.dir) / subdir if "${" not in subdir else None
        where = f"trial {number}" + (f" ({folder})" if folder else "") + ": "
    trials = f"{total} trial" + ("s" if total != 1 else "")
    print(f"best of {trials}: {where}{values}; objective {best.best_value:.6g}",
          file=sys.stdout, flush=True)
