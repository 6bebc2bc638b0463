"""Data: the cat / not-cat drawings, toy 2-D sets, scikit-learn's bundled sets and MNIST-1D.

`load_dataset("cats")` gives a validated `Dataset`; `NeuronDataModule` splits it and serves it
to a Lightning Trainer through `TensorLoader` (batches already on the model's device).
"""

from neuronlab.data.catalogue import (
    DATASETS,
    check_dataset_args,
    load_dataset,
    make_circles,
    make_moons,
    make_spirals,
    make_xor,
)
from neuronlab.data.cats import CAT_FEATURES, make_cats
from neuronlab.data.container import Dataset, from_tensors, validate_dataset
from neuronlab.data.loader import EpochOrder, TensorLoader
from neuronlab.data.mnist1d import make_mnist1d

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
    "make_mnist1d",
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
