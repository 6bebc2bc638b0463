"""Runs of an experiment several at a time, in joblib's worker processes (what Hydra's
``hydra/launcher=joblib`` uses): joblib's loky workers get ``cores // jobs`` threads each
(``OMP_NUM_THREADS``), so jobs × torch threads stay within the cores."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any


def map_jobs(fn: Callable[..., Any], arguments: Iterable[Sequence[Any]], jobs: int,
             setup: Callable[[], None] | None = None) -> list[Any]:
    """``[fn(*args) for args in arguments]``, ``jobs`` at a time (-1: one per core; 1: here,
    in order). ``setup`` runs first in each worker (e.g. quieting Lightning's info lines);
    ``fn`` and ``setup`` must be importable module-level functions."""
    arguments = list(arguments)
    if jobs == 1:
        return [fn(*args) for args in arguments]
    if jobs == 0 or jobs < -1:
        raise ValueError(f"jobs={jobs} must be ≥ 1 or -1 (one per core)")
    from joblib import Parallel, delayed

    return Parallel(n_jobs=jobs)(delayed(_call)(setup, fn, args) for args in arguments)


def _call(setup: Callable[[], None] | None, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
    if setup is not None:
        setup()
    return fn(*args)
