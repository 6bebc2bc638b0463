"""``neuronlab-report <sweep folder>``: a sweep's runs as a table and pictures.

    neuronlab-train -m experiment=lr_sweep
    neuronlab-report multirun/lr_sweep

Writes ``report.md`` and PNGs into the sweep folder (``neuronlab.experiments.report``) and
prints the table. Exit status 2 when the folder holds no runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from ..experiments.report import Report


def print_report(report: Report, console: Console) -> None:
    """The table (status in color), the neuron's weights if any, and the files written."""
    from ..experiments.report import STATUS_STYLE

    table = Table(title=f"sweep: {escape(str(report.sweep_dir))}")
    for col in report.header:
        table.add_column(escape(col), justify="left" if col == "status" else "right", no_wrap=True)
    status_col = report.header.index("status")
    for run, row in zip(report.runs, report.rows, strict=True):
        cells = [escape(text) for text in row]
        cells[status_col] = f"[{STATUS_STYLE.get(run.status, 'white')}]{run.status}[/]"
        table.add_row(*cells)
    console.print(table)
    console.print(escape(report.summary()))
    weights = report.feature_weights()
    if weights:
        weight_table = Table(title="the neuron's weights over the runs that finished ok")
        for col in ("feature", "mean", "min", "max"):
            weight_table.add_column(col, justify="left" if col == "feature" else "right")
        for name, mean, lo, hi in weights:
            weight_table.add_row(name, f"{mean:+.3f}", f"{lo:+.3f}", f"{hi:+.3f}")
        console.print(weight_table)
    for path in report.files:
        console.print(f"wrote {escape(str(path))}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="neuronlab-report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", help="a sweep folder (hydra.sweep.dir) or a run folder")
    parser.add_argument("--metric", default=None,
                        help="final metric to plot against the swept keys (default: "
                             "train/loss_epoch, else val/loss, else test/loss)")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    from ..experiments.report import build_report

    try:
        report = build_report(args.sweep_dir, metric=args.metric)
    except FileNotFoundError as error:
        print(f"neuronlab-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    console = Console()
    if not console.is_terminal:  # piped into a file or a doc: do not squeeze into 80 columns
        console = Console(width=120)
    print_report(report, console)


if __name__ == "__main__":
    main()
