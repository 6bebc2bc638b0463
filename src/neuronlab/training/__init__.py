"""Training: the LightningModule, its callbacks, checkpoints, resume, run records and
``train(cfg)``.

The names below load on first use: ``neuronlab.training.settings`` (the config checks) is
imported by the command line before Lightning is, and must not pull it in.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GradientAudit": "audit",
    "GradientMismatch": "audit",
    "CheckpointError": "checkpoint",
    "SafeCheckpointIO": "checkpoint",
    "load_checkpoint": "checkpoint",
    "Diverged": "divergence",
    "DivergenceGuard": "divergence",
    "GradientFlow": "flow",
    "LearnTask": "task",
    "train": "run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"neuronlab.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'neuronlab.training' has no attribute {name!r}")
