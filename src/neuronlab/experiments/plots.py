"""The report's pictures (matplotlib's object API, no global state, so the Agg canvas is used):
loss curves per run, the final metric against a swept parameter, a neuron's weights."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .sweep import Curve, Run

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


LINE_STYLES = ("-", "--", "-.", ":")  # cycled, so neighbours in colour differ in dash too


def _loss_curve(run: Run) -> Curve | None:
    """The run's per-step training loss, its steps counted from 1 as the console counts them.

    Lightning logs the loss of the k-th optimizer step at step k − 1 (the number of updates
    before it: the first logged loss is the loss at init), while ``Diverged`` and the run's
    ``steps`` count from 1; the step whose loss diverged is never logged (the run stops before
    the logger writes it). Shifted by one, a diverged run's curve ends at step k − 1 and its
    mark sits at k, the step the console reports."""
    curve = run.curves.get("train/loss_step") or run.curves.get("train/loss")
    if not curve or not curve[0]:
        return None
    steps, values = curve
    return [s + 1 for s in steps], list(values)


def step_axis_note(first: int) -> str:
    """The x label of the loss curves, naming the real first logged step (a plain run logs
    every ``trainer.log_every_n_steps`` steps, so its first point is not the loss at init)."""
    if first <= 1:
        return "step (counted from 1: step 1's loss is the loss at init)"
    return (f"step (counted from 1; the first logged point is step {first}, after "
            f"{first - 1} updates, not the loss at init)")


def diverged_step(run: Run) -> int | None:
    """The step the console reported for a diverged run ("diverged at step 54 (loss=…)"), else
    the run's recorded step count; None for a run that did not diverge."""
    if run.status != "diverged":
        return None
    found = re.search(r"diverged at step (\d+)", run.message or "")
    return int(found.group(1)) if found else (run.steps or None)


def _by_value(runs: list[Run], keys: list[str]) -> tuple[str, list[float]] | None:
    """When one numeric key is swept (seeds aside): (key, each run's position in [0, 1]),
    log-spaced for values spanning ×100 or more (rates), for a sequential colormap."""
    swept = [k for k in keys if k not in REPLICATE_KEYS]
    if len(swept) != 1:
        return None
    values = [r.params.get(swept[0]) for r in runs]
    if not _numeric(values):
        return None
    xs = np.asarray(values, dtype=float)
    if xs.min() > 0 and xs.max() / xs.min() >= 100:
        xs = np.log10(xs)
    span = xs.max() - xs.min()
    return swept[0], list((xs - xs.min()) / span if span else np.zeros_like(xs))


