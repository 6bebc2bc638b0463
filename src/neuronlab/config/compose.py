"""Compose ``conf/train.yaml`` with overrides through Hydra's compose API, as the command
line does (tests, experiments and notebooks use this)."""

from __future__ import annotations

import os

from omegaconf import DictConfig


def compose(
    overrides: list[str] | None = None, output_dir: str | os.PathLike | None = None
) -> DictConfig:
    """Compose ``conf/train.yaml`` with ``overrides`` through Hydra's compose API (what tests,
    experiments and notebooks use instead of the command line). ``output_dir`` sets
    ``paths.output_dir`` (the command line takes it from Hydra's run folder)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ..paths import config_dir

    overrides = list(overrides or [])
    if output_dir is not None:
        quoted = str(output_dir).replace("\\", "\\\\").replace("'", "\\'")
        overrides.append(f"paths.output_dir='{quoted}'")  # quoted: sweep folders hold = and ,
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)
