"""What a run leaves behind for people and tools: ``metrics.json`` (status, final metrics,
config) and the HParams summary TensorBoard compares runs with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_bytes

FINISHED = ("ok", "diverged")  # a folder holding one of these is not run again


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


def hparams_of(cfg: dict[str, Any]) -> dict[str, Any]:
    """Flat primitives for TensorBoard's HParams view."""
    flat: dict[str, Any] = {"seed": cfg["seed"]}
    for group in ("data", "model", "init", "optimizer", "scheduler"):
        for k, v in (cfg.get(group) or {}).items():
            if k.startswith("_"):
                continue
            flat[f"{group}.{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return flat


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


def mark_resume(logger: Any, step: int) -> None:
    """Tell TensorBoard that the run goes on from ``step``: a ``SessionLog.START`` event at
    that step makes it drop what an interrupted run logged after its checkpoint (a run killed
    mid-epoch wrote points the resumed run writes again), instead of showing them twice, out
    of order."""
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog

    experiment = getattr(logger, "experiment", None)
    if experiment is None or not hasattr(experiment, "_get_file_writer"):
        return  # not TensorBoard
    writer = experiment._get_file_writer()
    writer.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))
    writer.flush()
