"""Shared by the loop tests: the same training run at ``model.granularity=op`` and
``network``, with the TensorBoard scalars each wrote."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from neuronlab.config import compose
from neuronlab.training.run import train


def op_and_network_runs(tmp_path: Path, overrides: list[str], prefixes: tuple[str, ...]
                        ) -> tuple[dict, dict]:
    """``(runs, scalars)`` by granularity: each run's record, and its scalars whose tags start
    with one of ``prefixes`` (tag → values)."""
    runs, scalars = {}, {}
    for g in ("op", "network"):
        runs[g] = train(compose([*overrides, f"model.granularity={g}"], output_dir=tmp_path / g))
        acc = EventAccumulator(str(tmp_path / g / "tb"), size_guidance={"scalars": 0})
        acc.Reload()
        scalars[g] = {t: [e.value for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]
                      if t.startswith(prefixes)}
    return runs, scalars
