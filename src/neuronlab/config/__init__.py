"""The configuration layer: compose the Hydra configs, check them once, say what is wrong.

``compose(overrides)`` gives the ``DictConfig`` the command line would build;
``validate_config(cfg)`` checks it and returns a :class:`RunConfig`; ``preflight(argv)`` is
the command line's one-line check before the heavy imports. Each config group's dataclass
lives beside the code it configures and is registered here with Hydra's ConfigStore
(``schema/<group>``), so tools and tests can merge YAML onto it.
"""

from ..errors import ConfigError
from ..training.settings import RunConfig, plain, validate_config
from .compose import compose
from .schemas import SCHEMAS, register_schemas

__all__ = ["SCHEMAS", "ConfigError", "RunConfig", "compose", "plain", "register_schemas",
           "validate_config"]
