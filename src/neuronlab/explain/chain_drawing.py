"""The chain rule, drawn: one neuron's graph, values forward and gradients backward.

The numbers come from :func:`neuronlab.explain.chain.chain_rule_neuron`; here they become a
matplotlib picture (always) and Graphviz source (when ``dot`` is installed).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .chain import ChainReport

_FILL = {"input": "#dbe9f6", "param": "#fde6c8", "op": "#eeeeee", "loss": "#f8d0d0"}


def _nodes(report: ChainReport) -> list[tuple[str, str, str, str, float, float]]:
    """(node, kind, first line, second line, x, y) for every box of the picture."""
    n = len(report.x)
    rows = [6.1 - i * (5.4 / max(n - 1, 1)) for i in range(n)]  # one row per feature
    mid = sum(rows) / n
    value = report.value
    grad = report.grad
    nodes = []
    for i, (name, yc) in enumerate(zip(report.features, rows, strict=True)):
        nodes += [
            (f"x{i}", "input", f"x{i} {name} = {value(f'x{i}'):.3f}",
             f"∂L/∂x{i} = {grad(f'x{i}'):+.4f}", 1.5, yc + 0.33),
            (f"w{i}", "param", f"w{i} = {value(f'w{i}'):+.3f}",
             f"∂L/∂w{i} = {grad(f'w{i}'):+.4f}", 1.5, yc - 0.33),
            (f"p{i}", "op", f"p{i} = x{i}·w{i} = {value(f'p{i}'):+.4f}",
             f"∂L/∂p{i} = {grad(f'p{i}'):+.4f}", 4.6, yc),
        ]
    nodes += [
        ("b", "param", f"b = {value('b'):+.3f}", f"∂L/∂b = {grad('b'):+.4f}", 7.6, mid - 1.8),
        ("z", "op", f"z = Σ p_i + b = {value('z'):+.4f}", f"∂L/∂z = {grad('z'):+.4f}", 7.6, mid),
        ("a", "op", f"a = σ(z) = {value('a'):.4f}", f"∂L/∂a = {grad('a'):+.4f}", 10.5, mid),
        ("y", "input", f"y = {value('y'):.0f} (label)", "", 13.4, mid - 1.8),
        ("L", "loss", f"L = BCE(a, y) = {value('L'):.4f}", "∂L/∂L = 1", 13.4, mid),
    ]
    return nodes


_EDGES = [("x{i}", "p{i}"), ("w{i}", "p{i}"), ("p{i}", "z")]


def _edges(report: ChainReport) -> list[tuple[str, str]]:
    per_feature = [(source.format(i=i), target.format(i=i))
                   for i in range(len(report.x)) for source, target in _EDGES]
    return per_feature + [("b", "z"), ("z", "a"), ("a", "L"), ("y", "L")]


def chain_rule_dot(report: ChainReport) -> str:
    """Graphviz source of the neuron's graph, values and gradients on the nodes."""
    lines = ["digraph chain_rule {", "  rankdir=LR; node [shape=box, style=filled];"]
    for node, kind, first, second, _, _ in _nodes(report):
        label = first + (f"\\n{second}" if second else "")
        lines.append(f'  {node} [label="{label}", fillcolor="{_FILL[kind]}"];')
    lines += [f"  {source} -> {target};" for source, target in _edges(report)]
    return "\n".join([*lines, "}", ""])


def draw_chain_rule(report: ChainReport, out_dir: str | Path) -> list[Path]:
    """Save the neuron's graph as ``chain_rule.png`` (matplotlib, always) and, when Graphviz's
    ``dot`` is on the PATH, ``chain_rule.dot`` and ``chain_rule.svg``. Returns the paths."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(14.9, 7.6))
    ax = fig.add_axes((0, 0, 1, 0.93))
    ax.set_xlim(0, 14.9)
    ax.set_ylim(0, 7)
    ax.axis("off")
    width, height = 2.4, 0.56
    where = {}
    for node, kind, first, second, x, y in _nodes(report):
        where[node] = (x, y)
        ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                    boxstyle="round,pad=0.03", fc=_FILL[kind], ec="#555555"))
        ax.text(x, y + (0.11 if second else 0), first, ha="center", va="center", fontsize=8.5)
        if second:
            ax.text(x, y - 0.13, second, ha="center", va="center", fontsize=8.5, color="#c0392b")
    for source, target in _edges(report):
        (x0, y0), (x1, y1) = where[source], where[target]
        start = (x0, y0 + height / 2) if x0 == x1 else (x0 + width / 2, y0)
        end = (x1, y1 - height / 2 - 0.03) if x0 == x1 else (x1 - width / 2 - 0.03, y1)
        ax.annotate("", xy=end, xytext=start,
                    arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 0.9})
    (z_x, z_y), (a_x, _) = where["z"], where["a"]
    da_dz = report.value("a") * (1 - report.value("a"))
    ax.text((z_x + a_x) / 2, z_y + 0.45, f"∂a/∂z = a(1−a)\n= {da_dz:.4f}", ha="center",
            fontsize=8, color="#c0392b")
    ax.text((z_x + a_x) / 2, z_y - 0.75, f"fused: ∂L/∂z = a − y\n= {report.grad('z'):+.4f}",
            ha="center", fontsize=8, color="#c0392b")
    fig.suptitle(
        "One sigmoid neuron on one cats drawing: forward values (black), gradients ∂L/∂· "
        "(red) = local derivative × upstream gradient; "
        + ("each equals autograd's to 1e-10" if report.ok else "SOME DIFFER FROM AUTOGRAD"),
        fontsize=10.5,
    )
    paths = [out / "chain_rule.png"]
    fig.savefig(paths[0], dpi=90)
    dot = shutil.which("dot")
    if dot:
        paths.append(out / "chain_rule.dot")
        paths[-1].write_text(chain_rule_dot(report), encoding="utf-8")
        paths.append(out / "chain_rule.svg")
        subprocess.run([dot, "-Tsvg", str(paths[1]), "-o", str(paths[2])], check=True)
    return paths
