"""neuronlab-lr-find [overrides...]: the learning-rate range test on the task the Hydra
overrides describe, with a suggestion read from the raw loss (the module
neuronlab.experiments.lr_range says why not Lightning's own).

    neuronlab-lr-find experiment=lr_sweep
    neuronlab-lr-find experiment=lr_sweep --sweep multirun/lr_sweep   # + the sweep's band

Prints the suggestions, writes ``lr_find.png`` and ``lr_find.json`` into ``--out``. With
``--sweep``, shades the rates that sweep found converging and says whether the suggestion
lies inside them (exit status 1 when it does not). Exit status 2, with one line on stderr,
for a bad override or a ``--sweep`` folder that does not exist or holds no runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from rich.console import Console


def _fail(message: str) -> NoReturn:
    """One line on stderr, exit status 2 (a usage error, as argparse's own)."""
    print(f"neuronlab-lr-find: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="neuronlab-lr-find", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for neuronlab-train")
    parser.add_argument("--min-lr", type=float, default=1e-5,
                        help="the first rate tried (default 1e-5)")
    parser.add_argument("--max-lr", type=float, default=10.0,
                        help="the last rate tried (default 10); rates grow exponentially")
    parser.add_argument("--steps", type=int, default=200, help="steps (one rate each)")
    parser.add_argument("--out", default="outputs/lr_find", help="folder for the picture")
    parser.add_argument("--sweep", default=None, help="a learning-rate sweep folder: its "
                        "converging band is drawn and the suggestion checked against it")
    args = parser.parse_args(argv)
    if args.sweep and not Path(args.sweep).is_dir():  # before the slow imports
        _fail(f"--sweep {args.sweep} is not a folder")
    import matplotlib

    matplotlib.use("Agg")
    from ..config import ConfigError, compose
    from ..experiments.lr_range import range_test, save_range_test
    from .train import quiet_lightning

    quiet_lightning()
    console = Console() if Console().is_terminal else Console(width=120)
    band = None
    if args.sweep:
        from ..experiments.lr_sweep import read_lr_sweep

        try:
            sweep = read_lr_sweep(args.sweep)
        except KeyError as missing:
            _fail(f"--sweep {args.sweep} is not a learning-rate sweep (a run has no {missing})")
        if not sweep.runs:
            _fail(f"--sweep {args.sweep} holds no runs (no metrics.json or .hydra/ below it)")
        band = sweep.band
        if band is None:
            console.print(f"[yellow]no run of {args.sweep} converged: no band to check[/]")
    start = time.perf_counter()
    try:
        cfg = compose(args.overrides, output_dir=args.out)
        with contextlib.redirect_stderr(io.StringIO()):  # the finder's own tqdm bar
            test = range_test(cfg, min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps)
    except (ConfigError, ValueError) as error:
        _fail(str(error))
    seconds = time.perf_counter() - start
    suggestion = test.suggestion
    picture = save_range_test(test, args.out, band=band)

    def fmt(lr: float | None) -> str:
        return "none" if lr is None else f"{lr:.3g}"

    console.print(f"range test: {len(test.lrs)} steps, rate {args.min_lr:g} → {args.max_lr:g} "
                  f"(×{(args.max_lr / args.min_lr) ** (1 / max(len(test.lrs) - 1, 1)):.3f} per "
                  f"step), {seconds:.1f} s")
    if suggestion.smoothed.size:
        low = suggestion.minimum
        end = "blows up after" if suggestion.stop < len(test.lrs) else "no blow-up up to"
        console.print(f"smoothed loss: {suggestion.smoothed[0]:.3f} at the start, lowest "
                      f"{suggestion.smoothed[low]:.3f} at lr {test.lrs[low]:.3g}; {end} lr "
                      f"{test.lrs[suggestion.stop - 1]:.3g}")
    console.print(f"[bold]suggested lr (middle of the descent): {fmt(suggestion.lr)}[/]")
    console.print(f"steepest descent (d loss / d ln lr): {fmt(test.steepest.lr)}")
    console.print(f"Lightning's suggestion (d EMA / d lr): {fmt(test.lightning_lr)}")
    inside = None
    if band is not None:
        inside = suggestion.lr is not None and band[0] <= suggestion.lr <= band[1]
        verdict = "[bold green]inside[/]" if inside else "[bold red]outside[/]"
        console.print(f"the sweep's converging band: {band[0]:g} … {band[1]:g}; the suggestion is "
                      f"{verdict}")
    console.print(f"wrote {picture}")
    sys.exit(1 if inside is False else 0)


if __name__ == "__main__":
    main()
