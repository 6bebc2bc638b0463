"""A finished run folder never changes: what ``train`` does with a folder that already holds
a finished run, and the Hydra resolvers that keep Hydra from rewriting its files.

Hydra writes ``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml`` and opens the job's log
file before the task function runs. ``conf/hydra/default.yaml`` names the subfolder and the log
file through :func:`config_subdir` and :func:`log_file`, which Hydra resolves once the job's
folder is known: for a finished folder (and no ``ckpt_path``) they answer "none" and
``/dev/null``, so nothing there is written; ``train`` then skips the run (same config) or
refuses it (another config, :func:`check_same_config`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError

SUBDIR = ".hydra"


def is_finished(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a finished run (``metrics.json`` with status ok or diverged)."""
    from .records import FINISHED, read_metrics

    prior = read_metrics(run_dir)
    return bool(prior) and prior.get("status") in FINISHED


def _keeps(output_dir: Any, ckpt_path: Any) -> bool:
    return ckpt_path in (None, "", "None", "null") and is_finished(str(output_dir))


def config_subdir(output_dir: Any, ckpt_path: Any = None) -> str | None:
    """``hydra.output_subdir``: ``.hydra``, or ``None`` (Hydra writes no config files) when
    ``output_dir`` holds a finished run that is not being trained on (``ckpt_path`` unset)."""
    return None if _keeps(output_dir, ckpt_path) else SUBDIR


def log_file(output_dir: Any, job_name: Any, ckpt_path: Any = None) -> str:
    """The job's log file: ``<output_dir>/<job>.log``, or ``os.devnull`` for a finished run
    that is not being trained on."""
    return os.devnull if _keeps(output_dir, ckpt_path) else f"{output_dir}/{job_name}.log"


def register_resolvers() -> None:
    """Make :func:`config_subdir` and :func:`log_file` known to OmegaConf (before Hydra runs)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("neuronlab.config_subdir", config_subdir, replace=True)
    OmegaConf.register_new_resolver("neuronlab.log_file", log_file, replace=True)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


def _stored_config(run_dir: Path, prior: dict[str, Any], cfg: dict[str, Any]) -> dict | None:
    """The finished run's config, resolved with this run's paths (the same folder), or, for
    a folder without ``.hydra/config.yaml``, the groups ``metrics.json`` recorded."""
    path = run_dir / SUBDIR / "config.yaml"
    if path.is_file():
        from omegaconf import OmegaConf, open_dict

        stored = OmegaConf.load(path)
        with open_dict(stored):
            stored.paths = cfg.get("paths")  # its ${hydra:runtime.output_dir} is this folder
        try:
            return OmegaConf.to_container(stored, resolve=True)  # type: ignore[return-value]
        except Exception:  # noqa: BLE001 - unreadable: compare what metrics.json says
            pass
    if isinstance(prior.get("config"), dict):
        return {**prior["config"], "seed": prior.get("seed")}
    return None


def config_difference(stored: dict[str, Any], cfg: dict[str, Any]) -> str | None:
    """The first key whose value differs, as ``key=<here> here, <there> in the finished run``,
    comparing the keys ``stored`` has (and, for a full config, the keys only ``cfg`` has)."""
    a, b = _flat(stored), _flat(cfg)
    keys = list(a) + ([k for k in b if k not in a] if "paths.output_dir" in a else [])
    for key in keys:
        if key in a and key in b and a[key] == b[key]:
            continue
        if key not in b and "paths.output_dir" not in a:
            continue  # a partial record names keys this config may spell elsewhere
        here = b.get(key, "<not set>")
        there = a.get(key, "<not set>")
        return f"{key}={here!r} here, {there!r} in the finished run"
    return None


def check_same_config(run_dir: Path, prior: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` when the finished run in ``run_dir`` was made with another
    config than ``cfg`` (resolved): its files must keep saying what made them."""
    stored = _stored_config(run_dir, prior, cfg)
    if stored is None:
        return
    differs = config_difference(stored, cfg)
    if differs:
        raise ConfigError(
            f"{run_dir} holds a finished run of another config ({differs}); its files are "
            "left as they are: train into a new folder (another hydra.run.dir, or none), or "
            "add ckpt_path=last to train on from its last checkpoint"
        )
