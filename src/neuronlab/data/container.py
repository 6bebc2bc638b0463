"""The `Dataset` container and the checks every data set passes before training.

A data set here is small and lives in memory: a feature matrix `x` (N, n_features), float32,
and a label vector `y` (N,), int64 class indices in [0, n_classes). `validate_dataset` turns
the usual silent failures (a NaN feature, a label 10 with 10 classes, float labels) into a
`ValueError` that names the data set, before any step is taken.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled data set held in memory.

    Args:
        name: the registry name (`cats`, `moons`, ...) or a user-chosen name; used in errors.
        x: features, float32, shape (N, n_features).
        y: class indices, int64, shape (N,), values in [0, n_classes).
        feature_names: one name per column of `x`.
        class_names: one name per class.
        n_classes: number of classes.
        layout: the shape of one row for models that see its structure, channels first:
            ``(1, 40)`` for MNIST-1D's signals, ``(1, 8, 8)`` for the digits' images; ``None``
            for a plain feature vector. ``x`` stays ``(N, n_features)`` either way (the
            standardization is per feature); a conv model views each row as ``layout``.
    """

    name: str
    x: torch.Tensor  # (N, n_features)
    y: torch.Tensor  # (N,)
    feature_names: list[str]
    class_names: list[str]
    n_classes: int
    layout: tuple[int, ...] | None = None

    @property
    def n_features(self) -> int:
        """Number of input features (columns of `x`)."""
        return int(self.x.shape[1])

    def __len__(self) -> int:
        return int(self.x.shape[0])


def validate_dataset(ds: Dataset) -> Dataset:
    """Raise `ValueError` if `ds` cannot be trained on; return it unchanged otherwise.

    Checks, in order: shapes, a non-empty set, integer labels, labels in [0, n_classes),
    names matching the shapes, finite features.

    Args:
        ds: the data set; `x` (N, n_features), `y` (N,).
    """
    where = f"data {ds.name!r}"
    if ds.x.ndim != 2:
        raise ValueError(
            f"{where}: features must have shape (N, n_features), got {tuple(ds.x.shape)}"
        )
    if ds.y.ndim != 1:
        raise ValueError(f"{where}: labels must have shape (N,), got {tuple(ds.y.shape)}")
    if ds.x.shape[0] != ds.y.shape[0]:
        raise ValueError(
            f"{where}: {ds.x.shape[0]} feature rows but {ds.y.shape[0]} labels; they must match"
        )
    if ds.x.shape[0] == 0:
        raise ValueError(f"{where}: the data set is empty (0 rows)")
    if not ds.x.is_floating_point():
        raise ValueError(f"{where}: features must be floating point, got dtype {ds.x.dtype}")
    if ds.y.is_floating_point() or ds.y.is_complex() or ds.y.dtype == torch.bool:
        raise ValueError(
            f"{where}: labels must be integer class indices (int64), got dtype {ds.y.dtype}"
        )
    bad = (ds.y < 0) | (ds.y >= ds.n_classes)
    if bool(bad.any()):
        values = sorted({int(v) for v in ds.y[bad].unique()[:5]})
        first = int(bad.nonzero()[0, 0])
        count = int(bad.sum())
        are = "label is" if count == 1 else "labels are"
        raise ValueError(
            f"{where}: {count} {are} outside the allowed range "
            f"[0, {ds.n_classes}) (n_classes={ds.n_classes}): values {values}, first at row {first}"
        )
    if ds.n_classes < 1:
        raise ValueError(f"{where}: n_classes={ds.n_classes} must be >= 1")
    if len(ds.feature_names) != ds.n_features:
        raise ValueError(
            f"{where}: {len(ds.feature_names)} feature_names for {ds.n_features} features"
        )
    if ds.layout is not None and math.prod(ds.layout) != ds.n_features:
        raise ValueError(f"{where}: layout {ds.layout} does not hold {ds.n_features} features")
    if len(ds.class_names) != ds.n_classes:
        raise ValueError(f"{where}: {len(ds.class_names)} class_names for {ds.n_classes} classes")
    finite = torch.isfinite(ds.x)
    if not bool(finite.all()):
        row, col = (int(i) for i in (~finite).nonzero()[0])
        count = int((~finite).sum())
        are = "value is" if count == 1 else "values are"
        raise ValueError(
            f"{where}: {count} feature {are} NaN or infinite "
            f"(first at row {row}, column {ds.feature_names[col]!r})"
        )
    return ds


def from_tensors(
    name: str,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    feature_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    n_classes: int | None = None,
) -> Dataset:
    """Build a validated `Dataset` from user tensors.

    Floating features are cast to float32 and integer labels to int64; other dtypes are left
    as they are so that `validate_dataset` can name them.

    Args:
        name: a name for messages.
        x: features, shape (N, n_features).
        y: class indices, shape (N,).
        feature_names: defaults to `x0, x1, ...`.
        class_names: defaults to `"0", "1", ...`.
        n_classes: defaults to `max(y) + 1` (at least the number of `class_names`).
    """
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if x.is_floating_point():
        x = x.to(torch.float32)
    integer_labels = not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)
    if integer_labels:
        y = y.to(torch.int64)
    if n_classes is None:
        inferred = int(y.max()) + 1 if integer_labels and y.numel() > 0 else 0
        n_classes = max(inferred, len(class_names) if class_names is not None else 0)
    n_features = int(x.shape[1]) if x.ndim == 2 else 0
    ds = Dataset(
        name=name,
        x=x,
        y=y,
        feature_names=list(feature_names or [f"x{i}" for i in range(n_features)]),
        class_names=list(class_names or [str(c) for c in range(n_classes)]),
        n_classes=n_classes,
    )
    return validate_dataset(ds)
