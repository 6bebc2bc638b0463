"""Where the Hydra configs live."""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """``$NEURONLAB_CONFIG_DIR``, else the repository's ``conf/`` (the package is installed
    editable, ``pip install -e .``, so the source tree is at hand)."""
    env = os.environ.get("NEURONLAB_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "conf"
    if not (path / "train.yaml").is_file():
        raise FileNotFoundError(
            f"no neuronlab configs at {path}: install from the repository with `pip install -e .` "
            "or set NEURONLAB_CONFIG_DIR to its conf/ folder"
        )
    return path
