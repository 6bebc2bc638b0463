"""`NeuronDataModule`: one data set, split into train/val/test, served to a Lightning Trainer.

`setup` loads the data set (or takes the one given), validates it, splits it with a seeded
permutation and, if asked, standardizes every split with the mean and std of the TRAIN split
only (statistics of val/test would leak into training otherwise). By default the loaders are
`TensorLoader`s whose tensors sit on the model's device (see `neuronlab.data.loader`).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from neuronlab.data.catalogue import check_dataset_args, load_dataset
from neuronlab.data.container import Dataset, validate_dataset
from neuronlab.data.loader import TensorLoader

SPLITS = ("train", "val", "test")
Tensors = tuple[torch.Tensor, torch.Tensor]  # (x (N, n_features), y (N,))


class NeuronDataModule(L.LightningDataModule):
    """A small in-memory data set for a Lightning Trainer.

    Args:
        name: a key of `neuronlab.data.DATASETS` (ignored when `dataset` is given).
        n_samples: number of examples; `None` for the data set's default.
        noise: noise level; `None` for the data set's default.
        seed: seeds the data, the split and the training order.
        val_fraction: share of the examples in the validation split, in [0, 1).
        test_fraction: share in the test split, in [0, 1); the two add up to less than 1.
        batch_size: GLOBAL batch size (all ranks together); `None` for full batch.
        standardize: scale features to mean 0, std 1 with train statistics; `None` means
            `False` for `cats` (the raw confidences keep the weights readable), `True` otherwise.
        device_resident: serve `TensorLoader`s on the model's device (default) rather than a
            `torch.utils.data.DataLoader`.
        dataset: a ready `Dataset` (e.g. from `from_tensors`) used instead of `name`.
    """

    def __init__(
        self,
        name: str = "cats",
        n_samples: int | None = None,
        noise: float | None = None,
        seed: int = 0,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int | None = 64,
        standardize: bool | None = None,
        device_resident: bool = True,
        dataset: Dataset | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["dataset"])
        for key, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 <= fraction < 1:
                raise ValueError(f"data.{key}={fraction!r} must be in [0, 1)")
        if not val_fraction + test_fraction < 1:
            raise ValueError(
                f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction:g} "
                "must be < 1 (the rest is the training split)"
            )
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
            raise ValueError(f"data.batch_size={batch_size!r} must be >= 1 or None (full batch)")
        if dataset is None:
            check_dataset_args(name, n_samples, noise)
        self.name = dataset.name if dataset is not None else name
        self.n_samples, self.noise, self.seed = n_samples, noise, seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.batch_size = batch_size
        self.standardize = self.name != "cats" if standardize is None else standardize
        self.device_resident = device_resident
        self.dataset = dataset
        self.mean: torch.Tensor | None = None  # (n_features,) train mean, if standardized
        self.std: torch.Tensor | None = None  # (n_features,) train std, if standardized
        self._splits: dict[str, Tensors] | None = None
        self._on_device: dict[tuple[str, str], Tensors] = {}

    def prepare_data(self) -> None:
        """Nothing to download: every data set is generated (MNIST-1D once, then read from
        `neuronlab.data.cache`) or bundled with scikit-learn."""

    def setup(self, stage: str | None = None) -> None:
        """Load, validate, split and standardize; later calls do nothing."""
        if self._splits is not None:
            return
        if self.dataset is None:
            self.dataset = load_dataset(self.name, self.n_samples, self.noise, self.seed)
        ds = validate_dataset(self.dataset)
        n = len(ds)
        n_val = math.floor(n * self.val_fraction + 0.5)
        n_test = math.floor(n * self.test_fraction + 0.5)
        sizes = {"train": n - n_val - n_test, "val": n_val, "test": n_test}
        fractions = {"val": self.val_fraction, "test": self.test_fraction}
        for split, size in sizes.items():
            if size < 1 and fractions.get(split, 1) > 0:
                given = f"val_fraction={self.val_fraction}, test_fraction={self.test_fraction}"
                if split != "train":
                    given = f"{split}_fraction={fractions[split]}"
                raise ValueError(
                    f"data {ds.name!r}: the {split} split is empty (n_samples={n}, {given}); "
                    f"use more samples or a {'smaller' if split == 'train' else 'larger'} fraction"
                )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        rows = dict(zip(SPLITS, order.split([sizes[s] for s in SPLITS]), strict=True))
        splits = {split: (ds.x[idx], ds.y[idx]) for split, idx in rows.items()}
        if self.standardize:
            x_train = splits["train"][0]
            self.mean = x_train.mean(dim=0)
            std = x_train.std(dim=0, correction=0)
            self.std = torch.where(std > 1e-12, std, torch.ones_like(std))  # constant column
            splits = {s: ((x - self.mean) / self.std, y) for s, (x, y) in splits.items()}
        self._splits = splits

    # ---- what setup found ------------------------------------------------------------------

    def _require_setup(self) -> dict[str, Tensors]:
        if self._splits is None:
            raise RuntimeError(f"data {self.name!r}: call setup() before using the splits")
        return self._splits

    @property
    def n_features(self) -> int:
        self._require_setup()
        return self.dataset.n_features

    @property
    def layout(self) -> tuple[int, ...] | None:
        """One row's shape for conv models (``(1, 40)``, ``(1, 8, 8)``), or ``None``."""
        self._require_setup()
        return self.dataset.layout

    @property
    def n_classes(self) -> int:
        self._require_setup()
        return self.dataset.n_classes

    @property
    def feature_names(self) -> list[str]:
        self._require_setup()
        return list(self.dataset.feature_names)

    @property
    def class_names(self) -> list[str]:
        self._require_setup()
        return list(self.dataset.class_names)

    @property
    def train_tensors(self) -> Tensors:
        """`(x, y)` of the train split on the CPU, standardized if asked: (N, F), (N,)."""
        return self._require_setup()["train"]

    @property
    def val_tensors(self) -> Tensors:
        return self._require_setup()["val"]

    @property
    def test_tensors(self) -> Tensors:
        return self._require_setup()["test"]

    def describe(self) -> dict[str, Any]:
        """Sizes of the splits and the shape of the problem, for logs and summaries."""
        splits = self._require_setup()
        return {
            "name": self.name,
            **{f"n_{split}": int(y.shape[0]) for split, (_, y) in splits.items()},
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "standardize": self.standardize,
            "batch_size": self.batch_size,
        }

    # ---- loaders ---------------------------------------------------------------------------

    def _device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _tensors_on(self, split: str, device: torch.device) -> Tensors:
        """The split on `device`, copied once per (split, device) and cached."""
        key = (split, str(device))
        if key not in self._on_device:
            x, y = self._require_setup()[split]
            self._on_device[key] = (x.to(device), y.to(device))
        return self._on_device[key]

    def _loader(self, split: str, shuffle: bool) -> TensorLoader | DataLoader:
        x, y = self._require_setup()[split]
        if not self.device_resident:
            return DataLoader(
                TensorDataset(x, y),
                batch_size=self.batch_size or max(len(y), 1),
                shuffle=shuffle,
                generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
                num_workers=0,
            )
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        x, y = self._tensors_on(split, self._device())
        done = None
        if trainer is not None and split == "train":
            def done() -> int:  # batches of this epoch already trained (mid-epoch resume)
                return trainer.fit_loop.epoch_loop.batch_progress.current.completed
        loader = TensorLoader(x, y, self.batch_size, shuffle, self.seed, rank, world_size,
                              batches_done=done)
        if trainer is not None:
            loader.set_epoch(trainer.current_epoch)  # Lightning sets it again each epoch
        return loader

    def train_dataloader(self) -> TensorLoader | DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> TensorLoader | DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> TensorLoader | DataLoader:
        return self._loader("test", shuffle=False)
