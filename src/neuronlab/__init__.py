"""neuronlab: how a neural network learns, written out and verified.

The names below are imported on first use, so ``import neuronlab`` (and the command line's
first checks) do not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "MLP": "neuronlab.modules",
    "Layer": "neuronlab.modules",
    "Neuron": "neuronlab.modules",
    "check_function": "neuronlab.gradcheck",
    "compare_gradients": "neuronlab.gradcheck",
    "default_tolerance": "neuronlab.gradcheck",
    "initialize_": "neuronlab.init",
    "zeros_": "neuronlab.init",
}
_SUBMODULES = ("functional", "init", "optim", "modules", "gradcheck", "data", "training")

__all__ = sorted([*_EXPORTS, "functional", "init", "optim"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"neuronlab.{name}")
    raise AttributeError(f"module 'neuronlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
