"""Init: the distribution matters little, the scale a lot — measured two ways.

1. At initialization (no training): per-layer activation and gradient variance of deep
   square MLPs (``signal.signal_propagation``) for every activation × scheme × distribution ×
   scale, checked against He et al. 2015 (ReLU) and Glorot & Bengio 2010 (tanh).
2. After a fixed training budget: the final training loss of the ``experiment=init_sweep``
   runs (``train(compose(...))``), one folder per run named like Hydra's multirun names it, so
   ``neuronlab-train -m experiment=init_sweep`` and this driver fill (and skip) the same runs.

The runs' configs are composed by the ``compose`` the caller passes in
(``neuronlab.config.compose``): the configuration layer sits above the experiments.

    neuronlab-init-sweep --out multirun/init_sweep      # neuronlab.cli.init_sweep
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .callbacks import FIT_METRICS_FILE
from .init_results import Cell, Claim, InitSweep
from .parallel import map_jobs
from .signal import Signal, signal_propagation

EXPERIMENT = "init_sweep"
DEPTH = {"relu": 20, "tanh": 10}  # the depths the claims are stated for
FINAL = "train/loss_epoch"
Compose = Callable[[list[str]], Any]  # Hydra overrides → a run config, as config.compose


def sweep_params(experiment: str = EXPERIMENT) -> dict[str, str]:
    """``hydra.sweeper.params`` of ``conf/experiment/<experiment>.yaml``: key → "a,b,c"."""
    from omegaconf import OmegaConf

    from ..paths import config_dir

    cfg = OmegaConf.load(config_dir() / "experiment" / f"{experiment}.yaml")
    return {str(k): str(v) for k, v in cfg.hydra.sweeper.params.items()}


def job_overrides(params: dict[str, str], extra: list[str] | None = None) -> list[list[str]]:
    """Every job's overrides, as Hydra's basic sweeper makes them (the command line's ``extra``
    replaces a swept key of the same name)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [f"{key}={values}" for key, values in params.items()] + list(extra or [])
    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        if override.is_sweep_override():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*choices.values())]


def run_name(overrides: list[str]) -> str:
    """Hydra's ``override_dirname`` (sorted ``key=value``, joined by ``,``)."""
    return ",".join(sorted(overrides))


def swept_values(params: dict[str, str], key: str) -> list[Any]:
    """The values ``params`` sweeps ``key`` over, parsed as YAML (``"0.1,1"`` → [0.1, 1])."""
    import yaml

    return [yaml.safe_load(v) for v in params[key].split(",")]


def run_signals(params: dict[str, str], width: int = 256, batch: int = 512,
                draws: int = 3) -> list[Signal]:
    """Signal propagation at init over the sweep's activation × scheme × distribution × scale."""
    grid = itertools.product(*(swept_values(params, key) for key in (
        "model.activation", "init.scheme", "init.distribution", "init.scale")))
    return [signal_propagation(activation, scheme, distribution, float(scale),
                               depth=DEPTH.get(activation, 10), width=width, batch=batch,
                               draws=draws)
            for activation, scheme, distribution, scale in grid]


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_training(out_dir: str | Path, params: dict[str, str], compose: Compose,
                 extra: list[str] | None = None, threads: int | None = 1,
                 jobs: int = 1, setup: Callable[[], None] | None = None) -> list[Cell]:
    """Train every job of the grid (finished runs are skipped by ``train``) and collect the
    final training loss per cell; diverged and failed runs are counted, not averaged.

    Args:
        out_dir: the sweep folder; each job trains in ``out_dir / run_name(job)``.
        params: the swept keys (:func:`sweep_params`).
        compose: Hydra overrides → the run's config (``neuronlab.config.compose``).
        extra: overrides for every job (``trainer.max_epochs=3``; ``seed=0,1`` sweeps fewer).
        threads: torch threads while training (these networks are tiny: more threads only
            fight over the cores, up to 10× slower on a busy machine); ``None`` leaves it.
        jobs: runs at once, in joblib's worker processes (as ``hydra/launcher=joblib``);
            -1: one per core. Same seeds, same results as one at a time. ``setup`` runs
            first in each worker (the command line quiets Lightning there).
    """
    if "'" in str(Path(out_dir).resolve()):
        raise ValueError(f"out_dir={str(out_dir)!r}: a quote in the path cannot be passed to Hydra")
    grid = job_overrides(params, extra)
    run = [(Path(out_dir), job, compose, threads if jobs != 1 else None) for job in grid]
    with _threads(threads if jobs == 1 else None):
        results = map_jobs(_train_job, run, jobs, setup=setup)
    cells: dict[tuple, Cell] = {}
    for job, (status, loss) in zip(grid, results, strict=True):
        key = _cell_key(job)
        cell = cells.setdefault(key, Cell(*key))
        cell.losses += [loss] if status == "ok" else []
        cell.diverged += status == "diverged"
        cell.failed += status not in ("ok", "diverged")
    return list(cells.values())


