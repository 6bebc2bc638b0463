# python scripts/sweep_times.py              (≈ 5 min on 2 cores: both sweeps, both ways)
"""Sequential against parallel (joblib) for the two sweep experiments, timed wall-clock.

- the learning-rate sweep: ``neuronlab-train -m experiment=lr_sweep`` with Hydra's basic
  launcher, then with ``hydra/launcher=joblib`` (11 runs of 110 steps);
- the init sweep's training grid: ``neuronlab-init-sweep --jobs 1`` then ``--jobs -1``, on the
  seed-0 slice of the grid (60 runs; ``--full``: all 180), at init measured too.

Each way writes into its own fresh folder (nothing skipped) and the final metrics of both
ways are compared (same seeds: the same numbers). Timings are printed, never asserted:
joblib's workers each import torch and Lightning first, so it pays only once a run takes
longer than a few seconds and there are cores to spare.

    python scripts/sweep_times.py --only lr        # the lr sweep alone
    python scripts/sweep_times.py --jobs 4         # hydra.launcher.n_jobs / --jobs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # init sweep: 1 = a claim did not hold (a tiny grid)
        sys.exit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    return seconds


def final_losses(sweep: Path) -> dict[str, float]:
    out = {}
    for path in sweep.glob("*/metrics.json"):
        record = json.loads(path.read_text())
        out[path.parent.name] = record["metrics"].get("train/loss_epoch", float("nan"))
    return out


def same(a: dict[str, float], b: dict[str, float]) -> str:
    if a.keys() != b.keys():
        return f"different runs ({len(a)} vs {len(b)})"
    worst = max((abs(a[k] - b[k]) / max(abs(a[k]), 1e-30) for k in a), default=0.0)
    return f"{len(a)} runs, final losses equal (largest relative difference {worst:.1e})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("lr", "init"), help="one of the two sweeps")
    parser.add_argument("--jobs", type=int, default=-1, help="parallel jobs (-1: one per core)")
    parser.add_argument("--full", action="store_true", help="the whole init grid (180 runs)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, joblib n_jobs={args.jobs}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.only in (None, "lr"):
            times = {}
            for way, extra in (("sequential", []),
                               ("joblib", ["hydra/launcher=joblib",
                                           f"hydra.launcher.n_jobs={args.jobs}"])):
                times[way] = timed([str(BIN / "neuronlab-train"), "-m", "experiment=lr_sweep",
                                    *extra, f"hydra.sweep.dir={root / 'lr' / way}"], root)
            print(f"lr sweep (11 runs): sequential {times['sequential']:.1f} s, joblib "
                  f"{times['joblib']:.1f} s; "
                  + same(*(final_losses(root / "lr" / way) for way in times)))
        if args.only in (None, "init"):
            times = {}
            grid = [] if args.full else ["seed=0"]
            for way, jobs in (("sequential", 1), ("joblib", args.jobs)):
                times[way] = timed([str(BIN / "neuronlab-init-sweep"), "--jobs", str(jobs),
                                    "--out", str(root / "init" / way), *grid], root)
            runs = 180 if args.full else 60
            print(f"init sweep ({runs} runs + signal propagation): sequential "
                  f"{times['sequential']:.1f} s, joblib {times['joblib']:.1f} s; "
                  + same(*(final_losses(root / "init" / way) for way in times)))


if __name__ == "__main__":
    main()
