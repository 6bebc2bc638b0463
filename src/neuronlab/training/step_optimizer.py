"""The optimizer Lightning holds when a :class:`~neuronlab.training.step.TrainStep` does the
update: Lightning's manual optimization, with ``global_step``, schedulers, the learning-rate
monitor and checkpoints working as with the real optimizer."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .step import TrainStep


class StepOptimizer(torch.optim.Optimizer):
    """The optimizer Lightning holds when a ``TrainStep`` does the update (manual optimization).

    Its ``param_groups`` and ``state`` are the wrapped optimizer's, so learning-rate schedulers,
    ``LearningRateMonitor`` and checkpoints see the real ones. ``step(closure)`` runs the
    closure (a whole ``TrainStep`` call, or a ``forward_backward``) and then the pending update,
    so ``LightningOptimizer.step`` still counts ``global_step``. Under 16-mixed the step scales
    the loss itself: set ``trainer.precision_plugin.scaler = None`` (in ``on_fit_start``), or
    Lightning's ``GradScaler`` asks for a ``scaler.scale(loss)`` that never came.
    """

    def __init__(self, train_step: TrainStep) -> None:  # no Optimizer.__init__: all delegated
        self._train_step = train_step

    @property
    def _inner(self) -> torch.optim.Optimizer:
        return self._train_step.optimizer

    param_groups = property(lambda self: self._inner.param_groups)
    state = property(lambda self: self._inner.state)
    defaults = property(lambda self: self._inner.defaults)

    def step(self, closure: Callable[[], object] | None = None):  # noqa: D102
        result = closure() if closure is not None else None
        self._train_step.update()
        return result

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: D102
        self._inner.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:  # noqa: D102
        return self._inner.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:  # noqa: D102
        self._inner.load_state_dict(state_dict)

    def add_param_group(self, param_group: dict) -> None:  # noqa: D102
        self._inner.add_param_group(param_group)

    def __repr__(self) -> str:
        return f"StepOptimizer({self._train_step.mode}, {self._inner!r})"
