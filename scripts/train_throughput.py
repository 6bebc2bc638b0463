# python scripts/train_throughput.py             (≈ 4 min on 2 cores)
"""The training throughput ``neuronlab-train`` reports, ``model.backprop=manual`` against
``autograd``: the runs as a user starts them (``train(compose(overrides))``, what the command
runs, in one process so that each run is not also timing Python's imports), alternating
manual and autograd run by run, ``--repeats`` pairs after one warm-up pair.

Configurations:
- ``small``: ``model=mlp data=digits`` (64-64-64-10, batch 64), 30 epochs, default callbacks:
  the gradient audit every 50 steps runs with manual only (autograd has nothing to audit);
- ``small-bare``: the same with the audit and the gradient-flow statistics off;
- ``mnist1d``: ``experiment=mnist1d_mlp`` (40-512×4-10, Adam, batch 50), 10 of its 40 epochs;
- ``small-normed``: ``small-bare`` with batch norm and dropout 0.2 (the norm's hand-written
  ops against torch's fused batch-norm kernels).

For each: the median over the repeats of the reported samples/s (whole fit: rows / training
seconds, validation excluded) and of the last epoch's, and manual / autograd as the median of
the per-pair ratios (> 1: manual is faster). Writes JSON and Markdown (``--out``).

    python scripts/train_throughput.py --out docs/bench/train_throughput.json
    python scripts/train_throughput.py --only small --repeats 3
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

CONFIGS = {
    "small": ["model=mlp", "data=digits", "trainer.max_epochs=30"],
    "small-bare": ["model=mlp", "data=digits", "trainer.max_epochs=30",
                   "callbacks.gradient_audit=null", "callbacks.gradient_flow=null"],
    "mnist1d": ["experiment=mnist1d_mlp", "trainer.max_epochs=10"],
    "small-normed": ["model=mlp", "data=digits", "trainer.max_epochs=30", "model.norm=batch",
                     "model.dropout=0.2", "callbacks.gradient_audit=null",
                     "callbacks.gradient_flow=null"],
}
COMMON = ["callbacks.progress_bar=null", "++trainer.enable_progress_bar=false"]
KEYS = ("train_samples_per_s", "train_samples_per_s_last_epoch")


def one_run(overrides: list[str], root: Path) -> dict:
    from neuronlab.config import compose
    from neuronlab.training.run import train

    folder = Path(tempfile.mkdtemp(dir=root))
    record = train(compose([*COMMON, *overrides], output_dir=folder))
    if record["status"] != "ok":
        raise SystemExit(f"run {overrides} ended {record['status']!r}")
    return {k: record[k] for k in KEYS} | {"test_acc": record.get("test_acc")}


def measure(name: str, repeats: int, root: Path) -> dict:
    runs: dict[str, list[dict]] = {"manual": [], "autograd": []}
    for r in range(repeats + 1):  # pair 0 warms up (first-call costs), not kept
        order = ("manual", "autograd") if r % 2 else ("autograd", "manual")
        got = {bp: one_run([*CONFIGS[name], f"model.backprop={bp}"], root) for bp in order}
        if r:
            for bp in order:
                runs[bp].append(got[bp])
        print(f"[{name}] pair {r}: " + ", ".join(
            f"{bp} {got[bp]['train_samples_per_s']:,.0f}/s" for bp in order), flush=True)
    out: dict = {"overrides": [*COMMON, *CONFIGS[name]], "repeats": repeats}
    for key in KEYS:
        out[key] = {bp: statistics.median(x[key] for x in runs[bp]) for bp in runs}
        out[f"manual_over_autograd.{key}"] = statistics.median(
            m[key] / a[key] for m, a in zip(runs["manual"], runs["autograd"], strict=True))
    out["test_acc"] = {bp: [x["test_acc"] for x in runs[bp]] for bp in runs}
    return out


def markdown(results: dict, seconds: float) -> str:
    lines = ["# neuronlab-train's reported training throughput: manual vs autograd", "",
             f"`python scripts/train_throughput.py` — {seconds:.0f} s. Median over the repeats; "
             "the ratio is the median of the per-pair ratios (> 1: manual is faster).", "",
             "| config | overrides | manual samples/s | autograd samples/s | manual / autograd "
             "| last epoch: manual / autograd |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        rate = r["train_samples_per_s"]
        lines.append(
            f"| {name} | `{' '.join(r['overrides'])}` | {rate['manual']:,.0f} | "
            f"{rate['autograd']:,.0f} | {r['manual_over_autograd.train_samples_per_s']:.3f} | "
            f"{r['manual_over_autograd.train_samples_per_s_last_epoch']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="JSON path (Markdown next to it)")
    parser.add_argument("--only", choices=sorted(CONFIGS), action="append")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")  # Lightning's deprecation notes, once per run
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = {n: measure(n, args.repeats, Path(tmp)) for n in args.only or CONFIGS}
    md = markdown(results, time.perf_counter() - start)
    print(md)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(md)
    return results


if __name__ == "__main__":
    main()
