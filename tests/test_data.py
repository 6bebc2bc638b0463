# pytest tests/test_data.py
"""neuronlab.data: data sets, validation, splits, standardization and the TensorLoader."""

from __future__ import annotations

import inspect

import lightning as L
import numpy as np
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
    make_mnist1d,
)

BUNDLED = {"digits", "breast_cancer", "iris"}


@pytest.fixture(autouse=True, scope="module")
def _cache_in_a_temporary_folder(tmp_path_factory):
    """MNIST-1D is cached on disk: in this module, in a folder of its own, not ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEURONLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


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


@pytest.mark.parametrize("gather_bytes", [1, 3 * 16 * 4, 2**30])
def test_batches_are_the_epoch_orders_rows_however_the_epoch_is_gathered(gather_bytes,
                                                                        monkeypatch):
    import neuronlab.data.loader as loader_module

    monkeypatch.setattr(loader_module, "GATHER_BYTES", gather_bytes)  # 1 batch, 3, all
    x, y = torch.randn(75, 4), torch.arange(75)
    loader = TensorLoader(x, y, 16, shuffle=True, seed=3)
    for epoch in (0, 1):
        order = loader.sampler.order(epoch)
        for i, (xb, yb) in enumerate(loader):
            idx = order[16 * i:16 * (i + 1)]
            assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
            assert xb.is_contiguous()
    resumed = TensorLoader(x, y, 16, shuffle=True, seed=3, batches_done=lambda: 2)
    rest = [yb for _, yb in resumed]  # epoch 0 from its third batch
    assert torch.equal(torch.cat(rest), loader.sampler.order(0)[32:])


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
            r"digits, iris, mnist1d, moons, spirals, xor; did you mean 'moons'\?",
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


# ---- MNIST-1D ----------------------------------------------------------------------------


def test_mnist1d_is_40_numbers_per_signal_ten_balanced_digits_standardized():
    ds = load_dataset("mnist1d", n_samples=203, seed=1)
    assert ds.x.shape == (203, 40) and ds.n_features == 40
    assert ds.n_classes == 10 and ds.class_names == [str(d) for d in range(10)]
    assert ds.y.bincount().tolist() == [21, 21, 21] + [20] * 7  # N // 10, the first N % 10 +1
    assert abs(float(ds.x.mean())) < 1e-5 and abs(float(ds.x.std(correction=0)) - 1) < 1e-5


def test_mnist1d_is_the_packages_generator_and_leaves_numpys_global_state_alone():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 120, 7
    ref = make_dataset(args)  # the package's own loop, train and test parts
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    ds = load_dataset("mnist1d", n_samples=120, seed=7)
    assert np.array_equal(np.random.get_state()[1], before)
    expected_x = np.concatenate([ref["x"], ref["x_test"]]).astype(np.float32)
    assert np.array_equal(ds.x.numpy(), expected_x)
    assert np.array_equal(ds.y.numpy(), np.concatenate([ref["y"], ref["y_test"]]))


def test_mnist1d_seed_decides_the_signals_and_noise_scales_only_the_noise():
    from neuronlab.data.mnist1d import generate_mnist1d

    a = load_dataset("mnist1d", n_samples=100, seed=5)
    assert torch.equal(a.x, load_dataset("mnist1d", n_samples=100, seed=5).x)
    assert not torch.equal(a.x, load_dataset("mnist1d", n_samples=100, seed=6).x)
    clean, _ = generate_mnist1d(100, noise=0.0, seed=5)
    half, _ = generate_mnist1d(100, noise=0.5, seed=5)
    paper, _ = generate_mnist1d(100, noise=1.0, seed=5)
    assert np.allclose(paper, a.x.numpy(), atol=1e-6)
    # the same shapes, shifts and shears under more and more noise
    assert 0 < np.abs(half - clean).mean() < np.abs(paper - clean).mean()
    assert np.corrcoef(clean.ravel(), paper.ravel())[0, 1] > 0.8


def test_mnist1d_default_is_the_papers_size_and_the_config_splits_4000_1000_1000(tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from neuronlab.config import compose

    default = inspect.signature(make_mnist1d).parameters["n_samples"].default
    assert default == 5000  # the package's and the paper's: 4,000 + 1,000
    cfg = compose(["data=mnist1d", "model=mlp"], output_dir=tmp_path)
    dm = instantiate(OmegaConf.to_container(cfg.data, resolve=True))
    dm.setup()
    sizes = {k: v for k, v in dm.describe().items() if k.startswith("n_")}
    assert sizes == {"n_train": 4000, "n_val": 1000, "n_test": 1000, "n_features": 40,
                     "n_classes": 10}


def test_mnist1d_is_cached_once_and_read_back_without_generating(monkeypatch, tmp_path):
    import neuronlab.data.mnist1d as mnist1d_module
    from neuronlab.data.cache import cache_path

    monkeypatch.setenv("NEURONLAB_CACHE_DIR", str(tmp_path))
    first = load_dataset("mnist1d", n_samples=50, noise=0.5, seed=2)
    (stored,) = tmp_path.glob("mnist1d-*.npz")  # one file, no temporary left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [stored.name]

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(mnist1d_module, "generate_mnist1d", no_generation)
    again = load_dataset("mnist1d", n_samples=50, noise=0.5, seed=2)
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    with pytest.raises(AssertionError, match="generated again"):  # other params: a new entry
        load_dataset("mnist1d", n_samples=50, noise=0.5, seed=3)
    stored.write_bytes(b"truncated")  # a broken entry is made again, not trusted
    with pytest.raises(AssertionError, match="generated again"):
        load_dataset("mnist1d", n_samples=50, noise=0.5, seed=2)
    params = {"format": 1, "mnist1d": "0", "n_samples": 1, "noise": 1.0, "seed": 0}
    assert cache_path("mnist1d", params) == cache_path("mnist1d", dict(reversed(params.items())))


def test_mnist1d_works_without_a_writable_cache_and_says_so(monkeypatch, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("NEURONLAB_CACHE_DIR", str(not_a_folder))
    with pytest.warns(UserWarning, match="could not cache mnist1d.*NEURONLAB_CACHE_DIR"):
        ds = load_dataset("mnist1d", n_samples=20)
    assert len(ds) == 20


def test_mnist1d_reports_progress_every_tenth():
    from neuronlab.data.mnist1d import generate_mnist1d

    calls = []
    generate_mnist1d(25, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2 * k, 25) for k in range(1, 13)] + [(25, 25)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 5}, r"data.n_samples=5 must be an integer >= 10 for data.name='mnist1d'"),
        ({"noise": -1.0}, r"data.noise=-1.0 must be >= 0 .*multiplies the paper's noise"),
        ({"name": "mnist"}, r"data.name='mnist' is not one of: .*did you mean 'mnist1d'\?"),
    ],
)
def test_mnist1d_bad_config_values_name_the_key_and_what_is_allowed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NeuronDataModule(**{"name": "mnist1d", **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 9}, r"mnist1d: n_samples=9 must be >= 10 \(one signal per digit\)"),
        ({"n_samples": 10.0}, r"mnist1d: n_samples=10.0 must be an integer"),
        ({"noise": float("nan")}, r"mnist1d: noise=nan must be >= 0"),
        ({"seed": -1}, r"mnist1d: seed=-1 must be in \[0, 2\*\*32\)"),
    ],
)
def test_make_mnist1d_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_mnist1d(**kwargs)


@pytest.mark.slow
def test_mnist1d_mlp_reaches_the_papers_mlp_accuracy(tmp_path):
    """`neuronlab-train experiment=mnist1d_mlp`: at least the paper's 68 % (MLP, 4,000 train)."""
    from neuronlab.config import compose
    from neuronlab.training.run import train

    record = train(compose(["experiment=mnist1d_mlp", "~logger", "callbacks.progress_bar=null"],
                           output_dir=tmp_path))
    assert record["status"] == "ok"
    assert record["metrics"]["test/acc"] >= 0.68
