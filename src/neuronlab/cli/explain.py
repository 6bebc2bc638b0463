"""``neuronlab-explain``: print, number by number, what the text claims.

    neuronlab-explain chain   # one neuron, one cats drawing: forward, backward, vs autograd
    neuronlab-explain node    # z = x·y + sin(x) under L = z²
    neuronlab-explain loss    # ln C at equal logits; each loss's first gradient
    neuronlab-explain batchnorm  # BatchNorm's backward node by node, in one formula, vs autograd

``chain`` draws ``chain_rule.png`` (and, with Graphviz, ``.dot``/``.svg``) into ``--out``,
by default ``outputs/explain`` under the current folder (git-ignored, like the training runs'
``outputs/``), and prints where. The repository's ``docs/img/chain_rule.png`` is made from the
repository's root, on purpose::

    neuronlab-explain chain --out docs/img

The numbers and the picture come from ``neuronlab.explain`` (``chain``, ``chain_drawing``,
``loss``); this file only parses, calls and prints. Exit status 0 when every manual number
equals autograd's (float64), 1 otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..explain import (
    NODE_FUNCTION,
    TOLERANCE,
    GradRow,
    chain_rule_neuron,
    draw_chain_rule,
    loss_claims,
    node_example,
)
from ..explain.batchnorm import NodeRow, batchnorm_chain

COMMANDS = ("chain", "node", "loss", "batchnorm")
DEFAULT_OUT = "outputs/explain"  # under the current folder, never the package's own tree


def _verdict(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"


def _grad_table(title: str, rows: list[GradRow]) -> Table:
    table = Table(title=title)
    for col in ("∂L/∂·", "local derivative", "local", "× upstream", "= manual",
                "autograd", "|diff|", ""):
        table.add_column(col, justify="left" if col in ("local derivative", "") else "right")
    for row in rows:
        table.add_row(f"∂L/∂{row.node}", escape(row.formula), f"{row.local:+.6f}",
                      f"{row.upstream:+.6f}", f"{row.manual:+.10f}", f"{row.autograd:+.10f}",
                      f"{row.diff:.1e}", _verdict(row.ok))
    return table


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it lies below it, else absolute."""
    path = path.resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def explain_chain(console: Console, seed: int, example: int, out: str | Path) -> bool:
    report = chain_rule_neuron(seed=seed, example=example)
    what = "a cat" if report.y == 1 else "not a cat"
    console.print(f"[bold]One sigmoid neuron, BCE loss, on drawing {example} of the cats data "
                  f"(y = {report.y:.0f}: {what}); weights ~ N(0, 0.5²), seed {seed}[/]")
    forward = Table(title="forward pass: every node and its value")
    for col in ("node", "computed as", "value"):
        forward.add_column(col, justify="right" if col == "value" else "left")
    for row in report.forward:
        forward.add_row(row.node, escape(row.formula), f"{row.value:+.10f}")
    console.print(forward)
    console.print(_grad_table("backward pass, node by node: ∂L/∂node = local × upstream",
                              report.backward))
    fused = Table(title="the fused form: ∂L/∂z = a − y equals ∂L/∂a · ∂a/∂z")
    for col in ("∂L/∂z computed as", "value", "autograd", "|diff|", ""):
        fused.add_column(col, justify="left" if col in ("∂L/∂z computed as", "") else "right")
    for row in report.fused:
        fused.add_row(escape(row.formula), f"{row.manual:+.10f}", f"{row.autograd:+.10f}",
                      f"{row.diff:.1e}", _verdict(row.ok))
    console.print(fused)
    for path in draw_chain_rule(report, out):
        console.print(f"wrote {escape(_shown(path))}", soft_wrap=True)  # one line: copyable
    if not shutil.which("dot"):
        console.print("note: Graphviz `dot` not found: no chain_rule.dot / chain_rule.svg "
                      "(the matplotlib PNG is written either way)")
    return report.ok