def _train_job(out_dir: Path, job: list[str], compose: Compose,
               threads: int | None = None) -> tuple[str, float]:
    """One run of the grid (``threads``: a worker's torch threads): status, final loss."""
    from ..training.run import train

    if threads:
        import torch

        torch.set_num_threads(threads)
    run_dir = out_dir / run_name(job)
    # quoted: a Hydra-style folder name holds '=' and ','
    record = train(compose([f"experiment={EXPERIMENT}", *job,
                            f"paths.output_dir='{run_dir.resolve()}'"]))
    if record["status"] != "ok":
        return record["status"], math.nan
    return "ok", float(json.loads((run_dir / FIT_METRICS_FILE).read_text())[FINAL])


def _cell_key(job: list[str]) -> tuple[str, str, str, float]:
    import yaml

    chosen = {key: yaml.safe_load(value)
              for key, value in (override.split("=", 1) for override in job)}
    return (str(chosen["model.activation"]), str(chosen["init.scheme"]),
            str(chosen["init.distribution"]), float(chosen["init.scale"]))


def check_claims(signals: list[Signal], cells: list[Cell]) -> list[Claim]:
    """The numbers behind the text's init claims (see ``docs/experiments.md``)."""
    sweep = InitSweep(signals, cells, [], {})
    claims = []
    lecun = sweep.signal("relu", "lecun")
    depth = len(lecun.act_var)
    per_layer = float(np.exp(np.mean(np.log(lecun.act_var[1:] / lecun.act_var[:-1]))))
    claims.append(Claim(f"ReLU LeCun, {depth} layers: Var(h) kept per layer", per_layer,
                        "≈ 0.5 (0.45–0.55)", 0.45 <= per_layer <= 0.55))
    expected = 2.0 ** -(depth - 1)
    claims.append(Claim(f"ReLU LeCun: Var(h_{depth})/Var(h_1) ÷ 2^-{depth - 1}",
                        lecun.act_ratio / expected, "within ×2 (0.5–2)",
                        0.5 <= lecun.act_ratio / expected <= 2))
    kaiming = sweep.signal("relu", "kaiming")
    spread = float(np.max(np.abs(np.log2(kaiming.act_var / kaiming.act_var[0]))))
    claims.append(Claim(f"ReLU Kaiming: max_l |log2 Var(h_l)/Var(h_1)| over {depth} layers",
                        spread, "≤ 1 (within ×2 of flat)", spread <= 1))
    for scale, expected, test in ((1.0, "within ×20 (1/20–20)", lambda r: 1 / 20 <= r <= 20),
                                  (0.5, "< 1e-3 (vanishes)", lambda r: r < 1e-3),
                                  (10.0, "> 1e3 (explodes)", lambda r: r > 1e3)):
        tanh = sweep.signal("tanh", "xavier", scale=scale)
        claims.append(Claim(f"tanh Xavier ×{scale:g}, {len(tanh.grad_var)} layers: "
                            "Var(∂L/∂z_1)/Var(∂L/∂z_L)", tanh.grad_ratio, expected,
                            bool(test(tanh.grad_ratio))))
    if not cells:
        return claims
    gap, spread = distribution_gap(cells)
    claims.append(Claim("mean |loss_normal − loss_uniform| × 3 ÷ mean range over scales",
                        3 * gap / spread if spread else math.inf, "≤ 1",
                        bool(spread) and 3 * gap <= spread))
    return claims


