"""``neuronlab-init-sweep``: the init sweep (``neuronlab.experiments.init_sweep``) from the
command line.

    neuronlab-init-sweep --out multirun/init_sweep
    neuronlab-init-sweep --out /tmp/init seed=0 trainer.max_epochs=3
    neuronlab-init-sweep --jobs 2          # two training runs at once (joblib)

Measures signal propagation at init, trains the ``experiment=init_sweep`` grid (finished
runs are skipped), prints each claim with its number and the final-loss table, and writes
``init_signal.png``, ``init_final_loss.png`` and ``init_sweep.json`` into ``--out``.
Exit status 1 when a claim does not hold.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ..experiments.init_sweep import InitSweep


def print_init_sweep(result: InitSweep, console: Console) -> None:
    """The claims (value, expectation, verdict), then mean final loss per cell."""
    table = Table(title="init claims, measured")
    for col in ("claim", "measured", "expected", ""):
        table.add_column(col, justify="right" if col == "measured" else "left")
    for claim in result.claims:
        table.add_row(claim.name, f"{claim.value:.3g}", claim.expected,
                      "[bold green]holds[/]" if claim.holds else "[bold red]does not hold[/]")
    console.print(table)
    if not result.cells:
        return
    scales = sorted({cell.scale for cell in result.cells})
    losses = Table(title="mean final training loss over seeds (div = diverged runs)")
    for col in ("activation", "scheme", "distribution", *(f"×{s:g}" for s in scales)):
        losses.add_column(col, justify="left" if not col.startswith("×") else "right")
    rows: dict[tuple, dict[float, str]] = {}
    for cell in result.cells:
        runs = len(cell.losses) + cell.diverged + cell.failed
        text = f"{cell.mean:.3f}" if cell.losses else ""
        if cell.diverged or cell.failed:
            text = f"{text} [red]{cell.diverged + cell.failed}/{runs} div[/]".strip()
        rows.setdefault((cell.activation, cell.scheme, cell.distribution), {})[cell.scale] = text
    for key, by_scale in rows.items():
        losses.add_row(*key, *(by_scale.get(scale, "") for scale in scales))
    console.print(losses)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuronlab-init-sweep",
                                     description="Init: the distribution matters little, the "
                                     "scale a lot — measured at init and after training.")
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides for every training run (seed=0,1 sweeps fewer)")
    parser.add_argument("--out", default="multirun/init_sweep", help="the sweep folder")
    parser.add_argument("--width", type=int, default=256, help="units per layer at init")
    parser.add_argument("--batch", type=int, default=512, help="rows of the input batch")
    parser.add_argument("--draws", type=int, default=3, help="draws averaged at init")
    parser.add_argument("--no-train", action="store_true", help="measure at init only")
    parser.add_argument("--jobs", type=int, default=1,
                        help="training runs at once, in joblib's worker processes (-1: one per "
                        "core); as neuronlab-train -m experiment=init_sweep hydra/launcher=joblib")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep and print it; 0 when every claim holds, 1 otherwise."""
    args = build_parser().parse_args(argv)
    import matplotlib
    import torch

    matplotlib.use("Agg")
    torch.set_num_threads(1)  # tiny networks: one thread is fastest and leaves a core free
    from .train import quiet_lightning

    quiet_lightning()
    from ..config import compose
    from ..experiments.init_sweep import run_init_sweep

    start = time.perf_counter()
    result = run_init_sweep(args.out, compose, extra=args.overrides, width=args.width,
                            batch=args.batch, draws=args.draws, train=not args.no_train,
                            jobs=args.jobs, setup=quiet_lightning)
    console = Console() if Console().is_terminal else Console(width=120)
    print_init_sweep(result, console)
    console.print(f"signal propagation {result.seconds['signal']:.1f} s, training "
                  f"{result.seconds['training']:.1f} s, total {time.perf_counter() - start:.1f} s;"
                  f" pictures and init_sweep.json in {args.out}")
    return 0 if all(claim.holds for claim in result.claims) else 1


if __name__ == "__main__":
    sys.exit(main())
