"""MNIST-1D (Greydanus 2020, "Scaling down deep learning"): ten digits drawn as 1-D signals.

Each digit is a template of 12 numbers; a sample is its template padded with 36-60 zeros,
stretched, scaled, shifted, given correlated noise where it was padded and iid noise
everywhere, sheared, and read at 40 points. A logistic regression gets 32 % of the test set
right, an MLP 68 %, a CNN 94 % (the paper's table, 4,000 train / 1,000 test): small enough for
a CPU, hard enough to separate the architectures.

The signals come from the `mnist1d` package's own `transform` and templates, run here on
this machine: nothing is downloaded (the package's `get_dataset` would fetch a pickle from
GitHub; it is never called). The package draws from numpy's global generator, seeded with
`seed` as the package seeds it; the global state is restored afterwards. For `n_samples` a
multiple of 10 the result equals `mnist1d.data.make_dataset` with `num_samples=n_samples`,
`seed=seed` (its train and test parts, in order). Generated arrays are cached on disk (see
`neuronlab.data.cache`): at 130-260 µs a signal (1,000,000 take 2-3 minutes on one core) a
large set is made once, then read back in well under a second.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata

import numpy as np
import torch

from neuronlab.data.cache import cache_dir, cached_arrays
from neuronlab.data.container import Dataset

N_CLASSES = 10
MIN_SAMPLES = N_CLASSES  # one signal per digit
DEFAULT_SAMPLES = 5000  # the package's and the paper's: 4,000 train + 1,000 test
PROGRESS_FROM = 500  # sets this large (>= ~1.5 s to make; 5,000 take ~15 s) report progress
SIGNAL_LENGTH = 40  # the package's final_seq_length: each signal read at 40 points
CACHE_FORMAT = 1  # bump when what is stored changes


def make_mnist1d(n_samples: int = DEFAULT_SAMPLES, noise: float = 1.0, seed: int = 0) -> Dataset:
    """MNIST-1D signals, from the on-disk cache or generated (and then cached).

    Args:
        n_samples: number of signals N (>= 10). Classes are balanced: N // 10 each, one more
            for the first N % 10 digits.
        noise: multiplies both noise levels of the paper (correlated noise 0.25, iid noise
            0.02): 1 is the paper, 0 none. The shapes, shifts and shears do not change with
            it: the same seed draws the same ones.
        seed: seed of numpy's global generator while generating, in [0, 2**32).

    Returns:
        `x` (N, 40) float32, standardized over the whole set as the package does it (one mean,
        one std), and `y` (N,) int64 digits 0-9.
    """
    _check_args(n_samples, noise, seed)
    params = {
        "format": CACHE_FORMAT,
        "mnist1d": _package_version(),
        "n_samples": int(n_samples),
        "noise": float(noise),
        "seed": int(seed),
    }

    def make() -> dict[str, np.ndarray]:
        x, y = generate_mnist1d(n_samples, noise, seed, progress=_stderr_progress(n_samples))
        return {"x": x.astype(np.float32), "y": y.astype(np.int64)}

    arrays = cached_arrays("mnist1d", params, make, check=lambda a: _check_arrays(a, n_samples))
    return Dataset(
        name="mnist1d",
        x=torch.from_numpy(arrays["x"]),
        y=torch.from_numpy(arrays["y"]),
        feature_names=[f"x{i}" for i in range(arrays["x"].shape[1])],
        class_names=[str(digit) for digit in range(N_CLASSES)],
        n_classes=N_CLASSES,
        layout=(1, int(arrays["x"].shape[1])),  # one channel, 40 positions: conv1d's layout
    )


def _check_arrays(arrays: dict[str, np.ndarray], n_samples: int) -> str | None:
    """What is wrong with arrays read back from the cache for `n_samples` signals, or `None`."""
    x, y = arrays.get("x"), arrays.get("y")
    if x is None or y is None:
        return f"holding the arrays {sorted(arrays)}, not x and y"
    if x.dtype != np.float32 or x.shape != (n_samples, SIGNAL_LENGTH):
        return f"holding x {x.dtype} {x.shape}, not float32 ({n_samples}, {SIGNAL_LENGTH})"
    if y.dtype != np.int64 or y.shape != (n_samples,):
        return f"holding y {y.dtype} {y.shape}, not int64 ({n_samples},)"
    if not np.isfinite(x).all() or y.min() < 0 or y.max() >= N_CLASSES:
        return "holding non-finite signals or labels outside 0-9"
    return None


def generate_mnist1d(
    n_samples: int,
    noise: float = 1.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the `mnist1d` package's generator (no cache): one `transform` per signal.

    The loop of `mnist1d.data.make_dataset` (digit by digit, then one shuffle, then
    standardization), written out so that any N works and progress can be reported; the
    output is written into one preallocated array.

    Args:
        n_samples, noise, seed: as in `make_mnist1d`.
        progress: called as `progress(done, n_samples)` every 10 % of the signals.

    Returns:
        `x` (N, 40) float64 and `y` (N,) int64.
    """
    _check_args(n_samples, noise, seed)
    from mnist1d.data import get_dataset_args, get_templates  # the package, not this module
    from mnist1d.transform import transform

    args = get_dataset_args()
    args.seed = seed
    args.num_samples = n_samples
    args.corr_noise_scale *= noise
    args.iid_noise_scale *= noise
    templates = get_templates()
    per_digit, extra = divmod(n_samples, N_CLASSES)
    counts = [per_digit + (digit < extra) for digit in range(N_CLASSES)]
    y = np.repeat(np.arange(N_CLASSES), counts)  # (N,) digit by digit, as the package draws
    x = np.empty((n_samples, args.final_seq_length))  # (N, 40)
    every = max(n_samples // 10, 1)
    with _numpy_global_seed(seed):
        for row, digit in enumerate(y):
            x[row], _ = transform(templates["x"][digit], templates["t"], args)
            if progress is not None and ((row + 1) % every == 0 or row + 1 == n_samples):
                progress(row + 1, n_samples)
        shuffle = np.random.permutation(n_samples)
    x, y = x[shuffle], y[shuffle]
    mean, std = x.mean(), x.std()  # one of each for the whole set, as the package does
    x -= mean  # in place: a set of 1,000,000 is 320 MB
    x /= std
    return x, y


def _check_args(n_samples: int, noise: float, seed: int) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
        raise ValueError(f"mnist1d: n_samples={n_samples!r} must be an integer >= {MIN_SAMPLES}")
    if n_samples < MIN_SAMPLES:
        raise ValueError(
            f"mnist1d: n_samples={n_samples} must be >= {MIN_SAMPLES} (one signal per digit)"
        )
    if not noise >= 0:  # `not >=` also rejects NaN
        raise ValueError(f"mnist1d: noise={noise!r} must be >= 0 (a multiple of the paper's)")
    if not 0 <= seed < 2**32:
        raise ValueError(f"mnist1d: seed={seed!r} must be in [0, 2**32) (numpy's global seed)")


def _package_version() -> str:
    try:
        return metadata.version("mnist1d")
    except metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            "data.name='mnist1d' needs the `mnist1d` package: pip install mnist1d"
        ) from None


@contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator (the package's only source of randomness), then put
    back the state it had, so that nobody else's draws change."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _stderr_progress(n_samples: int) -> Callable[[int, int], None] | None:
    """A line on stderr when generating starts, then every 10 % (made once, then cached)."""
    if n_samples < PROGRESS_FROM:
        return None
    start = time.perf_counter()
    print(f"mnist1d: generating {n_samples:,} signals once; they are cached in {cache_dir()}",
          file=sys.stderr, flush=True)

    def report(done: int, total: int) -> None:
        seconds = time.perf_counter() - start
        print(f"mnist1d: {done:,} / {total:,} ({100 * done // total}%) in {seconds:.0f} s",
              file=sys.stderr, flush=True)

    return report
