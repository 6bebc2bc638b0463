"""`TensorLoader`: batches of an in-memory split, already on the model's device.

For data sets of a few thousand rows a `DataLoader` spends its time in Python, one sample at a
time, and copies every batch to the device. `TensorLoader` keeps the split's tensors on the
device and cuts each batch out with one indexing op.

Epochs. The order of epoch k depends only on (seed, k), so a run resumed from a checkpoint at
an epoch boundary sees the same batches as an uninterrupted one. Lightning 2.6 does not call
anything on a custom iterable itself; before every training epoch (and every evaluation run)
it calls `loader.sampler.set_epoch(epoch)` if the loader has a `sampler` with a `set_epoch`
method (`lightning.fabric.utilities.data._set_sampler_epoch`, called from
`FitLoop.on_advance_start` with `epoch_progress.current.processed`, which is restored from the
checkpoint). `TensorLoader.sampler` is an `EpochOrder` for that reason. Outside Lightning,
every iteration that starts advances the epoch by one, and `set_epoch` sets it explicitly.

DDP. Lightning only injects a `DistributedSampler` into a `torch.utils.data.DataLoader`, so
`TensorLoader` shards itself: `batch_size` is the global batch; for each global batch `idx`,
rank r takes `idx[r::world_size]`. Every rank yields the same number of batches; when a batch
does not divide by `world_size` it is padded with its own first indices, so every rank gets
the same count and the ranks together still cover exactly that batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

# at most this many bytes of x are gathered at once (a chunk of whole batches, see ``_slices``)
GATHER_BYTES = 16 * 2**20


class EpochOrder:
    """The order of the rows in each epoch: a permutation seeded from (seed, epoch).

    Lightning calls `set_epoch` on this object (it looks for `loader.sampler.set_epoch`).

    Args:
        n: number of rows.
        shuffle: `False` gives `0, 1, ..., n-1` every epoch.
        seed: base seed; epoch k uses a `torch.Generator` seeded from (seed, k).
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0) -> None:
        self.n = n
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the order of `epoch`."""
        self.epoch = int(epoch)

    def order(self, epoch: int) -> torch.Tensor:
        """The row order of `epoch`, shape (n,), int64, on the CPU."""
        if not self.shuffle:
            return torch.arange(self.n)
        # (seed, epoch) packed into one 64-bit seed: neighbouring seeds do not share epochs
        generator = torch.Generator().manual_seed((self.seed % 2**32) * 2**32 + epoch % 2**32)
        return torch.randperm(self.n, generator=generator)


class TensorLoader:
    """Yield `(x, y)` batches of in-memory tensors, shuffled per epoch and sharded per rank.

    Args:
        x: features, shape (N, n_features), on the device the batches should be on.
        y: labels, shape (N,), same device.
        batch_size: GLOBAL batch size B (over all ranks); `None` for the whole split.
        shuffle: shuffle every epoch (train) or keep the order (val/test).
        seed: seed of the epoch orders.
        rank: this process's rank in [0, world_size).
        world_size: number of processes sharing each global batch.
        batches_done: asked at the start of each epoch how many of its batches were already
            trained (non-zero only when resuming mid-epoch); those are skipped, so a resumed
            epoch continues the same order where it stopped.

    Each batch: `x` (B / world_size, n_features), `y` (B / world_size,); the last may be
    smaller (`drop_last=False`).
    """

    batch_sampler = None  # read by Lightning's helpers next to `sampler`

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batches_done: Callable[[], int] | None = None,
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}; they must match")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1 or None (full batch)")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochOrder(int(x.shape[0]), shuffle, seed)
        self.batches_done = batches_done

    @property
    def epoch(self) -> int:
        """The epoch the next iteration will use."""
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the order of `epoch`."""
        self.sampler.set_epoch(epoch)

    def _global_batch_size(self) -> int:
        n = max(self.sampler.n, 1)
        return n if self.batch_size is None else min(self.batch_size, n)

    def __len__(self) -> int:
        """Number of batches per epoch (global batches: the same on every rank)."""
        return -(-self.sampler.n // self._global_batch_size())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # a generator: the epoch only advances when the first batch is asked for, so a probe
        # such as Lightning's `iter(loader)` check costs nothing and counts for nothing
        epoch = self.sampler.epoch
        self.sampler.epoch = epoch + 1
        order = self.sampler.order(epoch).to(self.x.device)  # one transfer per epoch
        size = self._global_batch_size()
        skip = self.batches_done() if self.batches_done is not None else 0
        if self.world_size == 1:
            yield from self._slices(order, size, skip)
            return
        for start in range(skip * size, self.sampler.n, size):
            idx = order[start : start + size]  # (B,) the global batch
            if len(idx) % self.world_size:
                padded = -(-len(idx) // self.world_size) * self.world_size
                idx = idx[torch.arange(padded, device=idx.device) % len(idx)]
            idx = idx[self.rank :: self.world_size]  # (B / world_size,)
            # index_select: the rows x[idx] picks, at a third of advanced indexing's cost
            yield self.x.index_select(0, idx), self.y.index_select(0, idx)

    def _slices(self, order: torch.Tensor, size: int, skip: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One process: the epoch's rows gathered a chunk of batches at a time (one
        ``index_select`` per chunk, at most ``GATHER_BYTES`` of x), each batch a slice of it: the
        same rows in the same order as a gather per batch, for one indexing op per chunk instead
        of two per batch (on a small data set, a tenth of the CPU step went to them)."""
        row_bytes = max(self.x[:1].nelement() * self.x.element_size(), 1)
        chunk = max(GATHER_BYTES // row_bytes // size, 1) * size  # whole batches
        for start in range(skip * size, self.sampler.n, chunk):
            idx = order[start : start + chunk]
            xs, ys = self.x.index_select(0, idx), self.y.index_select(0, idx)
            for b in range(0, len(idx), size):
                yield xs[b : b + size], ys[b : b + size]
