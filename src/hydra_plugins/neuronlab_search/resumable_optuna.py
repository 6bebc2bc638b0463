"""``ResumableOptunaSweeper``: Hydra's Optuna sweeper, continuing the study stored in its sweep
folder (``neuronlab.cli.search`` says how). Defined only when the ``sweep`` extra is installed
(``pip install -e ".[sweep]"``), so Hydra's plugin scan stays quiet without it."""

from __future__ import annotations

from typing import Any

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # the [sweep] extra is not installed
    OptunaSweeper = None

if OptunaSweeper is not None:
    from omegaconf import DictConfig

    class ResumableOptunaSweeper(OptunaSweeper):
        """:class:`OptunaSweeper` whose stored study is continued, not restarted."""

        def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
            super().setup(hydra_context=hydra_context, task_function=task_function,
                          config=config)
            self.config = config

        def sweep(self, arguments: list[str]) -> None:
            from neuronlab.cli.search import continue_study

            continue_study(self.sweeper, self.config, arguments)