def _spread(ys: list[float], gap: float) -> list[float]:
    """Label heights (axes fraction) moved apart by at least ``gap``, in their order: labels that
    would overlap form a group centred where they were, groups merge until none overlap, and
    the whole column is kept inside [0, 1]."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    groups: list[list[float]] = []  # [centre, count]
    for i in order:
        groups.append([min(max(ys[i], 0.0), 1.0), 1])
        while len(groups) > 1:
            (c0, n0), (c1, n1) = groups[-2], groups[-1]
            if (c1 - (n1 - 1) * gap / 2) - (c0 + (n0 - 1) * gap / 2) >= gap:
                break
            groups[-2:] = [[(c0 * n0 + c1 * n1) / (n0 + n1), n0 + n1]]
    placed = [c + (k - (n - 1) / 2) * gap for c, n in groups for k in range(n)]
    shift = -placed[0] if placed[0] < 0 else min(0.0, 1.0 - placed[-1])  # back inside
    out = [0.0] * len(ys)
    for i, y in zip(order, placed, strict=True):
        out[i] = y + shift
    return out


def loss_curves_figure(runs: list[Run], keys: list[str]) -> Figure | None:
    """Training loss against step (counted from 1, as the console counts), one line per run.

    When one numeric key is swept (the learning rate), the colour follows its value on a
    perceptually ordered sequential colormap (plasma, log-spaced for rates), dash patterns
    cycle so that neighbours differ, and each curve is labelled at its end with its value.
    A run that diverged gets × on the top edge at the step the console reported ("diverged at
    step 54": x = 54); one that failed ends with ■."""
    tagged = [(r, c) for r in runs if (c := _loss_curve(r)) is not None]
    if not tagged:
        return None
    fig = Figure(figsize=(7.8, 4.4))
    ax = fig.add_subplot()
    by_value = _by_value([r for r, _ in tagged], keys)
    if by_value is not None:
        from matplotlib import colormaps

        cmap = colormaps["plasma"]
        colors = [cmap(0.85 * t) for t in by_value[1]]  # its last yellows are hard on white
    else:
        colors = _colors(len(tagged))
    values = [v for _, (_, vs) in tagged for v in vs if math.isfinite(v) and v > 0]
    ends: list[tuple[str, float, float, object]] = []  # (text, last step, last value, colour)
    for n, ((run, (steps, vals)), color) in enumerate(zip(tagged, colors, strict=True)):
        text = (f"{run.params[by_value[0]]:g}" if by_value else label(run, keys))
        if run.status != "ok":
            text = f"{text} ({run.status})"
        ax.plot(steps, vals, color=color, lw=1.5, ls=LINE_STYLES[n % len(LINE_STYLES)])
        if run.status == "diverged":
            ax.plot(diverged_step(run) or steps[-1] + 1, 0.97, "x", color="red", ms=8, mew=2,
                    transform=ax.get_xaxis_transform(), clip_on=False)
        elif run.status == "failed":
            ax.plot(steps[-1], vals[-1], "s", color="red", ms=7)
        ends.append((text, steps[-1], vals[-1], color))
    if values and max(values) / min(values) > 50:
        ax.set_yscale("log")
    kept = [v for r, (_, vs) in tagged if r.status == "ok" for v in vs if math.isfinite(v)]
    if kept and ax.get_yscale() == "log" and max(values) > 20 * max(kept):
        # diverged curves leave through the top edge (their × is there): the finished runs,
        # not the blow-up, set the scale
        ax.set_ylim(top=20 * max(kept))
    what = f", colour and label: {by_value[0]}" if by_value else ""
    ax.set(xlabel=step_axis_note(min(steps[0] for _, (steps, _) in tagged)),
           ylabel="training loss", title=f"training loss per run{what}; × diverged")
    if len(tagged) <= 16:
        ax.autoscale_view()
        to_axes = ax.transData + ax.transAxes.inverted()
        heights = [float(to_axes.transform((x, y if math.isfinite(y) else ax.get_ylim()[1]))[1])
                   for _, x, y, _ in ends]
        for (text, _, _, color), y in zip(ends, _spread(heights, 0.055), strict=True):
            ax.text(1.01, y, text, transform=ax.transAxes, color=color, fontsize=8,
                    va="center", ha="left", clip_on=False)
    return fig


def plot_loss_curves(runs: list[Run], keys: list[str], path: Path) -> Path | None:
    """:func:`loss_curves_figure`, saved to ``path`` (None when no run logged a loss)."""
    fig = loss_curves_figure(runs, keys)
    return None if fig is None else _save(fig, path)


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
        for run in members:
            if run.status in ("diverged", "failed"):
                ax.plot(run.params[key], 0.96, "x" if run.status == "diverged" else "s",
                        color="red", ms=9, mew=2, transform=ax.get_xaxis_transform(),
                        label=None if run.status in labelled else
                        {"diverged": "diverged (loss → ∞)"}.get(run.status, run.status))
                labelled.add(run.status)
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
        for i, run in enumerate(traced):
            steps = run.weight_trace["steps"]
            for name, color in zip(names, colors, strict=True):
                ax2.plot(steps, run.weight_trace["weights"][name], color=color, lw=1, alpha=0.7,
                         label=name if i == 0 else None)
        ax2.axhline(0, color="black", lw=0.8)
        ax2.set(xlabel="step", ylabel="weight", title="the weights over training (every run)")
        ax2.legend(fontsize=8)
    return _save(fig, path)
