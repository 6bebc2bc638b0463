"""``train(cfg)``: one run, from a composed config to ``metrics.json``.

Build (data → task → callbacks, logger, trainer), ``fit``, ``test``, then write the run's
``metrics.json`` with ``status`` = ok | diverged | failed | interrupted. A config or data
problem, or a checkpoint that cannot be resumed from, raises
:class:`~neuronlab.config.ConfigError` before any training starts.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError, validate_config
from .audit import GradientMismatch
from .checkpoint import (
    CheckpointError,
    SafeCheckpointIO,
    atomic_write_bytes,
    load_checkpoint,
    remove_stale_temp_files,
)
from .divergence import Diverged
from .interrupt import INTERRUPTED_CKPT, Interrupted, InterruptSaver
from .task import LearnTask

FINISHED = ("ok", "diverged")


def _container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v.numel() == 1}


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
    """``last``: the later (by step) of ``last.ckpt`` (end of an epoch) and ``interrupted.ckpt``
    (saved on Ctrl-C); at the same step, ``last.ckpt``."""
    if ckpt_path != "last":
        return ckpt_path
    folder = run_dir / "checkpoints"
    found = [p for p in (folder / "last.ckpt", folder / INTERRUPTED_CKPT) if p.is_file()]
    if not found:
        raise ConfigError(
            f"ckpt_path='last': no checkpoint at {folder / 'last.ckpt'}; resume with "
            "hydra.run.dir=<the run's folder> ckpt_path=last, or ckpt_path=<file>"
        )
    steps = {p: int(load_checkpoint(p).get("global_step", -1)) for p in found}
    return str(max(found, key=lambda p: (steps[p], p.name == "last.ckpt")))


RESUME_KEYS = {  # settings a resume restores from the checkpoint, or that change the data
    "optimizer": ("hyper_parameters", "optimizer"),
    "scheduler": ("hyper_parameters", "scheduler"),
    "data": ("datamodule_hyper_parameters", None),
}
DATA_KEYS = ("name", "n_samples", "noise", "seed", "val_fraction", "test_fraction", "batch_size",
             "standardize")


def _first_difference(group: str, saved: dict, now: dict, keys) -> str | None:
    for key in keys:
        if key in saved and saved.get(key) != now.get(key):
            return f"{group}.{key}={now.get(key)!r} here but {saved.get(key)!r} in the checkpoint"
    return None


def check_resumable(ckpt_path: str, task: LearnTask, datamodule: Any) -> None:
    """Raise :class:`ConfigError` unless ``ckpt_path`` is a safe, whole training checkpoint of
    a network of the same shape as ``task``'s, trained with the same data, optimizer and
    schedule (a resume restores the optimizer's state: a new ``optimizer.lr`` would be
    silently ignored)."""
    try:
        ckpt = load_checkpoint(ckpt_path)
    except CheckpointError as e:
        raise ConfigError(str(e)) from None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "loops" not in ckpt:
        raise ConfigError(f"ckpt_path={ckpt_path!r} is not a training checkpoint written by "
                          "neuronlab-train (no state_dict or loop state in it)")
    hp = ckpt.get("hyper_parameters") or {}
    have = (hp.get("n_in"), hp.get("n_classes"))
    want = (task.hparams.n_in, task.hparams.n_classes)
    if None not in have and have != want:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} holds a network for {have[0]} features and {have[1]} "
            f"classes, but data {datamodule.name!r} has {want[0]} features and {want[1]} "
            "classes; resume with the data the checkpoint was trained on"
        )
    for name, value in task.state_dict().items():
        if name not in state or tuple(state[name].shape) != tuple(value.shape):
            found = tuple(state[name].shape) if name in state else "nothing"
            raise ConfigError(
                f"ckpt_path={ckpt_path!r} does not fit the model of this config: {name} is "
                f"{found} there and {tuple(value.shape)} here (model.kind="
                f"{task.hparams.model.get('kind')!r}, model.hidden="
                f"{list(task.hparams.model.get('hidden') or [])}); resume with the model "
                "settings the checkpoint was trained with"
            )
    for group, (section, key) in RESUME_KEYS.items():
        saved = ckpt.get(section) or {}
        saved = saved.get(key) or {} if key else saved
        now = dict(getattr(task.hparams, group) or {}) if key else dict(datamodule.hparams)
        differs = _first_difference(group, saved, now, DATA_KEYS if group == "data" else saved)
        if differs:
            raise ConfigError(
                f"ckpt_path={ckpt_path!r}: {differs}; a resume continues the same run, so "
                f"keep the checkpoint's value, or start a new run (without ckpt_path) to "
                "change it"
            )


def _resume_hint(e: Interrupted, run_dir: Path) -> str:
    """``e``'s message plus the command that resumes the run."""
    has_ckpt = e.checkpoint or (run_dir / "checkpoints" / "last.ckpt").is_file()
    if not has_ckpt:
        return f"{e}; nothing to resume from: run it again"
    overrides = "<the same overrides>"
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            kept = [o for o in HydraConfig.get().overrides.task
                    if not o.startswith(("ckpt_path=", "hydra.run.dir=", "paths.output_dir="))]
            overrides = " ".join(kept)
    except Exception:  # noqa: BLE001 - the hint is a courtesy
        pass
    return (f"{e}; resume with: neuronlab-train {overrides} hydra.run.dir={run_dir} "
            "ckpt_path=last").replace("  ", " ")


