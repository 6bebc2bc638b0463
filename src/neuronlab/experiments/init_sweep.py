"""Init: the distribution matters little, the scale a lot — measured two ways.

1. At initialization (no training): per-layer activation and gradient variance of deep
   square MLPs (``signal.signal_propagation``) for every activation × scheme × distribution ×
   scale, checked against He et al. 2015 (ReLU) and Glorot & Bengio 2010 (tanh).
2. After a fixed training budget: the final training loss of the ``experiment=init_sweep``
   runs (``train(compose(...))``), one folder per run named like Hydra's multirun names it, so
   ``neuronlab-train -m experiment=init_sweep`` and this driver fill (and skip) the same runs.

    python -m neuronlab.experiments.init_sweep --out multirun/init_sweep
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .callbacks import FIT_METRICS_FILE
from .signal import Signal, signal_propagation

EXPERIMENT = "init_sweep"
DEPTH = {"relu": 20, "tanh": 10}  # the depths the claims are stated for
FINAL = "train/loss_epoch"


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

    lines = [f"{k}={v}" for k, v in params.items()] + list(extra or [])
    choices: dict[str, list[str]] = {}
    for o in OverridesParser.create().parse_overrides(lines):
        key = o.get_key_element()
        if o.is_sweep_override():
            choices[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*choices.values())]


def run_name(overrides: list[str]) -> str:
    """Hydra's ``override_dirname`` (sorted ``key=value``, joined by ``,``)."""
    return ",".join(sorted(overrides))


@dataclass
class Cell:
    """One (activation, scheme, distribution, scale) over its seeds."""

    activation: str
    scheme: str
    distribution: str
    scale: float
    losses: list[float] = field(default_factory=list)  # final train loss, runs that ended ok
    diverged: int = 0
    failed: int = 0

    @property
    def mean(self) -> float:
        return float(np.mean(self.losses)) if self.losses else math.nan

    @property
    def clean(self) -> bool:
        """Every seed finished ok (only such cells enter the averages)."""
        return bool(self.losses) and not (self.diverged or self.failed)


@dataclass
class Claim:
    name: str
    value: float
    expected: str
    holds: bool


@dataclass
class InitSweep:
    signals: list[Signal]
    cells: list[Cell]
    claims: list[Claim]
    seconds: dict[str, float]

    def signal(self, activation: str, scheme: str, distribution: str = "normal",
               scale: float = 1.0) -> Signal:
        return next(s for s in self.signals if (s.activation, s.scheme, s.distribution,
                                                s.scale) == (activation, scheme, distribution,
                                                             float(scale)))


def _values(params: dict[str, str], key: str) -> list[Any]:
    import yaml

    return [yaml.safe_load(v) for v in params[key].split(",")]


def run_signals(params: dict[str, str], width: int = 256, batch: int = 512,
                draws: int = 3) -> list[Signal]:
    """Signal propagation at init over the sweep's activation × scheme × distribution × scale."""
    grid = itertools.product(*(_values(params, k) for k in ("model.activation", "init.scheme",
                                                            "init.distribution", "init.scale")))
    return [signal_propagation(a, s, d, float(x), depth=DEPTH.get(a, 10), width=width,
                               batch=batch, draws=draws) for a, s, d, x in grid]


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_training(out_dir: str | Path, params: dict[str, str], extra: list[str] | None = None,
                 threads: int | None = 1) -> list[Cell]:
    """Train every job of the grid (finished runs are skipped by ``train``) and collect the
    final training loss per cell; diverged and failed runs are counted, not averaged.
    ``threads``: torch threads while training (these networks are tiny: more threads only
    fight over the cores, up to 10× slower on a busy machine); ``None`` leaves it."""
    if "'" in str(Path(out_dir).resolve()):
        raise ValueError(f"out_dir={str(out_dir)!r}: a quote in the path cannot be passed to Hydra")
    with _threads(threads):
        return _train_cells(Path(out_dir), params, extra)


