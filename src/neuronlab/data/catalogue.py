"""The catalogue of data sets: generators and loaders, and the registry that names them.

Every entry of `DATASETS` is a function `(n_samples=..., noise=..., seed=...) -> Dataset` with
its own defaults; `load_dataset` fills in the ones the caller leaves as `None`, checks the
arguments and validates the result. Everything is local: generated with a seeded numpy
Generator or bundled with scikit-learn (no download).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import numpy as np
import torch
from sklearn import datasets as skd

from neuronlab.data.cats import make_cats
from neuronlab.data.dataset import Dataset, validate_dataset


def _dataset(
    name: str, x: np.ndarray, y: np.ndarray, features: list[str], classes: list[str]
) -> Dataset:
    return Dataset(
        name=name,
        x=torch.as_tensor(np.asarray(x), dtype=torch.float32),
        y=torch.as_tensor(np.asarray(y), dtype=torch.int64),
        feature_names=features,
        class_names=classes,
        n_classes=len(classes),
    )


def make_xor(n_samples: int = 400, noise: float = 0.2, seed: int = 0) -> Dataset:
    """Points around the four corners (±1, ±1); label = (x0 > 0) xor (x1 > 0) of the corner.

    Not linearly separable: a single neuron cannot learn it, one hidden layer can.

    Args:
        n_samples: number of points N (corners drawn uniformly).
        noise: std of the gaussian noise added to the corner.
        seed: seed of the numpy Generator.

    Returns:
        `x` (N, 2), `y` (N,) in {0, 1}.
    """
    rng = np.random.default_rng(seed)
    corners = rng.choice([-1.0, 1.0], size=(n_samples, 2))  # (N, 2)
    x = corners + noise * rng.standard_normal((n_samples, 2))
    y = (corners[:, 0] > 0) ^ (corners[:, 1] > 0)
    return _dataset("xor", x, y, ["x0", "x1"], ["same_sign", "different_sign"])


def make_spirals(n_samples: int = 1000, noise: float = 0.2, seed: int = 0) -> Dataset:
    """Two interleaved spirals, 1.5 turns each; class 1 is class 0 turned by half a turn.

    The radius grows by 1 every half turn, so the arms of the two classes are 1 apart.

    Args:
        n_samples: number of points N (classes alternate, so N // 2 or so each).
        noise: std of the gaussian noise added to each coordinate.
        seed: seed of the numpy Generator.

    Returns:
        `x` (N, 2), `y` (N,) in {0, 1}.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % 2
    angle = 3 * np.pi * np.sqrt(rng.random(n_samples))  # sqrt: even density along the arm
    radius = angle / np.pi
    turn = angle + np.pi * y
    x = np.stack([radius * np.cos(turn), radius * np.sin(turn)], axis=1)
    x = x + noise * rng.standard_normal((n_samples, 2))
    return _dataset("spirals", x, y, ["x0", "x1"], ["spiral_0", "spiral_1"])


def make_moons(n_samples: int = 1000, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Two interleaving half circles, `sklearn.datasets.make_moons(random_state=seed)`."""
    x, y = skd.make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return _dataset("moons", x, y, ["x0", "x1"], ["upper_moon", "lower_moon"])


def make_circles(n_samples: int = 1000, noise: float = 0.05, seed: int = 0) -> Dataset:
    """A circle inside a circle (factor 0.5), `sklearn.datasets.make_circles`."""
    x, y = skd.make_circles(n_samples=n_samples, noise=noise, factor=0.5, random_state=seed)
    return _dataset("circles", x, y, ["x0", "x1"], ["outer", "inner"])


def _bundled(name: str, loader: Callable) -> Callable[..., Dataset]:
    def load(n_samples: int | None = None, noise: float | None = None, seed: int = 0) -> Dataset:
        bunch = loader()
        x, y = bunch.data, bunch.target
        if n_samples is not None and n_samples < len(y):
            keep = np.sort(np.random.default_rng(seed).choice(len(y), n_samples, replace=False))
            x, y = x[keep], y[keep]
        features = [str(f) for f in bunch.feature_names]
        return _dataset(name, x, y, features, [str(c) for c in bunch.target_names])

    load.__name__ = f"load_{name}"
    load.__doc__ = (
        f"scikit-learn's bundled `{name}` set (no download). `noise` is ignored; `n_samples`, "
        "if smaller than the set, keeps a random subset drawn with `seed` (in the original "
        "order), otherwise the whole set."
    )
    return load


load_digits = _bundled("digits", skd.load_digits)  # 1797 × 64 pixels (0..16), 10 classes
load_breast_cancer = _bundled("breast_cancer", skd.load_breast_cancer)  # 569 × 30, 2 classes
load_iris = _bundled("iris", skd.load_iris)  # 150 × 4, 3 classes

DATASETS: dict[str, Callable[..., Dataset]] = {
    "breast_cancer": load_breast_cancer,
    "cats": make_cats,
    "circles": make_circles,
    "digits": load_digits,
    "iris": load_iris,
    "moons": make_moons,
    "spirals": make_spirals,
    "xor": make_xor,
}


def check_dataset_args(name: str, n_samples: int | None = None, noise: float | None = None):
    """Raise `ValueError` naming `data.name`, `data.n_samples` or `data.noise` if invalid."""
    if name not in DATASETS:
        allowed = ", ".join(sorted(DATASETS))
        message = f"data.name={name!r} is not one of: {allowed}"
        close = difflib.get_close_matches(str(name), DATASETS, n=1)
        raise ValueError(message + (f"; did you mean {close[0]!r}?" if close else ""))
    if n_samples is not None and (isinstance(n_samples, bool) or n_samples < 1):
        raise ValueError(f"data.n_samples={n_samples!r} must be an integer >= 1 (or None)")
    if noise is not None and not noise >= 0:  # `not >=` also rejects NaN
        raise ValueError(f"data.noise={noise!r} must be >= 0 (or None for the default)")


def load_dataset(
    name: str, n_samples: int | None = None, noise: float | None = None, seed: int = 0
) -> Dataset:
    """Load or generate the data set `name` and validate it.

    Args:
        name: a key of `DATASETS`.
        n_samples: number of examples N; `None` for the data set's default.
        noise: noise level; `None` for the data set's default (ignored by bundled sets).
        seed: seed of the generator (or of the subset for bundled sets).

    Returns:
        A validated `Dataset`: `x` (N, n_features) float32, `y` (N,) int64.
    """
    check_dataset_args(name, n_samples, noise)
    given = {"n_samples": n_samples, "noise": noise}
    kwargs = {key: value for key, value in given.items() if value is not None}
    return validate_dataset(DATASETS[name](seed=seed, **kwargs))
