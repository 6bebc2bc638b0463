"""The report's pictures (matplotlib's object API, no global state, so the Agg canvas is used):
loss curves per run, the final metric against a swept parameter, a neuron's weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .sweep import Run

DPI = 80
REPLICATE_KEYS = ("seed", "data.seed")  # repeats of one setting, averaged rather than swept


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def label(run: Run, keys: list[str]) -> str:
    """``optimizer.lr=0.01,seed=1``: the run's values of the swept ``keys``."""
    return ",".join(f"{k}={run.params.get(k)}" for k in keys) or run.name


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1) * 0.9) for i in range(n)]


def plot_loss_curves(runs: list[Run], keys: list[str], path: Path) -> Path | None:
    """Training loss against step, one line per run (colored in sweep order); a run that
    diverged ends with ×, one that failed with ■."""
    tagged = [(r, r.curves.get("train/loss_step") or r.curves.get("train/loss")) for r in runs]
    tagged = [(r, c) for r, c in tagged if c and c[0]]
    if not tagged:
        return None
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    values = [v for _, (_, vs) in tagged for v in vs if math.isfinite(v) and v > 0]
    for (run, (steps, vals)), color in zip(tagged, _colors(len(tagged)), strict=True):
        text = label(run, keys) if len(tagged) <= 16 else None
        if run.status != "ok":
            text = f"{text} ({run.status})" if text else None
        ax.plot(steps, vals, color=color, lw=1.3, ls="-" if run.status == "ok" else "--",
                label=text)
        if run.status in ("diverged", "failed"):
            ax.plot(steps[-1], vals[-1], "x" if run.status == "diverged" else "s", color="red",
                    ms=8, mew=2)
    if values and max(values) / min(values) > 50:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="training loss", title="training loss per run")
    if len(tagged) <= 16:
        ax.legend(fontsize=7, ncol=2 if len(tagged) > 8 else 1)
    return _save(fig, path)


def _numeric(values: list) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_final_vs(runs: list[Run], key: str, keys: list[str], metric: str,
                  path: Path) -> Path | None:
    """``metric`` at the end of each run against the swept ``key``: dots per run, a line
    through the mean over replicates (seeds) of the runs that finished ok, one line per
    setting of the other swept keys; diverged (×) and failed (■) runs on the top edge."""
    xs = [r.params.get(key) for r in runs]
    if not _numeric(xs):
        return None
    others = [k for k in keys if k != key and k not in REPLICATE_KEYS]
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(label(r, others) if others else "", []).append(r)
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    finite = [r.final(metric) for r in runs if r.status == "ok" and math.isfinite(r.final(metric))]
    labelled: set[str] = set()  # one legend entry per bad status
    for (name, members), color in zip(groups.items(), _colors(len(groups)), strict=True):
        ok = [(r.params[key], r.final(metric)) for r in members
              if r.status == "ok" and math.isfinite(r.final(metric))]
        by_x: dict[float, list[float]] = {}
        for x, y in ok:
            by_x.setdefault(x, []).append(y)
        line_x = sorted(by_x)
        ax.plot(line_x, [np.mean(by_x[x]) for x in line_x], "-o", color=color, ms=4,
                label=name or f"{metric} (ok runs)")
        if any(len(v) > 1 for v in by_x.values()):
            ax.plot([x for x, _ in ok], [y for _, y in ok], ".", color=color, alpha=0.5)
        for r in members:
            if r.status in ("diverged", "failed"):
                ax.plot(r.params[key], 0.96, "x" if r.status == "diverged" else "s",
                        color="red", ms=9, mew=2, transform=ax.get_xaxis_transform(),
                        label=None if r.status in labelled else
                        {"diverged": "diverged (loss → ∞)"}.get(r.status, r.status))
                labelled.add(r.status)
    lo, hi = min(xs), max(xs)
    if lo > 0 and hi / lo >= 100:  # rates, scales: log-spaced
        ax.set_xscale("log")
        ax.set_xlim(lo / 2, hi * 2)  # the × of diverged runs do not widen the axes themselves
    else:
        pad = 0.05 * (hi - lo or 1.0)
        ax.set_xlim(lo - pad, hi + pad)
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
        ax.set_yscale("log")
    if finite:
        top = max(finite)
        ax.set_ylim(top=top * (3 if ax.get_yscale() == "log" else 1.25))
    ax.set(xlabel=key, ylabel=f"final {metric}", title=f"final {metric} against {key}")
    ax.legend(fontsize=7, ncol=2 if len(groups) > 6 else 1)
    return _save(fig, path)


def plot_feature_weights(runs: list[Run], path: Path) -> Path | None:
    """A neuron's learned weight per feature (bars: mean over the ok runs, dots: each run) and,
    when recorded (``WeightTrace``), each weight over training."""
    done = [r for r in runs if r.status == "ok" and r.feature_weights]
    if not done:
        return None
    names = list(done[0].feature_weights)
    traced = [r for r in done if r.weight_trace]
    fig = Figure(figsize=(11 if traced else 6, 4))
    ax = fig.add_subplot(1, 2 if traced else 1, 1)
    colors = [f"C{i}" for i in range(len(names))]
    values = np.array([[r.feature_weights[n] for n in names] for r in done])  # (R, F)
    ax.bar(names, values.mean(0), color=colors, alpha=0.75)
    for j in range(len(names)):
        ax.plot(np.full(len(done), j) + np.linspace(-0.2, 0.2, len(done)), values[:, j], "k.",
                ms=5)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(ylabel="learned weight", title=f"what the neuron learned ({len(done)} runs: bar = "
           "mean, dots = runs)")
    ax.tick_params(axis="x", labelsize=8)
    if traced:
        ax2 = fig.add_subplot(1, 2, 2)
        for i, r in enumerate(traced):
            steps = r.weight_trace["steps"]
            for n, color in zip(names, colors, strict=True):
                ax2.plot(steps, r.weight_trace["weights"][n], color=color, lw=1, alpha=0.7,
                         label=n if i == 0 else None)
        ax2.axhline(0, color="black", lw=0.8)
        ax2.set(xlabel="step", ylabel="weight", title="the weights over training (every run)")
        ax2.legend(fontsize=8)
    return _save(fig, path)