def _train_cells(out_dir: Path, params: dict[str, str], extra: list[str] | None) -> list[Cell]:
    from ..config import compose
    from ..training.run import train

    cells: dict[tuple, Cell] = {}
    for job in job_overrides(params, extra):
        run_dir = out_dir / run_name(job)
        # quoted: a Hydra-style folder name holds '=' and ',' (compose(output_dir=) does not
        # quote it)
        record = train(compose([f"experiment={EXPERIMENT}", *job,
                                f"paths.output_dir='{run_dir.resolve()}'"]))
        key = _cell_key(job)
        cell = cells.setdefault(key, Cell(*key))
        if record["status"] == "ok":
            fit = json.loads((run_dir / FIT_METRICS_FILE).read_text())
            cell.losses.append(float(fit[FINAL]))
        elif record["status"] == "diverged":
            cell.diverged += 1
        else:
            cell.failed += 1
    return list(cells.values())


def _cell_key(job: list[str]) -> tuple[str, str, str, float]:
    import yaml

    chosen = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in job)}
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
        s = sweep.signal("tanh", "xavier", scale=scale)
        claims.append(Claim(f"tanh Xavier ×{scale:g}, {len(s.grad_var)} layers: "
                            "Var(∂L/∂z_1)/Var(∂L/∂z_L)", s.grad_ratio, expected,
                            bool(test(s.grad_ratio))))
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
    by = {(c.activation, c.scheme, c.distribution, c.scale): c for c in cells if c.clean}
    gaps = [abs(by[(a, s, "normal", x)].mean - by[(a, s, "uniform", x)].mean)
            for (a, s, d, x) in by if d == "normal" and (a, s, "uniform", x) in by]
    ranges = []
    for a, s, d in {(a, s, d) for (a, s, d, _) in by}:
        means = [c.mean for (a2, s2, d2, _), c in by.items() if (a2, s2, d2) == (a, s, d)]
        if len(means) > 1:
            ranges.append(max(means) - min(means))
    return (float(np.mean(gaps)) if gaps else math.nan,
            float(np.mean(ranges)) if ranges else math.nan)


def run_init_sweep(out_dir: str | Path, extra: list[str] | None = None, width: int = 256,
                   batch: int = 512, draws: int = 3, train: bool = True) -> InitSweep:
    """Both parts, the claims checked, ``init_sweep.json`` and the two pictures written into
    ``out_dir``. ``extra``: overrides for every training run (``trainer.max_epochs=3``, or
    ``seed=0,1`` to sweep fewer seeds); ``train=False`` measures at init only."""
    import time

    from .init_plots import plot_final_loss, plot_signals

    out_dir = Path(out_dir)
    params = sweep_params()
    t0 = time.perf_counter()
    signals = run_signals(params, width=width, batch=batch, draws=draws)
    t1 = time.perf_counter()
    cells = run_training(out_dir, params, extra) if train else []
    t2 = time.perf_counter()
    result = InitSweep(signals, cells, check_claims(signals, cells),
                       {"signal": round(t1 - t0, 1), "training": round(t2 - t1, 1)})
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_signals(result, out_dir / "init_signal.png")
    if cells:
        plot_final_loss(result, out_dir / "init_final_loss.png")
    summary = {"claims": [asdict(c) for c in result.claims], "seconds": result.seconds,
               "cells": [{**asdict(c), "mean": c.mean} for c in cells],
               "signals": [{"activation": s.activation, "scheme": s.scheme,
                            "distribution": s.distribution, "scale": s.scale,
                            "act_var": s.act_var.tolist(), "grad_var": s.grad_var.tolist()}
                           for s in signals]}
    (out_dir / "init_sweep.json").write_text(json.dumps(summary, indent=1) + "\n")
    return result


if __name__ == "__main__":
    from ..cli.experiment import main_init_sweep

    main_init_sweep()
