"""``train(cfg)``: one run, from a composed config to ``metrics.json``.

Build (data → task → callbacks, logger, trainer), ``fit``, ``test``, then write the run's
``metrics.json`` with ``status`` = ok | diverged | failed | interrupted. A config or data
problem, or a checkpoint that cannot be resumed from, raises
:class:`~neuronlab.config.ConfigError` before any training starts.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..modules.embedmlp import check_tokens
from ..modules.models import check_batch_rows
from .audit import GradientMismatch
from .checkpoint import CheckpointError, SafeCheckpointIO, remove_stale_temp_files
from .collapse import ChanceWatch
from .divergence import Diverged
from .interrupt import INTERRUPTED_CKPT, Interrupted, InterruptSaver
from .records import FINISHED, hparams_of, log_hparams, mark_resume, read_metrics, write_metrics
from .resume import (
    best_monitor,
    check_resumable,
    resolve_checkpoint,
    resume_hint,
    test_checkpoint,
)
from .run_folder import check_same_config
from .settings import RunConfig, validate_config
from .task import LearnTask
from .throughput import TrainThroughput


def _container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v.numel() == 1}


def _instantiate(group: str, node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``; a bad value becomes a one-line :class:`ConfigError`."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ if e.__cause__ is not None else e
        text = " ".join(str(cause).split())
        raise ConfigError(text if text.startswith(f"{group}") else f"{group}: {text}") from e


def build(
    cfg: dict[str, Any], dataset: Any = None, settings: RunConfig | None = None
) -> tuple[L.LightningDataModule, LearnTask, L.Trainer]:
    """Build the DataModule, the task and the Trainer of a composed config.

    ``settings``: ``cfg`` already checked by :func:`~neuronlab.training.settings.validate_config`
    (``train`` checks once and passes it on); ``None`` checks here.
    ``dataset``: a :class:`neuronlab.data.Dataset` (e.g. ``from_tensors``) used instead of
    ``data.name``; it is validated (finite features, labels in range) before anything runs.
    """
    cfg = _container(cfg)
    settings = settings if settings is not None else validate_config(cfg)
    try:
        if dataset is None:
            datamodule = _instantiate("data", cfg["data"])
        else:  # partial: Hydra would turn the Dataset dataclass into a config node
            datamodule = _instantiate("data", cfg["data"], _partial_=True)(dataset=dataset)
        datamodule.setup("fit")
        check_batch_rows(settings.model, len(datamodule.train_tensors[1]),
                         datamodule.batch_size)
        if settings.model.kind == "embedmlp":  # tokens: integers the table can look up
            for split in ("train", "val", "test"):
                check_tokens(getattr(datamodule, f"{split}_tensors")[0], settings.model.vocab,
                             f"data={datamodule.name}, {split} split")
        task = LearnTask(
            n_in=datamodule.n_features, n_classes=datamodule.n_classes, model=settings.model,
            init=settings.init, optimizer=settings.optimizer, scheduler=settings.scheduler,
            seed=settings.seed, feature_names=list(datamodule.feature_names),
            step_mode=settings.train_step, layout=getattr(datamodule, "layout", None),
        )
        callbacks = [_instantiate("callbacks", best_monitor(c, settings.model.loss))
                     for c in (cfg.get("callbacks") or {}).values() if c]
        callbacks.append(ChanceWatch())  # a collapse to the chance-level loss is flagged
        callbacks.append(InterruptSaver())  # Ctrl-C saves and stops; not a config choice
        callbacks.append(TrainThroughput())  # rows/s of training time; syncs per epoch only
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


def batches_per_epoch(datamodule: Any) -> int | None:
    """Training batches per epoch (per process), or ``None`` when it cannot be told."""
    try:
        return len(datamodule.train_dataloader()) or None
    except (TypeError, AttributeError, RuntimeError):
        return None


SMALL_STEP_FLOPS = 1e9  # below this, one thread beats several: synchronising costs more


def choose_threads(task: LearnTask, datamodule: Any) -> int | None:
    """For ``torch_threads: null``: 1 thread when a training step is small (≈ 6 · parameters
    · batch size floating-point operations below ``SMALL_STEP_FLOPS``), where torch's
    several intra-op threads only wait on each other (measured 3–4× slower on 2 cores);
    ``None`` (torch's default) for larger steps."""
    n_params = sum(p.numel() for p in task.parameters())
    batch = getattr(datamodule, "batch_size", None) or len(datamodule.train_tensors[0])
    return 1 if 6 * n_params * batch < SMALL_STEP_FLOPS else None


def _test_last_quietly(trainer: L.Trainer, task: LearnTask, datamodule: Any,
                       best: str) -> dict[str, Any] | None:
    """The test metrics of the weights in memory (the last epoch's), when the best checkpoint
    ``best`` is of another epoch; not logged (the logged test is the chosen checkpoint's)."""
    from .checkpoint import load_checkpoint

    epoch = load_checkpoint(best).get("epoch")
    last_epoch = trainer.current_epoch - 1  # current_epoch counts finished epochs
    if epoch is None or int(epoch) == last_epoch:
        return None
    loggers = trainer.loggers
    trainer.loggers = []
    try:
        metrics = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    finally:
        trainer.loggers = loggers
    return {"epoch": last_epoch, **{k: float(v) for k, v in metrics.items()}}


def _restore_sigint(handler: Any) -> None:
    # Lightning ignores SIGINT after a KeyboardInterrupt; give the caller back its Ctrl-C
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def train(cfg: DictConfig | dict[str, Any], dataset: Any = None) -> dict[str, Any]:
    """Run one training job; returns what ``metrics.json`` holds.

    A run folder that already holds a finished run (status ok or diverged) is not run again
    unless ``ckpt_path`` is given: with the same config its stored metrics are returned (so a
    re-run sweep skips it); another config raises :class:`ConfigError` (its files stay true).
    ``dataset``: a :class:`neuronlab.data.Dataset` to train on instead of ``data.name``.
    Ctrl-C saves ``checkpoints/interrupted.ckpt`` and ends with status ``interrupted``.
    """
    cfg = _container(cfg)
    run_dir = Path(cfg["paths"]["output_dir"])
    prior = read_metrics(run_dir)
    if prior and prior.get("status") in FINISHED and not cfg.get("ckpt_path"):
        check_same_config(run_dir, prior, cfg)  # another config here: refused, one line
        prior["skipped"] = True
        return prior
    settings = validate_config(cfg)
    L.seed_everything(settings.seed, workers=True, verbose=False)
    datamodule, task, trainer = build(cfg, dataset=dataset, settings=settings)
    threads = settings.torch_threads
    if threads is None and trainer.strategy.root_device.type == "cpu":
        threads = choose_threads(task, datamodule)
    threads_before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        ckpt = resolve_checkpoint(settings.ckpt_path, run_dir)
    except CheckpointError as e:
        raise ConfigError(str(e)) from e
    interrupted_ckpt = run_dir / "checkpoints" / INTERRUPTED_CKPT
    if ckpt is not None:
        resume_step = check_resumable(ckpt, task, datamodule)
        if trainer.is_global_zero and trainer.logger:
            mark_resume(trainer.logger, resume_step)
    else:  # a fresh start: a Ctrl-C checkpoint of an earlier run here is not this run's
        interrupted_ckpt.unlink(missing_ok=True)
    remove_stale_temp_files(run_dir / "checkpoints")
    saver = next(c for c in trainer.callbacks if isinstance(c, InterruptSaver))
    throughput = next(c for c in trainer.callbacks if isinstance(c, TrainThroughput))
    watch = next(c for c in trainer.callbacks if isinstance(c, ChanceWatch))
    sigint = signal.getsignal(signal.SIGINT)
    status, message, test, fit_metrics = "ok", None, {}, {}
    tested_on, last_test, collapse = None, None, None
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            if ckpt is not None:  # our loader resumes mid-epoch in order; the folder is ours
                warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")
                warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt)
        fit_metrics = _scalars(trainer.callback_metrics)  # test() resets callback_metrics
        collapse = watch.report  # before test(ckpt_path=best) restores callback states
        test_ckpt, tested_on = test_checkpoint(trainer, settings.test_ckpt)
        if test_ckpt is not None:  # the last epoch's weights too, before the best replace them
            last_test = _test_last_quietly(trainer, task, datamodule, test_ckpt)
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
        status, message = "interrupted", resume_hint(interrupted, run_dir)
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
        "train_samples_per_s": throughput.samples_per_s,  # rows / training time (no validation)
        "train_samples_per_s_last_epoch": throughput.last_epoch_samples_per_s,
        "train_seconds": round(throughput.seconds, 3),
        "audit_seconds": round(throughput.check_seconds, 3),  # left out of train_seconds
        "metrics": final,
        "tested_on": tested_on,
        "last_epoch_test": last_test,  # None unless the best checkpoint is another epoch
        "collapse": collapse,  # None, or: the loss is back at the chance level
        "resumed_from": ckpt,
        "torch_threads": torch.get_num_threads(),
        "feature_weights": task.feature_weights(),
        "class_names": [str(c) for c in datamodule.class_names],
        "run_dir": str(run_dir),
        "config": {g: cfg.get(g) for g in ("data", "model", "init", "optimizer", "scheduler")},
        "seed": cfg["seed"],
    }
    if trainer.is_global_zero:
        if trainer.logger is not None and hasattr(trainer.logger, "log_hyperparams"):
            log_hparams(trainer.logger, hparams_of(cfg), final, status, int(trainer.global_step))
        write_metrics(run_dir, record)
    record["trainer"], record["task"] = trainer, task
    torch.set_num_threads(threads_before)  # the caller's setting, for what it runs next
    return record
