"""Reading a learning-rate sweep: which rates were too small, which converged, which diverged.

Every run of ``experiment=lr_sweep`` starts from the same weights and logs the training loss
at every step, so a run's first logged loss is the loss at initialization. After the budget,
a run is

- ``diverged``: it ended as such (the DivergenceGuard stopped it);
- ``slow``: its final training loss is still ≥ ``slow`` × the initial loss (default 0.8);
- ``converged``: its final training loss is ≤ ``converged`` × the initial loss (default 0.5);
- ``partial``: in between.

The *band* is the range of rates from the smallest to the largest converged one.
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


def _initial(run: Run) -> float:
    curve = run.curves.get("train/loss_step") or run.curves.get("train/loss")
    return float(curve[1][0]) if curve and curve[1] else math.nan


def classify(runs: list[Run], key: str = "optimizer.lr", metric: str = "train/loss_epoch",
             converged: float = 0.5, slow: float = 0.8) -> LrSweep:
    """Give every run of a rate sweep its verdict (see the module docstring)."""
    if not 0 < converged <= slow <= 1:
        raise ValueError(f"need 0 < converged ≤ slow ≤ 1, got converged={converged}, slow={slow}")
    out = []
    for run in runs:
        initial = _initial(run)
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
