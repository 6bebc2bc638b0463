"""Each config group's dataclass, registered with Hydra's ConfigStore as ``schema/<group>``.

The YAML files in ``conf/<group>/`` must fit their group's dataclass (a test merges every
shipped option onto it with OmegaConf, which checks keys and types).
"""

from __future__ import annotations

from ..data.config import DataConfig
from ..init import InitConfig
from ..modules import ModelConfig
from ..optim import OptimizerConfig, SchedulerConfig
from ..schema import GroupConfig

SCHEMAS: dict[str, type[GroupConfig]] = {
    cls.group: cls
    for cls in (DataConfig, ModelConfig, InitConfig, OptimizerConfig, SchedulerConfig)
}


def register_schemas() -> None:
    """Store each dataclass as ``schema/<group>`` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, cls in SCHEMAS.items():
        store.store(group="schema", name=group, node=cls)
