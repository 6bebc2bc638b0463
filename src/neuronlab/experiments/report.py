"""``build_report(sweep_dir)``: a sweep's runs as one table (``report.md``) and pictures (PNG),
written into the sweep folder; ``sweep_summary(sweep_dir)``: the runs as a rich table, best
first, for the console when a sweep ends. Diverged, failed and unfinished runs are rows like
the rest, their status spelled out; in the pictures they end with × (diverged) or ■ (failed).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

from .plots import (
    REPLICATE_KEYS,
    label,
    plot_feature_weights,
    plot_final_vs,
    plot_loss_curves,
)
from .sweep import Run, read_sweep, swept_keys

FINAL_METRICS = ("train/loss_epoch", "val/loss", "test/loss")  # the first present is plotted
COLUMNS = {"train/loss_epoch": "train loss", "val/loss": "val loss",  # final values
           "test/loss": "test loss", "test/acc": "test acc"}
STATUSES = ("ok", "diverged", "failed", "interrupted", "unfinished")
STATUS_STYLE = {"ok": "green", "diverged": "bold red", "failed": "bold red",
                "interrupted": "yellow", "unfinished": "yellow"}  # rich styles


@dataclass
class Report:
    """A sweep, read and summarized; ``files`` are what :func:`build_report` wrote."""

    sweep_dir: Path
    runs: list[Run]
    swept: list[str]
    metric: str | None
    header: list[str]
    rows: list[list[str]]
    files: list[Path] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many runs ended in each status."""
        counted = Counter(r.status for r in self.runs)
        return {s: counted.get(s, 0) for s in STATUSES if counted.get(s)}

    def summary(self) -> str:
        counts = ", ".join(f"{count} {status}" for status, count in self.counts().items())
        swept = ", ".join(self.swept) or "nothing (one setting)"
        return f"{len(self.runs)} runs ({counts}); swept: {swept}"

    def feature_weights(self) -> list[tuple[str, float, float, float]]:
        """(feature, mean, min, max) of a neuron's weights over the runs that finished ok."""
        done = [r.feature_weights for r in self.runs if r.status == "ok" and r.feature_weights]
        if not done:
            return []
        return [(name, float(np.mean(values)), float(np.min(values)), float(np.max(values)))
                for name in done[0] for values in [[weights[name] for weights in done]]]

    def to_markdown(self) -> str:
        lines = [f"# Sweep report: `{self.sweep_dir}`", "", self.summary() + ".", ""]
        lines += ["| " + " | ".join(self.header) + " |",
                  "|" + "|".join(" --- " for _ in self.header) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                  for row in self.rows]
        weights = self.feature_weights()
        if weights:
            lines += ["", "## The neuron's weights (runs that finished ok)", "",
                      "| feature | mean | min | max |", "| --- | --- | --- | --- |"]
            lines += [f"| {name} | {mean:+.3f} | {lo:+.3f} | {hi:+.3f} |"
                      for name, mean, lo, hi in weights]
        pictures = [p for p in self.files if p.suffix == ".png"]
        if pictures:
            lines += ["", "## Pictures", ""]
            lines += [f"![{p.stem}]({p.name})" for p in pictures]
        return "\n".join(lines) + "\n"


def status_text(run: Run) -> str:
    """``ok``, ``diverged at step 54 (loss=3.6e+04)``, ``failed: ...``, ``unfinished``."""
    if run.status in ("ok", "unfinished") or not run.message:
        return run.status
    text = run.message.split(";")[0]
    if run.status == "diverged":
        return text
    return f"{run.status}: {text[:80]}"


def _cell(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:.4g}"


def _table(runs: list[Run], swept: list[str]) -> tuple[list[str], list[list[str]]]:
    metrics = [k for k in COLUMNS if any(k in r.metrics for r in runs)]
    with_init = any(r.init_sha256 for r in runs)
    header = [*swept, "status", "steps", *(COLUMNS[k] for k in metrics)]
    header += ["init"] if with_init else []
    header += ["s"]
    rows = []
    for run in runs:
        # a run that did not finish ok has no final value: its last epoch would mislead
        values = [_cell(run.final(key)) if run.status == "ok" else "—" for key in metrics]
        row = [str(run.params.get(key)) for key in swept]
        row += [status_text(run), str(run.steps), *values]
        row += [(run.init_sha256 or "—")[:8]] if with_init else []
        row += [f"{run.seconds:.1f}" if run.seconds is not None else "—"]
        rows.append(row)
    return header, rows


