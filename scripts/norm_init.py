"""Normalization vs init scale: a deep plain MLP on moons, trained at every init scale without
and with batch/layer norm (``neuronlab.experiments.norm_init``); prints the table, writes
``norm_init.json`` and ``norm_init.png`` into ``--out``.

    python scripts/norm_init.py --out docs/img        # 72 runs of 200 steps, ~1 min, one thread
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from neuronlab.experiments.norm_init import SCALES, plot_norm_init, run_grid, summary, to_json


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/norm_init")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--backprop", choices=("manual", "autograd"), default="manual")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a tiny network: a second thread only fights over the cores
    t0 = time.perf_counter()
    runs = run_grid(scales=SCALES, seeds=tuple(range(args.seeds)), steps=args.steps,
                    backprop=args.backprop)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = to_json(runs) | {"seconds": seconds, "steps": args.steps,
                              "backprop": args.backprop}
    (out / "norm_init.json").write_text(json.dumps(record, indent=1, default=str))
    plot_norm_init(runs, out / "norm_init.png")
    print(f"{'norm':<8}" + "".join(f"{'×' + format(s, 'g'):>10}" for s in SCALES)
          + "   band that trains (octaves)")
    for norm, s in summary(runs).items():
        cells = [s["cells"][k] for k in SCALES]
        text = [f"{c['diverged']}/{c['runs']} div" if c["diverged"] else f"{c['mean_loss']:.3f}"
                for c in cells]
        b = s["band"]
        band = "none" if b is None else f"×{b[0]:g} … ×{b[1]:g} ({s['octaves']:.1f})"
        print(f"{norm:<8}" + "".join(f"{t:>10}" for t in text) + f"   {band}")
    print(f"{len(runs)} runs in {seconds:.0f} s; wrote {out / 'norm_init.json'} and "
          f"{out / 'norm_init.png'}")
    assert all(math.isfinite(r.final_loss) or r.diverged for r in runs)
    return record


if __name__ == "__main__":
    main()
