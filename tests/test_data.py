# pytest tests/test_data.py
"""neuronlab.data: data sets, validation, splits, standardization and the TensorLoader."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from neuronlab.data import (
    CAT_FEATURES,
    DATASETS,
    Dataset,
    NeuronDataModule,
    TensorLoader,
    from_tensors,
    load_dataset,
)

BUNDLED = {"digits", "breast_cancer", "iris"}


def _ids_dataset(n: int = 100, name: str = "ids") -> Dataset:
    """Column 0 is the row id, so splits and batches can be traced back to rows."""
    x = torch.stack([torch.arange(n, dtype=torch.float32), torch.linspace(-1, 1, n)], dim=1)
    return from_tensors(name, x, torch.arange(n) % 2)


def _epoch_ids(loader: TensorLoader) -> list[torch.Tensor]:
    return [x[:, 0].long() for x, _ in loader]


# ---- data sets ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_loads_with_shapes_dtypes_and_labels(name):
    ds = load_dataset(name, seed=3)
    n = len(ds)
    assert ds.name == name and n > 0
    assert ds.x.dtype == torch.float32 and ds.x.shape == (n, ds.n_features)
    assert ds.y.dtype == torch.int64 and ds.y.shape == (n,)
    assert len(ds.feature_names) == ds.n_features and len(ds.class_names) == ds.n_classes
    assert int(ds.y.min()) >= 0 and int(ds.y.max()) < ds.n_classes
    assert torch.isfinite(ds.x).all()
    again = load_dataset(name, seed=3)
    assert torch.equal(ds.x, again.x) and torch.equal(ds.y, again.y)
    if name not in BUNDLED:
        assert not torch.equal(ds.x, load_dataset(name, seed=4).x)
        assert len(load_dataset(name, n_samples=37)) == 37


def test_bundled_sets_take_a_seeded_subset_and_ignore_noise():
    full = load_dataset("digits")
    assert full.x.shape == (1797, 64) and full.n_classes == 10
    sub = load_dataset("digits", n_samples=100, noise=5.0, seed=1)
    assert len(sub) == 100
    assert torch.equal(sub.x, load_dataset("digits", n_samples=100, seed=1).x)
    assert not torch.equal(sub.x, load_dataset("digits", n_samples=100, seed=2).x)
    assert len(load_dataset("iris", n_samples=10_000)) == 150  # larger than the set: all of it


def test_cats_are_confidences_about_half_cats():
    ds = load_dataset("cats")
    assert (
        ds.feature_names == CAT_FEATURES == ["tail", "two_eyes", "horn", "whiskers", "pointy_ears"]
    )
    assert ds.class_names == ["not_cat", "cat"]
    assert len(ds) == 1000 and 0.0 <= float(ds.x.min()) and float(ds.x.max()) <= 1.0
    assert 0.4 < ds.y.float().mean() < 0.6
    horn = ds.x[:, CAT_FEATURES.index("horn")] > 0.5
    assert (ds.y[horn] == 0).float().mean() > 0.95  # a horn means a unicorn, never a cat


def _logistic_regression(x, y, steps=2000, lr=1.0):
    """Full-batch gradient descent on BCE, gradients written out: x (N, F), y (N,)."""
    x, y = x.double(), y.double()
    w, b = torch.zeros(x.shape[1], dtype=x.dtype), torch.zeros((), dtype=x.dtype)
    for _ in range(steps):
        error = torch.sigmoid(x @ w + b) - y  # ∂L/∂z for sigmoid + BCE, (N,)
        w -= lr * (x.T @ error) / len(y)
        b -= lr * error.mean()
    return w


@pytest.mark.parametrize("seed", range(5))
def test_a_logistic_neuron_reads_the_cat_features(seed):
    ds = load_dataset("cats", seed=seed)
    w = dict(zip(CAT_FEATURES, _logistic_regression(ds.x, ds.y).tolist(), strict=True))
    assert w["tail"] > 0 and w["horn"] < 0
    assert abs(w["two_eyes"]) < 0.25 * min(abs(w["tail"]), abs(w["horn"]))
    assert 0 < w["whiskers"] < w["tail"] and 0 < w["pointy_ears"] < w["tail"]


# ---- splits and standardization ----------------------------------------------------------


def test_splits_are_disjoint_cover_everything_and_setup_is_idempotent():
    dm = NeuronDataModule(
        dataset=_ids_dataset(100), val_fraction=0.2, test_fraction=0.1, standardize=False
    )
    dm.setup("fit")
    ids = [t[0][:, 0].long() for t in (dm.train_tensors, dm.val_tensors, dm.test_tensors)]
    assert [len(i) for i in ids] == [70, 20, 10]
    assert sorted(torch.cat(ids).tolist()) == list(range(100))
    first = dm.train_tensors[0]
    dm.setup("test")
    assert dm.train_tensors[0] is first
    assert dm.describe() == {
        "name": "ids",
        "n_train": 70,
        "n_val": 20,
        "n_test": 10,
        "n_features": 2,
        "n_classes": 2,
        "standardize": False,
        "batch_size": 64,
    }


def test_standardization_uses_train_statistics_only():
    raw = NeuronDataModule("moons", n_samples=300, standardize=False)
    std = NeuronDataModule("moons", n_samples=300)
    raw.setup()
    std.setup()
    x_train = std.train_tensors[0]
    assert torch.allclose(x_train.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(x_train.std(0, correction=0), torch.ones(2), atol=1e-5)
    assert torch.allclose(std.mean, raw.train_tensors[0].mean(0))
    for split in ("val", "test"):
        expected = (getattr(raw, f"{split}_tensors")[0] - std.mean) / std.std
        assert torch.allclose(getattr(std, f"{split}_tensors")[0], expected)
        assert not torch.allclose(getattr(std, f"{split}_tensors")[0].mean(0), torch.zeros(2))


def test_cats_keep_raw_confidences_and_a_constant_column_is_not_divided_by_zero():
    cats = NeuronDataModule("cats")
    cats.setup()
    assert cats.mean is None and float(cats.train_tensors[0].max()) <= 1.0
    x = torch.cat(
        [torch.randn(50, 1, generator=torch.Generator().manual_seed(0)), torch.ones(50, 1)], dim=1
    )
    dm = NeuronDataModule(dataset=from_tensors("flat", x, torch.arange(50) % 2))
    dm.setup()
    assert dm.std[1] == 1.0 and torch.isfinite(dm.train_tensors[0]).all()


# ---- TensorLoader ------------------------------------------------------------------------


def test_train_loader_covers_the_split_once_per_epoch_in_a_reproducible_order():
    dm = NeuronDataModule(
        dataset=_ids_dataset(100), batch_size=16, val_fraction=0.1, standardize=False
    )
    dm.setup()
    loader = dm.train_dataloader()
    assert isinstance(loader, TensorLoader) and len(loader) == 5  # 75 rows: 4 × 16 + 11
    train_ids = sorted(dm.train_tensors[0][:, 0].long().tolist())
    epochs = [_epoch_ids(loader) for _ in range(3)]  # iterating advances the epoch
    for batches in epochs:
        assert [len(b) for b in batches] == [16, 16, 16, 16, 11]
        assert sorted(torch.cat(batches).tolist()) == train_ids
    assert not torch.equal(torch.cat(epochs[1]), torch.cat(epochs[2]))
    fresh = dm.train_dataloader()  # a new process resuming at epoch 2
    fresh.set_epoch(2)
    assert torch.equal(torch.cat(_epoch_ids(fresh)), torch.cat(epochs[2]))
    val = dm.val_dataloader()
    assert torch.equal(torch.cat(_epoch_ids(val)), torch.cat(_epoch_ids(val)))


def test_lightning_sets_the_epoch_through_loader_sampler_and_a_probe_costs_nothing():
    loader = TensorLoader(torch.zeros(10, 1), torch.zeros(10, dtype=torch.long), 4, True)
    _set_sampler_epoch(loader, 5)  # what FitLoop.on_advance_start calls
    assert loader.epoch == 5
    iter(loader)  # Lightning's `_check_dataloader_iterable` probe
    assert loader.epoch == 5
    next(iter(loader))
    assert loader.epoch == 6


def test_ddp_shards_are_equal_and_together_make_the_global_batch():
    x, y = _ids_dataset(50).x, torch.zeros(50, dtype=torch.long)
    for batch_size in (8, 7, None):
        single = TensorLoader(x, y, batch_size, shuffle=True, seed=1)
        ranks = [TensorLoader(x, y, batch_size, True, 1, rank=r, world_size=2) for r in (0, 1)]
        assert len(ranks[0]) == len(ranks[1]) == len(single)
        for whole, r0, r1 in zip(_epoch_ids(single), *map(_epoch_ids, ranks), strict=True):
            assert len(r0) == len(r1)  # equal shards, padded when the batch is odd
            if len(whole) % 2 == 0:
                assert sorted(torch.cat([r0, r1]).tolist()) == sorted(whole.tolist())
            assert set(torch.cat([r0, r1]).tolist()) == set(whole.tolist())


def test_full_batch_is_one_batch_of_the_whole_split():
    dm = NeuronDataModule("xor", n_samples=200, batch_size=None)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and torch.equal(
        batches[0][1].sort().values, dm.train_tensors[1].sort().values
    )
    loader = dm.val_dataloader()
    assert len(loader) == 1 and next(iter(loader))[0].shape == dm.val_tensors[0].shape


def test_device_copies_are_cached_and_non_resident_mode_is_a_dataloader():
    dm = NeuronDataModule("xor", n_samples=100)
    dm.setup()
    assert dm.train_dataloader().x is dm.train_dataloader().x
    plain = NeuronDataModule("xor", n_samples=100, batch_size=None, device_resident=False)
    plain.setup()
    loader = plain.train_dataloader()
    assert isinstance(loader, DataLoader) and len(loader) == 1
    assert len(next(iter(loader))[0]) == len(plain.train_tensors[0])


class _Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(5, 2)
        self.seen: dict[int, list[torch.Tensor]] = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.setdefault(self.current_epoch, []).append(x)
        return torch.nn.functional.cross_entropy(self.linear(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path, max_epochs, ckpt_path=None):
    model = _Recorder()
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, NeuronDataModule("cats", n_samples=120, batch_size=32), ckpt_path=ckpt_path)
    return model, trainer


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_resumed_lightning_run_sees_the_same_epoch_order(tmp_path):
    full, _ = _fit(tmp_path / "full", 3)
    first, trainer = _fit(tmp_path / "first", 2)
    resumed, _ = _fit(tmp_path / "resumed", 3, trainer.checkpoint_callback.best_model_path)
    assert sorted(resumed.seen) == [2]
    assert torch.equal(torch.cat(resumed.seen[2]), torch.cat(full.seen[2]))
    assert torch.equal(torch.cat(first.seen[1]), torch.cat(full.seen[1]))
    assert not torch.equal(torch.cat(full.seen[1]), torch.cat(full.seen[2]))


# ---- errors that name the data set or the key --------------------------------------------


def _bad(x=None, y=None, **kwargs):
    x = torch.rand(20, 3) if x is None else x
    y = torch.arange(20) % 2 if y is None else y
    return from_tensors("mine", x, y, **kwargs)


def test_nan_and_infinite_features_are_counted_and_located():
    x = torch.rand(20, 3)
    x[12, 0] = float("nan")
    x[15, 2] = float("inf")
    x[16, 1] = float("-inf")
    with pytest.raises(
        ValueError,
        match=r"data 'mine': 3 feature values are NaN or infinite "
        r"\(first at row 12, column 'a'\)",
    ):
        _bad(x, feature_names=["a", "b", "c"])
    x = torch.rand(20, 3)
    x[4, 1] = float("inf")
    with pytest.raises(
        ValueError, match=r"data 'mine': 1 feature value is NaN or infinite.*row 4, column 'x1'"
    ):
        _bad(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y": torch.full((20,), 3), "n_classes": 2}, r"data 'mine'.*range \[0, 2\).*values \[3\]"),
        ({"y": torch.full((20,), -1)}, r"data 'mine'.*outside the allowed range"),
        ({"y": torch.zeros(20)}, r"data 'mine'.*integer.*torch.float32"),
        ({"x": torch.zeros(0, 3), "y": torch.zeros(0, dtype=torch.long)}, r"data 'mine'.*empty"),
        ({"y": torch.zeros(19, dtype=torch.long)}, r"data 'mine'.*20 feature rows but 19"),
    ],
)
def test_bad_labels_and_shapes_raise_naming_the_data_set(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _bad(**kwargs)


def test_an_empty_split_is_named_with_the_fix():
    dm = NeuronDataModule("xor", n_samples=3, test_fraction=0.1, val_fraction=0.4)
    with pytest.raises(
        ValueError,
        match=r"data 'xor': the test split is empty \(n_samples=3, "
        r"test_fraction=0.1\); use more samples or a larger",
    ):
        dm.setup()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"name": "moon"},
            r"data.name='moon' is not one of: breast_cancer, cats, circles, "
            r"digits, iris, moons, spirals, xor; did you mean 'moons'\?",
        ),
        ({"name": "nope"}, r"data.name='nope' is not one of: breast_cancer, .*xor$"),
        ({"val_fraction": 1.0}, r"data.val_fraction=1.0 must be in \[0, 1\)"),
        ({"test_fraction": -0.1}, r"data.test_fraction=-0.1"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, r"data.val_fraction \+ data.test_fraction"),
        ({"batch_size": 0}, r"data.batch_size=0 must be >= 1 or None"),
        ({"n_samples": 0}, r"data.n_samples=0"),
        ({"noise": -1.0}, r"data.noise=-1.0 must be >= 0"),
    ],
)
def test_bad_config_values_raise_at_construction_naming_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NeuronDataModule(**kwargs)