def build_report(sweep_dir: str | Path, metric: str | None = None, write: bool = True) -> Report:
    """Read every run under ``sweep_dir`` and, with ``write``, write ``report.md`` and the
    pictures there: ``loss_curves.png`` (from TensorBoard), ``final_vs_<key>.png`` per
    numeric swept key, ``feature_weights.png`` for neurons.

    Args:
        sweep_dir: a Hydra sweep folder (``hydra.sweep.dir``), or any folder of run folders.
        metric: the final metric plotted against the swept keys; default the first of
            ``train/loss_epoch``, ``val/loss``, ``test/loss`` that a run recorded.
    """
    sweep_dir = Path(sweep_dir)
    runs = read_sweep(sweep_dir)
    if not runs:
        raise FileNotFoundError(f"no runs in {sweep_dir} (no metrics.json or .hydra/ below it)")
    swept = swept_keys(runs)
    if metric is None:
        metric = next((k for k in FINAL_METRICS if any(k in r.metrics for r in runs)), None)
    header, rows = _table(runs, [k for k in swept if k != "data.seed"])
    report = Report(sweep_dir, runs, swept, metric, header, rows)
    if swept == ["optimizer.lr"]:  # a rate sweep: say which rates were slow / converged
        from .lr_sweep import classify

        verdicts = classify(runs).verdicts()
        report.header.insert(1, "verdict")
        for run, row in zip(runs, rows, strict=True):
            row.insert(1, verdicts[float(run.params["optimizer.lr"])])
    if not write:
        return report
    made = [plot_loss_curves(runs, swept, sweep_dir / "loss_curves.png")]
    if metric is not None:
        for key in swept:
            if key not in REPLICATE_KEYS:
                name = f"final_vs_{key.replace('.', '_')}.png"
                made.append(plot_final_vs(runs, key, swept, metric, sweep_dir / name))
    made.append(plot_feature_weights(runs, sweep_dir / "feature_weights.png"))
    report.files = [p for p in made if p is not None]
    md = sweep_dir / "report.md"
    md.write_text(report.to_markdown(), encoding="utf-8")
    report.files.append(md)
    return report


def _varying_overrides(runs: list[Run]) -> list[str]:
    """Per run, its overrides that not every run shares (``optimizer.lr=0.1``), joined by
    spaces; the swept values (or the folder's name) for a run without ``.hydra/overrides.yaml``."""
    common = set.intersection(*(set(r.overrides) for r in runs)) if runs else set()
    swept = swept_keys(runs)
    shown = []
    for run in runs:
        own = [override for override in run.overrides if override not in common]
        shown.append(" ".join(own) or (label(run, swept) if swept else run.name))
    return shown


def sweep_summary(sweep_dir: str | Path, metric: str = "val/loss") -> Table:
    """The sweep's runs as one rich table, to print when a sweep ends: the overrides that set
    each run apart, its status (colored; "diverged at step 54 (…)"), steps, final
    ``metric``, ``test/acc`` and ``test/loss`` (a run that did not finish ok shows "—").

    Rows: the runs that finished ok, best ``metric`` first (lowest; highest for an ``…acc``
    metric), then the others in sweep order. A ``metric`` no run recorded falls back to the
    first of ``val/loss``, ``train/loss_epoch``, ``test/loss`` that one did. The caption
    counts the statuses. Writes nothing.

    Raises:
        FileNotFoundError: ``sweep_dir`` is not a folder or holds no runs.
    """
    from rich.markup import escape

    report = build_report(sweep_dir, write=False)
    runs = report.runs
    if not any(metric in r.metrics for r in runs):
        metric = next((k for k in ("val/loss", *FINAL_METRICS)
                       if any(k in r.metrics for r in runs)), metric)
    overrides = dict(zip((id(r) for r in runs), _varying_overrides(runs), strict=True))

    sign = -1.0 if metric.endswith("acc") else 1.0  # an accuracy: highest first

    def rank(run: Run) -> tuple:
        value = run.final(metric)
        done = run.status == "ok" and math.isfinite(value)
        return (0, sign * value) if done else (1, 0.0)

    table = Table(title=f"sweep: {escape(str(report.sweep_dir))}",
                  caption=escape(report.summary()) + f"; sorted by final {metric}, best first")
    for col in ("overrides", "status", "steps", metric, "test/acc", "test/loss"):
        # fold, not "…": a run's name is what tells the rows apart
        table.add_column(escape(col), justify="left" if col in ("overrides", "status")
                         else "right", overflow="fold",
                         min_width=12 if col == "overrides" else None)
    for run in sorted(runs, key=rank):  # stable: the rest keep the sweep's order
        values = [_cell(run.final(k)) if run.status == "ok" else "—"
                  for k in (metric, "test/acc", "test/loss")]
        style = STATUS_STYLE.get(run.status, "white")
        table.add_row(escape(overrides[id(run)]), f"[{style}]{escape(status_text(run))}[/]",
                      str(run.steps), *values)
    return table


__all__ = ["STATUS_STYLE", "Report", "build_report", "label", "status_text", "sweep_summary"]
