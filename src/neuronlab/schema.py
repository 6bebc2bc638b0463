"""The shape every config group's dataclass shares: built from a composed config node, checked
once when built, turned back into primitives for checkpoints.

Each group's dataclass lives beside the code it configures (``ModelConfig`` in
``modules/models.py``, ``InitConfig`` in ``init.py``, ``OptimizerConfig``/``SchedulerConfig`` in
``optim.py``, ``DataConfig`` in ``data/``); ``neuronlab.config`` registers them with Hydra's
ConfigStore and runs the rules that span groups.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from .errors import ConfigError

T = TypeVar("T", bound="GroupConfig")


class GroupConfig:
    """Mixin for a config group's dataclass; ``group`` is the key it sits under."""

    group: ClassVar[str] = ""

    @classmethod
    def from_mapping(cls: type[T], node: Mapping[str, Any] | T) -> T:
        """The dataclass from a composed node (plain dict or ``DictConfig``); an unknown key
        is a :class:`ConfigError` naming the keys the group has."""
        if isinstance(node, cls):
            return node
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        values = dict(node.items())
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean {cls.group}.{close[0]}?)" if close else ""
                raise ConfigError(f"{cls.group}.{key} is not a key of {cls.group}; it has: "
                                  f"{', '.join(names)}{hint}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Primitives (names, numbers, lists), for ``save_hyperparameters`` and metrics.json."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]
