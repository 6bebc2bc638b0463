"""``neuronlab-check``: is every hand-written backward right, on this machine?

For every op, in float64: gradcheck, gradgradcheck and ``check_function`` (finite differences
and the plain-torch reference); in each dtype: manual vs autograd; then an MLP on the digits,
manual vs autograd within the rounding bound. The suite is ``neuronlab.gradcheck.suite``.

    neuronlab-check                       # all ops, float64 + float32, cpu (+ cuda)
    neuronlab-check --op sigmoid --dtype float64 --no-mlp

Exit status: 0 when every check passes, 1 when one fails, 2 on a bad argument.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from ..errors import unknown_choice
from ..functional import OPS
from ..gradcheck.suite import DEVICES, DTYPES, CheckRow, run_checks

__all__ = ["main", "run_checks"]


def _mark(ok: bool | None) -> str:
    return "—" if ok is None else ("[green]ok[/]" if ok else "[red]FAIL[/]")


def _print_table(rows: Sequence[CheckRow]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="neuronlab-check: manual backward vs finite differences and autograd")
    for header in ("op", "device", "dtype", "gradcheck", "gradgradcheck", "check_function",
                   "manual vs autograd", "allowed", "result"):
        table.add_column(header, no_wrap=True)
    for r in rows:
        grade = "—" if r.grade is None else (r.grade if r.grade in ("good", "acceptable")
                                            else f"[red]{r.grade}[/]")
        table.add_row(r.op, r.device, r.dtype, _mark(r.gradcheck), _mark(r.gradgradcheck), grade,
                      f"{r.error:.2g}×", r.allowed or "—",
                      "[green]PASS[/]" if r.passed else "[bold red]FAIL[/]")
    # as wide as the table needs: a narrower console would cut cells to "float…"
    needed = Console(width=1000).measure(table).maximum
    console = Console(width=max(needed, Console().width))
    console.print(table)
    for r in rows:
        for detail in r.details:
            console.print(f"[red]{r.op} ({r.device}, {r.dtype}):[/]", escape(detail),
                          highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run :func:`run_checks`, print the table; return the exit status."""
    parser = argparse.ArgumentParser(prog="neuronlab-check", description=__doc__.split("\n")[0])
    parser.add_argument("--op", action="append", metavar="NAME",
                        help=f"an op to check (repeatable; default all: {', '.join(OPS)})")
    parser.add_argument("--dtype", action="append", choices=list(DTYPES),
                        help="repeatable; default float64 and float32")
    parser.add_argument("--device", action="append", choices=list(DEVICES),
                        help="repeatable; default cpu, plus cuda when available")
    parser.add_argument("--no-mlp", action="store_true", help="skip the MLP on the digits")
    args = parser.parse_args(argv)
    for op in args.op or []:
        if op not in OPS:
            parser.error(str(unknown_choice("--op", op, OPS)))
    if "cuda" in (args.device or []) and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    result = run_checks(args.op, args.dtype, args.device, mlp=not args.no_mlp)
    _print_table(result.rows)
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