def distribution_gap(cells: list[Cell]) -> tuple[float, float]:
    """(mean over (activation, scheme, scale) of |mean loss normal − mean loss uniform|,
    mean over (activation, scheme, distribution) of max − min over scales of the mean loss),
    both from cells whose seeds all finished ok."""
    by_key = {(c.activation, c.scheme, c.distribution, c.scale): c for c in cells if c.clean}
    gaps = [abs(by_key[(activation, scheme, "normal", scale)].mean
                - by_key[(activation, scheme, "uniform", scale)].mean)
            for (activation, scheme, distribution, scale) in by_key
            if distribution == "normal" and (activation, scheme, "uniform", scale) in by_key]
    means_over_scales: dict[tuple[str, str, str], list[float]] = {}
    for (activation, scheme, distribution, _), cell in by_key.items():
        means_over_scales.setdefault((activation, scheme, distribution), []).append(cell.mean)
    ranges = [max(means) - min(means) for means in means_over_scales.values() if len(means) > 1]
    return (float(np.mean(gaps)) if gaps else math.nan,
            float(np.mean(ranges)) if ranges else math.nan)


def run_init_sweep(out_dir: str | Path, compose: Compose, extra: list[str] | None = None,
                   width: int = 256, batch: int = 512, draws: int = 3,
                   train: bool = True, jobs: int = 1,
                   setup: Callable[[], None] | None = None) -> InitSweep:
    """Both parts, the claims checked, ``init_sweep.json`` and the two pictures written into
    ``out_dir``. ``compose``: overrides → run config (``neuronlab.config.compose``);
    ``extra``: overrides for every training run (``trainer.max_epochs=3``, or ``seed=0,1`` to
    sweep fewer seeds); ``train=False`` measures at init only; ``jobs``: training runs at
    once (joblib's processes), ``setup`` run first in each."""
    import time

    from .init_plots import plot_final_loss, plot_signals

    out_dir = Path(out_dir)
    params = sweep_params()
    start = time.perf_counter()
    signals = run_signals(params, width=width, batch=batch, draws=draws)
    signals_done = time.perf_counter()
    cells = run_training(out_dir, params, compose, extra, jobs=jobs,
                         setup=setup) if train else []
    training_done = time.perf_counter()
    result = InitSweep(signals, cells, check_claims(signals, cells),
                       {"signal": round(signals_done - start, 1),
                        "training": round(training_done - signals_done, 1)})
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_signals(result, out_dir / "init_signal.png")
    if cells:
        plot_final_loss(result, out_dir / "init_final_loss.png")
    summary = {"claims": [asdict(c) for c in result.claims], "seconds": result.seconds,
               "cells": [{**asdict(c), "mean": c.mean} for c in cells],
               "signals": [{"activation": signal.activation, "scheme": signal.scheme,
                            "distribution": signal.distribution, "scale": signal.scale,
                            "act_var": signal.act_var.tolist(),
                            "grad_var": signal.grad_var.tolist()}
                           for signal in signals]}
    (out_dir / "init_sweep.json").write_text(json.dumps(summary, indent=1) + "\n")
    return result


if __name__ == "__main__":  # the command moved to the entry layer: say where, do not run
    raise SystemExit("the init sweep's command is `neuronlab-init-sweep` (or `python -m "
                     "neuronlab.cli.init_sweep`), with the same options")