def _hparams(cfg: dict[str, Any]) -> dict[str, Any]:
    """Flat primitives for TensorBoard's HParams view."""
    flat: dict[str, Any] = {"seed": cfg["seed"]}
    for group in ("data", "model", "init", "optimizer", "scheduler"):
        for k, v in (cfg.get(group) or {}).items():
            if k.startswith("_"):
                continue
            flat[f"{group}.{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return flat


def _instantiate(group: str, node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``; a bad value becomes a one-line :class:`ConfigError`."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ if e.__cause__ is not None else e
        text = " ".join(str(cause).split())
        raise ConfigError(text if text.startswith(f"{group}") else f"{group}: {text}") from e


def build(
    cfg: dict[str, Any], dataset: Any = None
) -> tuple[L.LightningDataModule, LearnTask, L.Trainer]:
    """Validate ``cfg`` and build the DataModule, the task and the Trainer.

    ``dataset``: a :class:`neuronlab.data.Dataset` (e.g. ``from_tensors``) used instead of
    ``data.name``; it is validated (finite features, labels in range) before anything runs.
    """
    cfg = _container(cfg)
    validate_config(cfg)
    try:
        if dataset is None:
            datamodule = _instantiate("data", cfg["data"])
        else:  # partial: Hydra would turn the Dataset dataclass into a config node
            datamodule = _instantiate("data", cfg["data"], _partial_=True)(dataset=dataset)
        datamodule.setup("fit")
        task = LearnTask(
            n_in=datamodule.n_features, n_classes=datamodule.n_classes, model=cfg["model"],
            init=cfg["init"], optimizer=cfg["optimizer"], scheduler=cfg["scheduler"],
            seed=cfg["seed"], feature_names=list(datamodule.feature_names),
        )
        callbacks = [_instantiate("callbacks", c)
                     for c in (cfg.get("callbacks") or {}).values() if c]
        callbacks.append(InterruptSaver())  # Ctrl-C saves and stops; not a config choice
        logger = _instantiate("logger", cfg["logger"]) if cfg.get("logger") else False
        if not logger:  # no logger (~logger): nothing to monitor the rate into
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        trainer_cfg = dict(cfg["trainer"])
        # a log interval longer than an epoch logs nothing within it (and Lightning warns)
        per_epoch = batches_per_epoch(datamodule)
        if per_epoch and trainer_cfg.get("log_every_n_steps", 50) > per_epoch:
            trainer_cfg["log_every_n_steps"] = per_epoch
        trainer = _instantiate("trainer", trainer_cfg, callbacks=callbacks, logger=logger,
                               plugins=[SafeCheckpointIO()])
    except (ValueError, TypeError) as e:
        raise ConfigError(" ".join(str(e).split())) from e
    return datamodule, task, trainer


def test_checkpoint(trainer: L.Trainer, choice: str) -> tuple[str | None, str]:
    """The checkpoint ``trainer.test`` should load for ``test_ckpt=choice``, and how to say it.

    ``best``: the best-by-``val/loss`` checkpoint (``callbacks.model_checkpoint``), or, when
    there is none (checkpointing off, no validation split), the final weights, saying so.
    ``last``: the weights at the end of the last epoch (``checkpoints/last.ckpt``), which are
    the ones in memory, so nothing is loaded.
    """
    if choice == "best":
        for cb in trainer.checkpoint_callbacks:
            path = getattr(cb, "best_model_path", "")
            if getattr(cb, "monitor", None) and path and Path(path).is_file():
                score = cb.best_model_score
                score_text = f", {cb.monitor}={float(score):.4g}" if score is not None else ""
                return path, f"the best checkpoint ({Path(path).name}{score_text})"
        return None, "the final weights (no best-by-val/loss checkpoint was saved)"
    return None, f"the final weights (end of epoch {trainer.current_epoch}, as last.ckpt)"


def log_hparams(logger: Any, params: dict[str, Any], final: dict[str, float], status: str,
                step: int) -> None:
    """The run's settings and final metrics for TensorBoard's HParams tab.

    Lightning's ``log_hyperparams(params, metrics)`` also logs each metric as a scalar at step
    0; TensorBoard reads a step that goes back as a restart and drops the curve logged before
    it (``val/loss`` showed one point). Here the metrics already logged during the run are only
    *named* in the HParams summary (the tab reads their last value from the run's scalars);
    only ``status_ok`` is new, logged at the run's last step.
    """
    from torch.utils.tensorboard.summary import hparams

    logger.log_hyperparams(params)  # hparams.yaml; with default_hp_metric off, nothing else
    metrics = {k: v for k, v in final.items() if k.startswith(("test/", "val/"))}
    metrics["status_ok"] = float(status == "ok")
    logger.log_metrics({"status_ok": metrics["status_ok"]}, step=step)
    experiment, start, end = hparams(params, metrics)
    writer = logger.experiment._get_file_writer()
    for summary in (experiment, start, end):
        writer.add_summary(summary, step)
    logger.finalize("success" if status == "ok" else "failed")


def batches_per_epoch(datamodule: Any) -> int | None:
    """Training batches per epoch (per process), or ``None`` when it cannot be told."""
    try:
        return len(datamodule.train_dataloader()) or None
    except (TypeError, AttributeError, RuntimeError):
        return None


SMALL_STEP_FLOPS = 5e7  # below this, one thread beats several: synchronising costs more


def choose_threads(task: LearnTask, datamodule: Any) -> int | None:
    """For ``torch_threads: null``: 1 thread when a training step is small (≈ 6 · parameters
    · batch size floating-point operations below ``SMALL_STEP_FLOPS``), where torch's
    several intra-op threads only wait on each other (measured 3–4× slower on 2 cores);
    ``None`` (torch's default) for larger steps."""
    n_params = sum(p.numel() for p in task.parameters())
    batch = getattr(datamodule, "batch_size", None) or len(datamodule.train_tensors[0])
    return 1 if 6 * n_params * batch < SMALL_STEP_FLOPS else None


def _restore_sigint(handler: Any) -> None:
    # Lightning ignores SIGINT after a KeyboardInterrupt; give the caller back its Ctrl-C
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def train(cfg: DictConfig | dict[str, Any], dataset: Any = None) -> dict[str, Any]:
    """Run one training job; returns what ``metrics.json`` holds.

    A run folder that already holds a finished run (status ok or diverged) is not run again
    unless ``ckpt_path`` is given: its stored metrics are returned (so a re-run sweep skips it).
    ``dataset``: a :class:`neuronlab.data.Dataset` to train on instead of ``data.name``.
    Ctrl-C saves ``checkpoints/interrupted.ckpt`` and ends with status ``interrupted``.
    """
    cfg = _container(cfg)
    run_dir = Path(cfg["paths"]["output_dir"])
    prior = read_metrics(run_dir)
    if prior and prior.get("status") in FINISHED and not cfg.get("ckpt_path"):
        prior["skipped"] = True
        return prior
    validate_config(cfg)
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    datamodule, task, trainer = build(cfg, dataset=dataset)
    threads = cfg.get("torch_threads")
    if threads is None and trainer.strategy.root_device.type == "cpu":
        threads = choose_threads(task, datamodule)
    threads_before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        ckpt = _resolve_ckpt(cfg.get("ckpt_path"), run_dir)
    except CheckpointError as e:
        raise ConfigError(str(e)) from e
    interrupted_ckpt = run_dir / "checkpoints" / INTERRUPTED_CKPT
    if ckpt is not None:
        check_resumable(ckpt, task, datamodule)
    else:  # a fresh start: a Ctrl-C checkpoint of an earlier run here is not this run's
        interrupted_ckpt.unlink(missing_ok=True)
    remove_stale_temp_files(run_dir / "checkpoints")
    saver = next(c for c in trainer.callbacks if isinstance(c, InterruptSaver))
    sigint = signal.getsignal(signal.SIGINT)
    status, message, test, fit_metrics = "ok", None, {}, {}
    tested_on = None
    start = time.perf_counter()
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt)
        fit_metrics = _scalars(trainer.callback_metrics)  # test() resets callback_metrics
        test_ckpt, tested_on = test_checkpoint(trainer, cfg.get("test_ckpt", "best"))
        test = trainer.test(task, datamodule=datamodule, verbose=False, ckpt_path=test_ckpt)[0]
    except Diverged as e:
        status, message = "diverged", str(e)
    except GradientMismatch as e:
        status, message = "failed", str(e)
    except CheckpointError as e:
        raise ConfigError(str(e)) from e
    except (Interrupted, KeyboardInterrupt, SystemExit) as e:
        # Interrupted: our Ctrl-C path; SystemExit: Lightning's (a second Ctrl-C, SIGTERM)
        interrupted = e if isinstance(e, Interrupted) else saver.interrupted
        if interrupted is None:
            raise
        status, message = "interrupted", _resume_hint(interrupted, run_dir)
    finally:
        _restore_sigint(sigint)
    seconds = time.perf_counter() - start
    if status == "ok" and trainer.is_global_zero:  # finished: last.ckpt supersedes it
        interrupted_ckpt.unlink(missing_ok=True)
    final = fit_metrics or _scalars(trainer.callback_metrics)
    final.update({k: float(v) for k, v in test.items()})
    record = {
        "status": status,
        "message": message,
        "steps": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "seconds": round(seconds, 3),
        "metrics": final,
        "tested_on": tested_on,
        "torch_threads": torch.get_num_threads(),
        "feature_weights": task.feature_weights(),
        "class_names": [str(c) for c in datamodule.class_names],
        "run_dir": str(run_dir),
        "config": {g: cfg.get(g) for g in ("data", "model", "init", "optimizer", "scheduler")},
        "seed": cfg["seed"],
    }
    if trainer.is_global_zero:
        if trainer.logger is not None and hasattr(trainer.logger, "log_hyperparams"):
            log_hparams(trainer.logger, _hparams(cfg), final, status, int(trainer.global_step))
        write_metrics(run_dir, record)
    record["trainer"], record["task"] = trainer, task
    torch.set_num_threads(threads_before)  # the caller's setting, for what it runs next
    return record
