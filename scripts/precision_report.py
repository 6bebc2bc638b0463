"""How close the built-in ops sit to check_function's bound, per dtype: a histogram of
error/bound over every (op, generated sample, tensor) — the worst entry of each.

    python scripts/precision_report.py                      # every op in OPS, all four dtypes
    python scripts/precision_report.py --ops gelu softplus --dtypes bfloat16

A ratio ≤ 1 passes (neuronlab.gradcheck.precision); 0 means bit-equal to the float64
reference rounded to the dtype... or exact. The inputs are ``neuronlab.gradcheck.suite.
op_samples`` (the elementwise samples, torch's own generators included, for activations; the
op's sampler for the rest).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from neuronlab.functional import OPS
from neuronlab.gradcheck import check_function
from neuronlab.gradcheck.suite import op_samples

DTYPES = ("float64", "float32", "bfloat16", "float16")
EDGES = (0.0, 1 / 64, 1 / 16, 1 / 4, 1 / 2, 1.0)  # bins: 0 | (0, 1/64] | … | (1/2, 1] | > 1
LABELS = ("0", "≤1/64", "≤1/16", "≤1/4", "≤1/2", "≤1", ">1")


def _bin(ratio: float) -> int:
    for k, edge in enumerate(EDGES):
        if ratio <= edge:
            return k
    return len(EDGES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=list(OPS))
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    counts = {d: [0] * len(LABELS) for d in args.dtypes}
    worst: dict[str, tuple[float, str]] = {d: (0.0, "") for d in args.dtypes}
    failed = 0
    for name in args.ops:
        spec = OPS[name]
        inputs = spec.sample((4, 5), torch.float64, "cpu", torch.Generator().manual_seed(0))
        report = check_function(spec.manual, *inputs, reference=spec.reference,
                                dtypes=args.dtypes,
                                samples=op_samples(spec, torch_generators=True))
        failed += not report.ok
        if not report.ok:
            print(report, file=sys.stderr)
        for row in report.precision.rows:
            for ratio in row.ratios:
                counts[row.dtype][_bin(ratio)] += 1
            if row.ratio > worst[row.dtype][0] or not math.isfinite(row.ratio):
                worst[row.dtype] = (row.ratio, f"{name} {row.name} on {row.sample}")
    width = max(len(label) for label in LABELS) + 2
    print("error/bound per (op, sample, tensor), worst entry of each; ≤ 1 passes")
    print("dtype     " + "".join(label.rjust(width) for label in LABELS) + "   worst")
    for d in args.dtypes:
        print(f"{d:<10}" + "".join(str(c).rjust(width) for c in counts[d])
              + f"   {worst[d][0]:.3g} ({worst[d][1]})")
    print(f"{len(args.ops)} ops, {failed} failed ({time.perf_counter() - start:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
