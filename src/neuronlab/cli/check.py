"""``neuronlab-check``: is every hand-written backward right, on this machine?

For every op, in float64: gradcheck, gradgradcheck and ``check_function`` (finite differences
and the plain-torch reference); in each dtype: manual vs autograd; then an MLP on the digits,
manual vs autograd within the rounding bound. The suite is ``neuronlab.gradcheck.suite``.

    neuronlab-check                       # all ops, float64 + float32, cpu (+ cuda)
    neuronlab-check --op sigmoid --dtype float64 --no-mlp
    neuronlab-check --dtype bfloat16 --dtype float16 --no-mlp

Your own Function (a ``torch.autograd.Function`` subclass or any function of tensors), on
generated inputs (:mod:`neuronlab.gradcheck.samples`), in float64 and each ``--dtype``
(default all four), against ``--reference`` (default: itself in float64)::

    neuronlab-check --function mypkg.ops:Swish --reference mypkg.ops:swish_reference
    neuronlab-check --function ./swish.py:Swish --dtype bfloat16

Exit status: 0 when every check passes, 1 when one fails, 2 on a bad argument (one line).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..errors import unknown_choice
from ..functional import OPS
from ..gradcheck import check_function
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


def load_callable(spec: str, option: str = "--function") -> Callable:
    """``MODULE:NAME`` (a dotted module, or a ``.py`` file) → the object; a Function subclass →
    its ``apply``. Raises ``ValueError`` with one line saying what is wrong."""
    module_name, sep, name = spec.rpartition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"{option} {spec!r}: expected MODULE:NAME (e.g. mypkg.ops:Swish or "
                         "./ops.py:Swish)")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise FileNotFoundError(f"no file {module_name}")
            loader = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[path.stem] = module
            loader.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))  # as ``python -m`` would find it
            module = importlib.import_module(module_name)
    except Exception as e:
        raise ValueError(f"{option} {spec!r}: cannot import {module_name}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if not hasattr(module, name):
        raise ValueError(f"{option} {spec!r}: {module_name} has no {name}")
    obj = getattr(module, name)
    if isinstance(obj, type) and issubclass(obj, torch.autograd.Function):
        return obj.apply
    if not callable(obj):
        raise ValueError(f"{option} {spec!r}: {name} is a {type(obj).__name__}, not callable")
    return obj


def check_user_function(function: str, reference: str | None, dtypes: Sequence[str],
                        seed: int = 0, samples: str | None = None) -> int:
    """``neuronlab-check --function``: print the report, return the exit status (0/1/2)."""
    try:
        fn = load_callable(function)
        ref = None if reference is None else load_callable(reference, "--reference")
        gen = None if samples is None else load_callable(samples, "--samples")
        report = check_function(fn, reference=ref, dtypes=dtypes, seed=seed, samples=gen)
    except (ValueError, TypeError) as e:
        print(f"neuronlab-check: error: {e}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run :func:`run_checks`, print the table; return the exit status."""
    parser = argparse.ArgumentParser(prog="neuronlab-check", description=__doc__.split("\n")[0])
    parser.add_argument("--op", action="append", metavar="NAME",
                        help=f"an op to check (repeatable; default all: {', '.join(OPS)})")
    parser.add_argument("--dtype", action="extend", nargs="+", choices=list(DTYPES),
                        help="one or more (--dtype float64 bfloat16), repeatable; default "
                        "float64 and float32 (with --function: all)")
    parser.add_argument("--device", action="append", choices=list(DEVICES),
                        help="repeatable; default cpu, plus cuda when available")
    parser.add_argument("--no-mlp", action="store_true", help="skip the MLP on the digits")
    parser.add_argument("--function", metavar="MODULE:NAME",
                        help="check your own Function (or function of tensors) instead")
    parser.add_argument("--reference", metavar="MODULE:NAME",
                        help="with --function: plain-torch code computing the same")
    parser.add_argument("--samples", metavar="MODULE:NAME",
                        help="with --function: your samples(dtype) -> list of input tuples, "
                             "instead of the generated elementwise inputs")
    parser.add_argument("--seed", type=int, default=0, help="with --function: seeds v")
    args = parser.parse_args(argv)
    if args.function is None:
        if args.reference is not None or args.samples is not None:
            parser.error("--reference and --samples need --function")
    else:
        if args.op or args.device:
            parser.error("--function checks one Function on the cpu: drop --op/--device")
        return check_user_function(args.function, args.reference, args.dtype or list(DTYPES),
                                   args.seed, args.samples)
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
