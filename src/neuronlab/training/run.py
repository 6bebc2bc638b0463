"""``train(cfg)``: one run, from a composed config to ``metrics.json``.

Build (data → task → callbacks, logger, trainer), ``fit``, ``test``, then write the run's
``metrics.json`` with ``status`` = ok | diverged | failed. A config or data problem raises
:class:`~neuronlab.config.ConfigError` before any training starts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError, validate_config
from .audit import GradientMismatch
from .checkpoint import CheckpointError, SafeCheckpointIO, atomic_write_bytes
from .divergence import Diverged
from .task import LearnTask

FINISHED = ("ok", "diverged")


def _container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def read_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``metrics.json`` of a run folder, or ``None``."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_metrics(run_dir: str | Path, record: dict[str, Any]) -> None:
    atomic_write_bytes(Path(run_dir) / "metrics.json",
                       (json.dumps(record, indent=2, default=str) + "\n").encode())


def _resolve_ckpt(ckpt_path: str | None, run_dir: Path) -> str | None:
    if ckpt_path != "last":
        return ckpt_path
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise ConfigError(
            f"ckpt_path='last': no checkpoint at {last}; resume with "
            "hydra.run.dir=<the run's folder> ckpt_path=last, or ckpt_path=<file>"
        )
    return str(last)


def _hparams(cfg: dict[str, Any]) -> dict[str, Any]:
    """Flat primitives for TensorBoard's HParams view."""
    flat: dict[str, Any] = {"seed": cfg["seed"]}
    for group in ("data", "model", "init", "optimizer", "scheduler"):
        for k, v in (cfg.get(group) or {}).items():
            if k.startswith("_"):
                continue
            flat[f"{group}.{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return flat


def build(cfg: dict[str, Any]) -> tuple[L.LightningDataModule, LearnTask, L.Trainer]:
    """Validate ``cfg`` and build the DataModule, the task and the Trainer."""
    validate_config(cfg)
    try:
        datamodule = instantiate(cfg["data"])
        datamodule.setup("fit")
        task = LearnTask(
            n_in=datamodule.n_features, n_classes=datamodule.n_classes, model=cfg["model"],
            init=cfg["init"], optimizer=cfg["optimizer"], scheduler=cfg["scheduler"],
            seed=cfg["seed"], feature_names=list(datamodule.feature_names),
        )
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
        logger = instantiate(cfg["logger"]) if cfg.get("logger") else False
        trainer = instantiate(cfg["trainer"], callbacks=callbacks, logger=logger,
                              plugins=[SafeCheckpointIO()])
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from e
    return datamodule, task, trainer


def train(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Run one training job; returns what ``metrics.json`` holds.

    A run folder that already holds a finished run (status ok or diverged) is not run again
    unless ``ckpt_path`` is given: its stored metrics are returned (so a re-run sweep skips it).
    """
    cfg = _container(cfg)
    run_dir = Path(cfg["paths"]["output_dir"])
    prior = read_metrics(run_dir)
    if prior and prior.get("status") in FINISHED and not cfg.get("ckpt_path"):
        prior["skipped"] = True
        return prior
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    datamodule, task, trainer = build(cfg)
    try:
        ckpt = _resolve_ckpt(cfg.get("ckpt_path"), run_dir)
    except CheckpointError as e:
        raise ConfigError(str(e)) from e
    status, message, test = "ok", None, {}
    start = time.perf_counter()
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt)
        test = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    except Diverged as e:
        status, message = "diverged", str(e)
    except GradientMismatch as e:
        status, message = "failed", str(e)
    except CheckpointError as e:
        raise ConfigError(str(e)) from e
    seconds = time.perf_counter() - start
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    final.update({k: float(v) for k, v in test.items()})
    record = {
        "status": status,
        "message": message,
        "steps": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "seconds": round(seconds, 3),
        "metrics": final,
        "feature_weights": task.feature_weights(),
        "run_dir": str(run_dir),
        "config": {g: cfg.get(g) for g in ("data", "model", "init", "optimizer", "scheduler")},
        "seed": cfg["seed"],
    }
    if trainer.is_global_zero:
        if trainer.logger is not None and hasattr(trainer.logger, "log_hyperparams"):
            hp_metrics = {k: v for k, v in final.items() if k.startswith(("test/", "val/"))}
            hp_metrics["status_ok"] = float(status == "ok")
            trainer.logger.log_hyperparams(_hparams(cfg), metrics=hp_metrics)
            trainer.logger.finalize("success" if status == "ok" else "failed")
        write_metrics(run_dir, record)
    record["trainer"], record["task"] = trainer, task
    return record
