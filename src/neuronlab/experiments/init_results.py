"""The results of the init sweep as plain data: ``Cell`` (one setting over its seeds),
``Claim`` (a claim of the text, measured), ``InitSweep`` (signals, cells, claims). Both the
driver (``init_sweep.py``) and its pictures (``init_plots.py``) read them: the arrow runs one
way, driver → pictures → results."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .signal import Signal


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
        wanted = (activation, scheme, distribution, float(scale))
        return next(signal for signal in self.signals
                    if (signal.activation, signal.scheme, signal.distribution,
                        signal.scale) == wanted)
