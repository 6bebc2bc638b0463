"""The learning-rate range test: train a few hundred steps while the rate grows exponentially,
record the loss at each step, and suggest a rate from where the loss falls.

Lightning's ``Tuner.lr_find`` runs the steps; the suggestion is ours, because Lightning's
``suggestion()`` is easily fooled:

1. it differentiates the loss with respect to the *rate* on exponentially spaced rates, so a
   wiggle among the tiny early rates (Δlr ≈ 1e-7) outweighs the real descent (Δlr ≈ 1e-2);
2. it reads an EMA of the loss (β = 0.98) whose lag, ~β/(1−β) = 49 steps, is several decades
   of rate in a 100–200-step test;
3. its bias correction is one step off (``global_step`` is already incremented), so the
   curve starts at loss/(1+β) ≈ half the true loss and "rises" at first.

:func:`suggest_lr` instead takes the raw per-step losses and (a) removes isolated spikes with a
running median, (b) smooths with a *centered* moving average (no lag: the test is over, we
can look both ways), (c) differentiates with respect to ln(lr) (``np.gradient(loss, log_lr)``,
uniform spacing), (d) ignores the first ``window`` points (filter edges) and stops where the
loss first exceeds ``blowup`` × its running minimum (or turns non-finite). (e) It reads
the descent as a distribution over log-rate — each bit of the loss's fall, −slope⁺, votes
for the rate where it happened — and picks

- ``method="median"`` (default): the rate by which half of the fall has happened, the middle
  of the descent (robust: a short dip at the end moves it little);
- ``method="steepest"``: its mode, the most negative slope before the minimum.

On the moons MLP the steepest point is often the short, sharp dip just before the loss blows
up (a rate that diverges in a sweep); the median of the descent sits inside the band of rates
that converge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("median", "steepest")


@dataclass(frozen=True)
class LrSuggestion:
    """The suggested rate and the curve it was read from (arrays cover ``[0, stop)``)."""

    lr: float | None
    index: int | None
    smoothed: np.ndarray  # (stop,) median-filtered, then centered moving average
    slope: np.ndarray  # (stop,) d smoothed / d ln(lr)
    stop: int  # first index left out: blow-up, non-finite loss or the end
    minimum: int  # index of the smoothed minimum (the search ends there)


def _running(values: np.ndarray, window: int, reduce) -> np.ndarray:
    half = window // 2
    return np.array([reduce(values[max(0, i - half): i + half + 1]) for i in range(len(values))])


def smooth_losses(losses: np.ndarray, window: int = 5) -> np.ndarray:
    """Running median (kills isolated spikes), then a centered moving average (no lag)."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window={window} must be an odd integer ≥ 1")
    return _running(_running(np.asarray(losses, float), window, np.median), window, np.mean)


def suggest_lr(
    lrs: np.ndarray | list[float],
    losses: np.ndarray | list[float],
    method: str = "median",
    window: int = 5,
    skip_start: int | None = None,
    blowup: float = 4.0,
    min_drop: float = 0.05,
) -> LrSuggestion:
    """Suggest a learning rate from a range test's raw ``(lr, loss)`` steps.

    Args:
        lrs: ``(N,)`` increasing rates, one per step (exponentially spaced).
        losses: ``(N,)`` the raw training loss of each step (NaN/inf allowed: the end).
        method: ``"median"`` (middle of the descent) or ``"steepest"``.
        window: odd width of the median filter and of the moving average.
        skip_start: points ignored at the start (default ``window``).
        blowup: the search stops where the smoothed loss exceeds ``blowup`` × its running min.
        min_drop: no suggestion unless the smoothed loss falls by this share of its start.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of: {', '.join(METHODS)}")
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise ValueError(f"lrs {lrs.shape} and losses {losses.shape} must be equal 1-D shapes")
    if not (np.all(lrs > 0) and np.all(np.diff(lrs) > 0)):
        raise ValueError("lrs must be positive and increasing")
    skip = window if skip_start is None else skip_start
    bad = np.flatnonzero(~np.isfinite(losses))
    stop = int(bad[0]) if bad.size else len(losses)
    smoothed = smooth_losses(losses[:stop], window) if stop else np.zeros(0)
    for i in range(skip + 1, stop):
        if smoothed[i] > blowup * smoothed[skip: i].min():
            stop = i
            break
    smoothed = smoothed[:stop]
    if stop - skip < 3:
        return LrSuggestion(None, None, smoothed, np.zeros(stop), stop, max(stop - 1, 0))
    slope = np.gradient(smoothed, np.log(lrs[:stop]))
    minimum = skip + int(np.argmin(smoothed[skip:]))
    if smoothed[skip] - smoothed[minimum] < min_drop * abs(smoothed[skip]):  # it never fell
        return LrSuggestion(None, None, smoothed, slope, stop, minimum)
    if method == "steepest":
        index = skip + int(np.argmin(slope[skip: minimum + 1]))
    else:
        fall = np.cumsum(np.clip(-slope[skip: minimum + 1], 0.0, None))
        index = skip + int(np.searchsorted(fall, 0.5 * fall[-1]))
    return LrSuggestion(float(lrs[index]), index, smoothed, slope, stop, minimum)


@dataclass(frozen=True)
class RangeTest:
    """One range test: rates, raw losses, Lightning's reading and ours."""

    lrs: np.ndarray  # (N,)
    losses: np.ndarray  # (N,) raw loss per step
    lightning_losses: np.ndarray  # (N,) Lightning's EMA of the loss
    lightning_lr: float | None  # Lightning's suggestion()
    suggestion: LrSuggestion  # ours, method="median"
    steepest: LrSuggestion  # ours, method="steepest"


