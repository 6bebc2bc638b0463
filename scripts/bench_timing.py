"""Measuring helpers for ``scripts/bench.py``: interleaved medians, the GEMM ceiling,
saved-tensor bytes, the training step under test, and machine info.

Every comparison is a ratio of two timings taken in the same process, interleaved block by
block (A B C, C B A, A B C, …) so that slow phases of a noisy machine hit every contender.
A ratio is the median over blocks of the per-block ratio; a time is the median over blocks of
the mean step time within the block.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence

import torch

from neuronlab import MLP, initialize_
from neuronlab.modules import ModelConfig
from neuronlab.optim import SGD
from neuronlab.training.step import TrainStep

DEFAULT_GRANULARITY = ModelConfig().granularity  # what neuronlab-train's manual path runs
# bench mode → model.granularity
GRANULARITY_OF = {"manual": DEFAULT_GRANULARITY, "fused": "layer"}

Step = Callable[[], object]


def sync(device: torch.device) -> None:
    """Wait for queued kernels (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(fn: Step, n: int, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n


def calibrate(fn: Step, device: torch.device, block_s: float, warmup: int,
              max_steps: int) -> int:
    """Steps that make one block last about ``block_s`` seconds (after ``warmup`` steps).

    Times doubling runs until one lasts ``block_s / 4``: a single fast probe on a noisy machine
    would ask for far too many steps.
    """
    for _ in range(warmup):
        fn()
    n = 1
    while True:
        t = _time_once(fn, n, device)
        if t * n >= block_s / 4 or n >= max_steps:
            return int(min(max(1, round(block_s / t)), max_steps))
        n *= 2


def interleaved(
    fns: dict[str, Step],
    device: torch.device,
    *,
    blocks: int = 7,
    block_s: float = 0.25,
    warmup: int = 3,
    max_steps: int = 2000,
) -> dict[str, list[float]]:
    """Per-block mean step times (s) of each callable, the callables alternating block by block.

    Each callable runs ``warmup`` steps first; its steps per block are set so one block takes
    about ``block_s`` seconds (at least one step).
    """
    steps = {name: calibrate(fn, device, block_s, warmup, max_steps) for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for b in range(blocks):
        for name in names if b % 2 == 0 else names[::-1]:
            times[name].append(_time_once(fns[name], steps[name], device))
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over blocks of num[b] / den[b] (both measured in the same block pair)."""
    return median([a / b for a, b in zip(num, den, strict=True)])


def spread(xs: Sequence[float]) -> float:
    """Relative spread of block times: (max − min) / median."""
    return (max(xs) - min(xs)) / median(xs)


# ---- the networks under test ---------------------------------------------------------------


def layer_shapes(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """(n_in, n_out) of each layer of an MLP ``[n_in, h1, …, n_out]``."""
    return list(zip(sizes[:-1], sizes[1:], strict=True))


def step_flops(sizes: Sequence[int], batch: int) -> int:
    """The nominal FLOPs of one training step: 6·B·Σ n_in·n_out (2 forward + 4 backward)."""
    return 6 * batch * sum(a * b for a, b in layer_shapes(sizes))


def build_mlp(
    sizes: Sequence[int], backprop: str, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> MLP:
    """A relu MLP with kaiming-normal weights drawn from ``seed`` (same weights for any mode).

    ``backprop``: manual (the default granularity of ``neuronlab-train``,
    ``ModelConfig().granularity``: the whole network as one Function), op (one Function per
    op), fused (one per layer: ``model.granularity=layer``), network, or autograd."""
    granularity = GRANULARITY_OF.get(backprop, backprop)
    net = MLP(list(sizes), activation="relu",
              backprop="autograd" if backprop == "autograd" else "manual",
              granularity=None if backprop == "autograd" else granularity)
    initialize_(net, distribution="normal", scheme="kaiming",
                generator=torch.Generator().manual_seed(seed))
    return net.to(device=device, dtype=dtype)


def random_batch(
    n_in: int, n_classes: int, batch: int, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ N(0, 1) ``(B, n_in)`` and class indices ``(B,)``, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_in, generator=g).to(device=device, dtype=dtype)
    y = torch.randint(0, n_classes, (batch,), generator=g).to(device)
    return x, y


class BenchStep:
    """One training step of an MLP, as users run it: ``neuronlab.training.step.TrainStep`` (forward
    to the logits, cross-entropy, backward, SGD update) on a fixed batch.

    ``mode``: eager | compiled (the whole step, update included, under ``torch.compile`` with
    ``compile_backend``) | graph (one CUDA graph, replayed). ``precision``: Lightning's names.
    """

    def __init__(
        self, sizes: Sequence[int], batch: int, backprop: str, device: torch.device,
        dtype: torch.dtype, mode: str = "eager", precision: str = "32-true",
        compile_backend: str = "inductor", lr: float = 1e-3,
    ) -> None:
        self.net = build_mlp(sizes, backprop, device, dtype)
        self.x, self.y = random_batch(sizes[0], sizes[-1], batch, device, dtype)
        self.opt = SGD(self.net.parameters(), lr=lr)
        with warnings.catch_warnings(record=True) as caught:  # a fallback is recorded instead
            warnings.simplefilter("always", RuntimeWarning)
            self.step = TrainStep(self.forward_loss, self.opt, mode=mode, precision=precision,
                                  compile_backend=compile_backend,
                                  loop_fn=self.net.loop_pass)
        self.warnings = [str(w.message) for w in caught]

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net.logits_and_loss(x, y, "cross_entropy")[1]  # as LearnTask does

    def __call__(self) -> torch.Tensor:
        return self.step(self.x, self.y)

    def prime(self) -> float:
        """Run the steps before the steady state (warm-up, compile, capture); their seconds."""
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for _ in range(self.step.warmup_steps + 2):
                self()
        sync(self.x.device)
        return time.perf_counter() - t0

    def saved_bytes(self) -> dict[str, int]:
        """Bytes of the unique storages the autograd graph saves for backward (one eager step).

        ``saved_bytes`` counts every storage (weights included); ``saved_activation_bytes``
        leaves out the parameters, which live anyway.
        """
        storages: dict[int, int] = {}
        params = {p.untyped_storage().data_ptr() for p in self.net.parameters()}

        def pack(t: torch.Tensor) -> torch.Tensor:
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
            return t

        self.opt.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = self.forward_loss(self.x, self.y)
        loss.backward()
        self.opt.zero_grad(set_to_none=True)
        return {
            "saved_bytes": sum(storages.values()),
            "saved_activation_bytes": sum(n for p, n in storages.items() if p not in params),
        }

    def peak_cuda_bytes(self) -> int:
        """``torch.cuda.max_memory_allocated`` over one step (CUDA only)."""
        device = self.x.device
        self.opt.zero_grad(set_to_none=True)
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        self()
        sync(device)
        return int(torch.cuda.max_memory_allocated(device))


def syncs_per_step(step: Step, device: torch.device, n: int = 5) -> float | None:
    """Host-device synchronisations per steady-state step: every sync warns under
    ``torch.cuda.set_sync_debug_mode("warn")``, and the warnings are counted. ``None`` (n/a)
    on the CPU, where nothing waits for a device."""
    if device.type != "cuda":
        return None
    step()
    sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(n):
                step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    sync(device)
    return sum("synchroniz" in str(w.message) for w in caught) / n


def profile_step(step: Step, device: torch.device, n: int = 3, top: int = 6) -> dict:
    """Where a step's time goes (torch.profiler, self CPU time per op and step).

    ``gemm_share`` = time in ``aten::mm``/``aten::addmm`` over the time of all ops; ``top`` are
    the other ops with the most self time, with their calls per step.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    step()
    with profile(activities=activities) as prof:
        for _ in range(n):
            step()
        sync(device)
    events = prof.key_averages()
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, attr) for e in events) or 1.0
    gemm = sum(getattr(e, attr) for e in events if e.key in ("aten::mm", "aten::addmm"))
    others = sorted((e for e in events if e.key not in ("aten::mm", "aten::addmm")),
                    key=lambda e: getattr(e, attr), reverse=True)[:top]
    return {
        "gemm_share": gemm / total,
        "profiled_step_s": total / n / 1e6,
        "top_other_ops": [{"op": e.key, "ms_per_step": getattr(e, attr) / n / 1e3,
                           "calls_per_step": e.count / n} for e in others],
    }


# ---- the ceiling: the step's GEMMs alone ---------------------------------------------------


class GemmSequence:
    """The exact matrix products of one fwd + bwd step of an MLP, run with ``torch.mm``.

    Per layer: forward x Wᵀ ``(B, n_in)·(n_in, n_out)``; backward ∂W = gᵀ x
    ``(n_out, B)·(B, n_in)`` and, except for the first layer (its input needs no gradient),
    ∂x = g W ``(B, n_out)·(n_out, n_in)``. Outputs are preallocated (``out=``), so this is the
    arithmetic alone, the upper bound of a step's speed.
    """

    def __init__(
        self, sizes: Sequence[int], batch: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        g = torch.Generator().manual_seed(0)

        def rand(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

        self.gemms: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for i, (n_in, n_out) in enumerate(layer_shapes(sizes)):
            x, w, grad = rand(batch, n_in), rand(n_out, n_in), rand(batch, n_out)
            self.gemms.append((f"fwd {batch}x{n_in}·{n_in}x{n_out}", x, w.t(),
                               rand(batch, n_out)))
            self.gemms.append((f"dW {n_out}x{batch}·{batch}x{n_in}", grad.t(), x,
                               rand(n_out, n_in)))
            if i > 0:
                self.gemms.append((f"dx {batch}x{n_out}·{n_out}x{n_in}", grad, w,
                                   rand(batch, n_in)))
        self.device = device

    @property
    def flops(self) -> int:
        """FLOPs actually performed: 2·m·k·n per product."""
        return sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for _, a, b, _ in self.gemms)

    def __call__(self) -> None:
        for _, a, b, out in self.gemms:
            torch.mm(a, b, out=out)

    def per_gemm(self, blocks: int, block_s: float, warmup: int = 3) -> list[dict]:
        """Throughput of each product on its own (FLOP/s), interleaved."""
        fns = {name: (lambda a=a, b=b, o=o: torch.mm(a, b, out=o))
               for name, a, b, o in self.gemms}
        times = interleaved(fns, self.device, blocks=blocks, block_s=block_s, warmup=warmup)
        rows = []
        for name, a, b, _ in self.gemms:
            t = median(times[name])
            flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
            rows.append({"gemm": name, "time_s": t, "flops_per_s": flops / t})
        return rows


# ---- machine -------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_busy(interval: float = 0.5) -> float | None:
    """Share of the machine's CPU time spent busy over ``interval`` seconds (/proc/stat),
    sampled while this process sleeps: the load other processes put on the machine."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = read()
        time.sleep(interval)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def machine_info(device: torch.device) -> dict:
    import lightning
    import sklearn

    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
        "others_cpu_busy_at_start": cpu_busy(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def finite_positive(x: float) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0
