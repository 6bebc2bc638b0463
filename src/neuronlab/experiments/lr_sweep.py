"""Reading a learning-rate sweep: which rates were too small, which converged, which diverged.

Every run of ``experiment=lr_sweep`` starts from the same weights and logs the training loss
at every step, so a run's first logged loss is the loss at initialization. After the budget,
a run is

- ``diverged``: it ended as such (the DivergenceGuard stopped it);
- ``slow``: its final training loss is still ≥ ``slow`` × the initial loss (default 0.8);
- ``converged``: its final training loss is ≤ ``converged`` × the initial loss (default 0.5);
- ``partial``: in between.

The *band* is the range of rates from the smallest to the largest converged one.

The verdicts read the real step axis: when the runs log every N steps (a plain
``-m optimizer.lr=...`` sweep logs every ``trainer.log_every_n_steps``), a run's first point is
its loss after N − 1 updates, not at init, and a fast rate's first point is already low. The
runs start from the same weights, so the highest first point among them (the slowest run's,
the closest to init) then stands for the initial loss of every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .sweep import Run, read_sweep

VERDICTS = ("slow", "partial", "converged", "diverged", "failed")


@dataclass(frozen=True)
class LrRun:
    lr: float
    status: str
    initial: float  # first logged training loss (at initialization)
    final: float  # final training loss (NaN unless ok)
    verdict: str
    init_sha256: str | None


@dataclass(frozen=True)
class LrSweep:
    runs: list[LrRun]  # sorted by rate

    @property
    def band(self) -> tuple[float, float] | None:
        """(smallest, largest) converged rate, or None."""
        rates = [r.lr for r in self.runs if r.verdict == "converged"]
        return (min(rates), max(rates)) if rates else None

    def verdicts(self) -> dict[float, str]:
        return {r.lr: r.verdict for r in self.runs}


def _first_point(run: Run) -> tuple[int, float] | None:
    """The (step, loss) of the run's first logged training loss, or None."""
    curve = run.curves.get("train/loss_step") or run.curves.get("train/loss")
    return (int(curve[0][0]), float(curve[1][0])) if curve and curve[1] else None


def initial_losses(runs: list[Run]) -> list[float]:
    """Each run's loss at initialization: its first logged loss when that is at step 0 for
    every run, else the highest first logged loss of them all (see the module docstring)."""
    firsts = [_first_point(run) for run in runs]
    if all(f is None or f[0] == 0 for f in firsts):
        return [f[1] if f else math.nan for f in firsts]
    shared = max((f[1] for f in firsts if f and math.isfinite(f[1])), default=math.nan)
    return [shared if f else math.nan for f in firsts]


def classify(runs: list[Run], key: str = "optimizer.lr", metric: str = "train/loss_epoch",
             converged: float = 0.5, slow: float = 0.8) -> LrSweep:
    """Give every run of a rate sweep its verdict (see the module docstring)."""
    if not 0 < converged <= slow <= 1:
        raise ValueError(f"need 0 < converged ≤ slow ≤ 1, got converged={converged}, slow={slow}")
    out = []
    for run, initial in zip(runs, initial_losses(runs), strict=True):
        final = run.final(metric) if run.status == "ok" else math.nan
        if run.status == "diverged":
            verdict = "diverged"
        elif run.status != "ok" or not math.isfinite(final) or not math.isfinite(initial):
            verdict = "failed"
        elif final <= converged * initial:
            verdict = "converged"
        elif final >= slow * initial:
            verdict = "slow"
        else:
            verdict = "partial"
        out.append(LrRun(float(run.params[key]), run.status, initial, final, verdict,
                         run.init_sha256))
    return LrSweep(sorted(out, key=lambda r: r.lr))


def read_lr_sweep(sweep_dir: str | Path, **kwargs) -> LrSweep:
    """:func:`classify` the runs of a sweep folder."""
    return classify(read_sweep(sweep_dir), **kwargs)