def range_test(cfg: Any, min_lr: float = 1e-5, max_lr: float = 10.0, steps: int = 200,
               window: int = 5) -> RangeTest:
    """Run Lightning's range test on the task ``cfg`` describes (a composed training config)
    and read it with :func:`suggest_lr`. Callbacks and logger are dropped; the weights are
    restored afterwards by Lightning."""
    import lightning as L
    import torch
    from lightning.pytorch.tuner import Tuner
    from omegaconf import DictConfig, OmegaConf

    from ..training.run import build, choose_threads

    if not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if steps < 10:
        raise ValueError(f"steps={steps} must be ≥ 10")
    cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    cfg["callbacks"], cfg["logger"] = {}, None
    cfg["trainer"] = {**cfg["trainer"], "max_epochs": -1, "max_steps": steps,
                      "enable_progress_bar": False,
                      "enable_checkpointing": False}
    Path(cfg["paths"]["output_dir"]).mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    datamodule, task, trainer = build(cfg)
    raw: list[float] = []

    def record(outputs, batch, batch_idx) -> None:  # a module hook: the finder swaps callbacks
        raw.append(float(outputs["loss"]) if outputs else float("nan"))

    task.on_train_batch_end = record
    threads_before = torch.get_num_threads()  # as train(): 1 thread for a small model
    threads = cfg.get("torch_threads") or choose_threads(task, datamodule)
    if threads:
        torch.set_num_threads(threads)
    try:
        finder = Tuner(trainer).lr_find(task, datamodule=datamodule, min_lr=min_lr,
                                        max_lr=max_lr, num_training=steps,
                                        early_stop_threshold=None, update_attr=False)
    finally:
        torch.set_num_threads(threads_before)
    del task.on_train_batch_end
    lrs = np.asarray(finder.results["lr"], float)
    n = min(len(lrs), len(raw))
    losses = np.asarray(raw[:n])
    return RangeTest(lrs[:n], losses, np.asarray(finder.results["loss"][:n], float),
                     finder.suggestion(), suggest_lr(lrs[:n], losses, window=window),
                     suggest_lr(lrs[:n], losses, method="steepest", window=window))


def plot_range_test(test: RangeTest, path: str | Path,
                    band: tuple[float, float] | None = None) -> Path:
    """Raw and smoothed loss against the rate (log axis), both suggestions, and the band of
    rates a sweep found converging (shaded) when given."""
    from matplotlib.figure import Figure

    ours = test.suggestion
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    ax.plot(test.lrs, test.losses, ".", ms=3, color="#999999", label="raw loss per step")
    ax.plot(test.lrs[: ours.stop], ours.smoothed, color="#1f77b4", lw=2,
            label="median + centered mean (ours)")
    ax.plot(test.lrs, test.lightning_losses, color="#ff7f0e", lw=1, ls="--",
            label="Lightning's EMA (β=0.98)")
    if band is not None:
        ax.axvspan(*band, color="#2ca02c", alpha=0.12, label="sweep: converges")
    if ours.lr is not None:
        ax.axvline(ours.lr, color="#1f77b4", lw=1.5,
                   label=f"ours, middle of descent: {ours.lr:.3g}")
    if test.steepest.lr is not None:
        ax.axvline(test.steepest.lr, color="#1f77b4", lw=1, ls="--",
                   label=f"steepest descent: {test.steepest.lr:.3g}")
    if test.lightning_lr is not None:
        ax.axvline(test.lightning_lr, color="#ff7f0e", lw=1, ls=":",
                   label=f"Lightning: {test.lightning_lr:.3g}")
    finite = test.losses[np.isfinite(test.losses)]
    top = 2.0 * float(np.median(finite[: max(len(finite) // 5, 1)])) if finite.size else 1.0
    ax.set(xscale="log", ylim=(0, top), xlabel="learning rate (grows every step)",
           ylabel="training loss", title="learning-rate range test")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def save_range_test(test: RangeTest, out_dir: str | Path,
                    band: tuple[float, float] | None = None) -> Path:
    """Write ``lr_find.png`` (:func:`plot_range_test`) and ``lr_find.json`` (rates, raw
    losses, the three suggestions, the band) into ``out_dir``; returns the picture's path."""
    out_dir = Path(out_dir)
    picture = plot_range_test(test, out_dir / "lr_find.png", band=band)
    (out_dir / "lr_find.json").write_text(json.dumps({
        "lr": test.lrs.tolist(), "loss": test.losses.tolist(),
        "suggestion": test.suggestion.lr, "steepest": test.steepest.lr,
        "lightning": test.lightning_lr, "band": band}, indent=1) + "\n")
    return picture