def explain_node(console: Console) -> bool:
    report = node_example()
    console.print(f"[bold]{NODE_FUNCTION}[/]   at x = {report.x}, y = {report.y}: "
                  f"z = {report.z:+.10f}, L = {report.loss:.10f}")
    title = "upstream ∂L/∂z = 2z, then ∂L/∂x = ∂L/∂z · ∂z/∂x and ∂L/∂y = ∂L/∂z · ∂z/∂y"
    console.print(_grad_table(title, report.rows))
    return report.ok


def explain_loss(console: Console, seed: int) -> bool:
    claims = loss_claims(batch=32, seed=seed)
    table = Table(title="the text's claims about losses, on real batches of 32 rows (float64)")
    for col in ("claim", "formula", "shown at", "formula value", "autograd", "max |diff|", ""):
        right = col in ("formula value", "autograd", "max |diff|")
        table.add_column(col, justify="right" if right else "left", no_wrap=col == "claim")
    for claim in claims:
        table.add_row(escape(claim.claim), escape(claim.formula), escape(claim.shown),
                      f"{claim.formula_value:+.10f}", f"{claim.autograd_value:+.10f}",
                      f"{claim.max_diff:.1e}", _verdict(claim.ok))
    console.print(table)
    return all(claim.ok for claim in claims)


def _node_table(title: str, rows: list[NodeRow]) -> Table:
    table = Table(title=title)
    for col in ("∂L/∂·", "local × upstream", "shape", "manual [0]", "autograd [0]", "max |diff|",
                ""):
        table.add_column(col, justify="left" if col in ("local × upstream", "") else "right")
    for r in rows:
        table.add_row(f"∂L/∂{r.node}", escape(r.formula), "×".join(map(str, r.manual.shape)),
                      f"{r.manual.reshape(-1)[0].item():+.10f}",
                      f"{r.autograd.reshape(-1)[0].item():+.10f}", f"{r.diff:.1e}",
                      _verdict(r.ok))
    return table


def explain_batchnorm(console: Console, seed: int, bessel: bool) -> bool:
    report = batchnorm_chain(seed=seed, bessel=bessel)
    var = "1/(n−1), Bessel" if bessel else "1/n, biased, as torch normalizes"
    console.print(f"[bold]BatchNorm on a batch of {report.n} rows × {report.features} features "
                  f"(float64, variance {var}), under L = Σ G⊙y with G random; seed {seed}[/]")
    console.print(_node_table("backward, node by node (last to first): local × upstream, "
                              "summed over the paths", report.nodes))
    console.print(_node_table("the same ∂x in one formula (σ = √(v + ε))", report.formulas))
    console.print(f"without the mean term Σ∂y the formula is off by {report.without_mean_term:.3g}"
                  " (max |∂x| error): every x also moves the batch mean")
    return report.ok


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuronlab-explain", description="Show, with numbers, what the text claims."
    )
    parser.add_argument("command", nargs="?", default="chain", choices=COMMANDS,
                        help="chain (default): one neuron's chain rule; node: z = h(x, y); "
                        "loss: ln C and the losses' first gradients; batchnorm: BatchNorm's "
                        "backward node by node and in one formula")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and weights (0)")
    parser.add_argument("--example", type=int, default=0, help="chain: row of the cats data")
    parser.add_argument("--biased", action="store_true",
                        help="batchnorm: the 1/n variance torch normalizes with (and "
                        "neuronlab.functional.batch_norm against it) instead of Bessel's")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"chain: folder for the picture ({DEFAULT_OUT}; the repository's "
                        "docs/img/chain_rule.png: --out docs/img)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return 0 when every number agrees with autograd, 1 otherwise."""
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:  # piped or captured: wide enough for the tables
        console = Console(width=150)
    if args.command == "chain":
        ok = explain_chain(console, args.seed, args.example, args.out)
    elif args.command == "batchnorm":
        ok = explain_batchnorm(console, args.seed, bessel=not args.biased)
    elif args.command == "node":
        ok = explain_node(console)
    else:
        ok = explain_loss(console, args.seed)
    console.print(f"manual == autograd within {TOLERANCE:g} (float64): {_verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
