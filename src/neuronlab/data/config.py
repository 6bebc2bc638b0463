"""``data.*``: which data set, how big, how split and batched — checked once, here.

Hydra instantiates ``_target_`` (:class:`~neuronlab.data.module.NeuronDataModule`) with these
keys; :class:`DataConfig` is the same group as a dataclass, built by the config checks before
anything is loaded. Defaults are ``conf/data_defaults.yaml``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import ConfigError, is_int, is_number, require, require_bool
from ..schema import GroupConfig
from .catalogue import check_dataset_args


@dataclass
class DataConfig(GroupConfig):
    """Attributes:
        name: a data set of :data:`neuronlab.data.DATASETS`.
        n_samples, noise: the data set's size and noise (``None``: its own defaults).
        seed: the data's seed (the YAML ties it to the run's ``seed``).
        val_fraction, test_fraction: the shares held out, each in [0, 1), together < 1.
        batch_size: the global batch (all ranks together), ``None`` for full batch.
        standardize: ``None``: off for cats (raw weights read as evidence), on for the rest.
        device_resident: move the tensors to the device once (no worker processes).
    """

    group: ClassVar[str] = "data"
    _target_: str = "neuronlab.data.NeuronDataModule"
    name: str = "cats"
    n_samples: int | None = None
    noise: float | None = None
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    batch_size: int | None = 64
    standardize: bool | None = None
    device_resident: bool = True

    def __post_init__(self) -> None:
        n, noise = self.n_samples, self.noise
        require(n is None or is_int(n), "data.n_samples", n,
                "must be null (the default) or an integer ≥ 1")
        require(noise is None or is_number(noise), "data.noise", noise,
                "must be null (the default) or a number ≥ 0")
        try:
            check_dataset_args(self.name, n, noise)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        bs = self.batch_size
        require(bs is None or (is_int(bs) and bs >= 1), "data.batch_size", bs,
                "must be null (full batch) or an integer ≥ 1")
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            require(is_number(value) and 0 <= value < 1, f"data.{key}", value,
                    "must be in [0, 1)")
        total = self.val_fraction + self.test_fraction
        require(total < 1, "data.val_fraction + data.test_fraction", round(total, 6),
                "must be < 1 (the rest is the training split)")
        require_bool("data.standardize", self.standardize, null_ok=True)
        require_bool("data.device_resident", self.device_resident)
