"""Data: the cat / not-cat drawings, toy 2-D sets and scikit-learn's bundled sets.

`load_dataset("cats")` gives a validated `Dataset`; `NeuronDataModule` splits it and serves it
to a Lightning Trainer through `TensorLoader` (batches already on the model's device).
"""

from neuronlab.data.cats import CAT_FEATURES, make_cats
from neuronlab.data.dataset import Dataset, from_tensors, validate_dataset
from neuronlab.data.datasets import (
    DATASETS,
    check_dataset_args,
    load_dataset,
    make_circles,
    make_moons,
    make_spirals,
    make_xor,
)
from neuronlab.data.loader import EpochOrder, TensorLoader

__all__ = [
    "CAT_FEATURES",
    "DATASETS",
    "Dataset",
    "EpochOrder",
    "NeuronDataModule",
    "TensorLoader",
    "check_dataset_args",
    "from_tensors",
    "load_dataset",
    "make_cats",
    "make_circles",
    "make_moons",
    "make_spirals",
    "make_xor",
    "validate_dataset",
]


def __getattr__(name: str):
    # NeuronDataModule pulls in Lightning (seconds to import): load it only when asked for
    if name == "NeuronDataModule":
        from neuronlab.data.module import NeuronDataModule

        return NeuronDataModule
    raise AttributeError(f"module 'neuronlab.data' has no attribute {name!r}")
