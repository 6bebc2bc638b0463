"""A Hydra callback: when a ``-m`` sweep ends, print one table of its runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepSummary(Callback):
    """After the last job of a sweep: status, val/loss and test accuracy of every run, and
    where the full report comes from (``neuronlab-report <sweep>``)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        # reading the event files, TensorBoard's loader logs each file at INFO: not news here
        logging.getLogger("tensorboard").setLevel(logging.WARNING)
        try:
            from rich.console import Console

            from ..experiments.report import sweep_summary

            Console().print(sweep_summary(sweep_dir))
        except (FileNotFoundError, ValueError) as e:  # no run finished: nothing to show
            print(f"sweep summary: {e}")
            return
        print(f"sweep folder: {sweep_dir}  (report: neuronlab-report {sweep_dir}; "
              f"TensorBoard: tensorboard --logdir {sweep_dir})")
