"""PyTorch's OpInfo samples against every op in ``OPS``: passed / failed / refused per op.

    python scripts/opinfo_report.py               # float64, float32, bfloat16
    python scripts/opinfo_report.py --details     # and one line per sample not plainly passed
    python scripts/opinfo_report.py --dtypes float16 --device cuda

"passed*" counts the half-precision samples that passed against the float64 torch op rounded
once, where torch's own half kernel rounds intermediates and differs from it (included in
"passed"). The rules are in ``neuronlab.functional.opinfo``; ``tests/test_opinfo.py`` asserts them.
Needs the ``dev`` extra (``expecttest``, for ``torch.testing._internal``).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from neuronlab.functional import OPS
from neuronlab.functional.opinfo import FLOAT64_ORACLE, OUTCOMES, check_op

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16,
          "float16": torch.float16}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32", "bfloat16"],
                        choices=list(DTYPES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--details", action="store_true")
    args = parser.parse_args(argv)
    dtypes = [DTYPES[d] for d in args.dtypes]

    start = time.perf_counter()
    header = f"{'op':34}" + "".join(f"{d + ' p/f/r':>20}" for d in args.dtypes) + f"{'passed*':>9}"
    print(header)
    print("-" * len(header))
    totals = {d: dict.fromkeys(OUTCOMES, 0) for d in dtypes}
    any_failed = False
    for name, spec in OPS.items():
        report = check_op(spec, dtypes, args.device)
        cells = ""
        for d in dtypes:
            c = report.counts.get(d, dict.fromkeys(OUTCOMES, 0))
            cells += f"{c['passed']:>12}/{c['failed']}/{c['refused']}"
            for k in OUTCOMES:
                totals[d][k] += c[k]
            any_failed |= c["failed"] > 0
        starred = sum(r.detail.startswith(FLOAT64_ORACLE) for r in report.results)
        print(f"{name:34}{cells}{starred:>9}")
        if args.details:
            for r in report.results:
                if r.outcome != "passed" or r.detail:
                    dtype = str(r.dtype).removeprefix("torch.")
                    print(f"    {dtype} #{r.index} {r.outcome} {r.description}: "
                          f"{r.detail.splitlines()[0]}")
    print("-" * len(header))
    cells = "".join(f"{t['passed']:>12}/{t['failed']}/{t['refused']}" for t in totals.values())
    print(f"{'total':34}{cells}")
    print(f"\ntorch {torch.__version__}, device {args.device}, {time.perf_counter() - start:.0f} s")
    return 1 if any_failed else 0


if __name__ == "__main__":
    sys.exit(main())
