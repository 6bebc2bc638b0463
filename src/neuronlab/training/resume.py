"""Resume policy: which checkpoint ``ckpt_path=last`` means, whether a checkpoint may be
resumed with this config, what to tell a user whose run was interrupted, and which weights
``test`` measures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from ..errors import ConfigError
from .checkpoint import CheckpointError, load_checkpoint
from .interrupt import INTERRUPTED_CKPT, Interrupted
from .task import LearnTask


def resolve_checkpoint(ckpt_path: str | None, run_dir: Path) -> str | None:
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


def check_resumable(ckpt_path: str, task: LearnTask, datamodule: Any) -> int:
    """Raise :class:`ConfigError` unless ``ckpt_path`` is a safe, whole training checkpoint of
    a network of the same shape as ``task``'s, trained with the same data, optimizer and
    schedule (a resume restores the optimizer's state: a new ``optimizer.lr`` would be
    silently ignored). Returns the step the checkpoint was saved at."""
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
    return int(ckpt.get("global_step", 0))


def resume_hint(e: Interrupted, run_dir: Path) -> str:
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


def best_monitor(node: dict[str, Any], loss: str) -> dict[str, Any]:
    """A ``ModelCheckpoint`` config with ``monitor: auto`` / ``mode: auto`` made concrete, as
    Lightning users mean "best": a classifier's highest ``val/acc``; with ``model.loss=mse``
    (a regression loss) the lowest ``val/loss``. ``mode: auto`` is ``max`` for an accuracy,
    ``min`` for anything else."""
    node = dict(node)
    if node.get("monitor") == "auto":
        node["monitor"] = "val/loss" if loss == "mse" else "val/acc"
    if node.get("mode") == "auto":
        node["mode"] = "max" if "acc" in str(node.get("monitor")) else "min"
    return node


def test_checkpoint(trainer: L.Trainer, choice: str) -> tuple[str | None, str]:
    """The checkpoint ``trainer.test`` should load for ``test_ckpt=choice``, and how to say it.

    ``best``: the best checkpoint by ``callbacks.model_checkpoint.monitor`` (``val/acc`` for a
    classifier, ``val/loss`` for mse: :func:`best_monitor`), or, when
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
        return None, "the final weights (no best checkpoint was saved)"
    return None, f"the final weights (end of epoch {trainer.current_epoch}, as last.ckpt)"
