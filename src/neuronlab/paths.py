"""Where the Hydra configs live: ``$NEURONLAB_CONFIG_DIR``, else the package's own ``conf/``.

The repository keeps its configs in the top-level ``conf/``; a wheel ships that folder as
``neuronlab/conf`` (see ``pyproject.toml``), and an editable install (``pip install -e .``)
reads it in place.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "NEURONLAB_CONFIG_DIR"
_PACKAGE = Path(__file__).resolve().parent


class ConfigDirError(FileNotFoundError):
    """No usable config folder; the message says where it looked and what to do."""


def config_dir() -> Path:
    """The folder holding ``train.yaml`` and the config groups."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not (path / "train.yaml").is_file():
            raise ConfigDirError(
                f"{ENV_VAR}={env!r} holds no train.yaml; point it at a folder laid out like "
                f"neuronlab's conf/ ({_default_dir() or 'the repository conf/'}), or unset it"
            )
        return path
    path = _default_dir()
    if path is None:
        raise ConfigDirError(
            f"no neuronlab configs in {_PACKAGE / 'conf'} (a broken install?): reinstall "
            f"neuronlab, or set {ENV_VAR} to a conf/ folder"
        )
    return path


def _default_dir() -> Path | None:
    for path in (_PACKAGE / "conf", _PACKAGE.parents[1] / "conf"):  # wheel, then source tree
        if (path / "train.yaml").is_file():
            return path
    return None
