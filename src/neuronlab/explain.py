"""Readings of what a model learned, in words; and the chain rule of one neuron, drawn.

The numbers behind the picture come from `neuronlab.explain_chain`; the loss claims live in
`neuronlab.explain_loss`; ``neuronlab-explain`` prints them all.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .explain_chain import ChainReport


def read_weights(
    weights: dict[str, float],
    small: float = 0.25,
    class_names: Sequence[str] | None = None,
    large: float = 0.5,
    floor: float = 0.25,
) -> list[tuple[str, float, str]]:
    """One line per feature of a binary neuron ``σ(Σ w_i x_i + b)``: how much, and for which
    class, each weight speaks.

    The size is read against the weights' own scale: with ``top`` = the largest |w|, a weight
    is *small* when |w| < ``small`` × top, *large* when |w| ≥ ``large`` × top, *moderate*
    between. A relative scale alone would call the largest of a set of tiny weights "large"
    (a neuron on xor, which it cannot learn, ends near w = (−0.15, −0.10)), so |w| < ``floor``
    is small too: the inputs are on a unit scale (standardized, or the cats' confidences in
    [0, 1]), so such a weight moves the logit by less than ``floor`` (odds × e^0.25 ≈ 1.3)
    across a typical change of its feature.

    Args:
        weights: feature name → learned weight.
        small, large: the fractions of the largest |w| (0 < small ≤ large ≤ 1).
        class_names: the data set's two classes, ``[class 0, class 1]``; a positive weight is
            evidence for class 1 (the neuron's output is P(class 1)). ``None``: "class 1".
        floor: the |w| below which a weight is small whatever the others are.

    Returns:
        ``(feature, weight, reading)`` per feature, in the order of ``weights``; e.g.
        ``("tail", 4.4, "large positive: evidence FOR 'cat'")``.
    """
    if not 0 < small <= large <= 1:
        raise ValueError(f"need 0 < small ≤ large ≤ 1, got small={small}, large={large}")
    if class_names is None:
        class_1 = "class 1"
    elif len(class_names) == 2:
        class_1 = repr(str(class_names[1]))
    else:
        raise ValueError(f"class_names={list(class_names)!r}: a neuron reads two classes, "
                         f"got {len(class_names)}")
    top = max((abs(w) for w in weights.values()), default=0.0)
    rows = []
    for name, w in weights.items():
        if abs(w) < max(small * top, floor):
            reading = "small: barely changes the answer"
        else:
            size = "large" if abs(w) >= large * top else "moderate"
            sign, verdict = ("positive", "FOR") if w > 0 else ("negative", "AGAINST")
            reading = f"{size} {sign}: evidence {verdict} {class_1}"
        rows.append((name, w, reading))
    return rows


# ---- the chain rule, drawn: one neuron's graph, values forward and gradients backward ------

_FILL = {"input": "#dbe9f6", "param": "#fde6c8", "op": "#eeeeee", "loss": "#f8d0d0"}


def _nodes(report: ChainReport) -> list[tuple[str, str, str, str, float, float]]:
    """(node, kind, first line, second line, x, y) for every box of the picture."""
    n = len(report.x)
    rows = [6.1 - i * (5.4 / max(n - 1, 1)) for i in range(n)]  # one row per feature
    mid = sum(rows) / n
    f = report.value
    g = report.grad
    nodes = []
    for i, (name, yc) in enumerate(zip(report.features, rows, strict=True)):
        nodes += [
            (f"x{i}", "input", f"x{i} {name} = {f(f'x{i}'):.3f}", f"∂L/∂x{i} = {g(f'x{i}'):+.4f}",
             1.5, yc + 0.33),
            (f"w{i}", "param", f"w{i} = {f(f'w{i}'):+.3f}", f"∂L/∂w{i} = {g(f'w{i}'):+.4f}",
             1.5, yc - 0.33),
            (f"p{i}", "op", f"p{i} = x{i}·w{i} = {f(f'p{i}'):+.4f}",
             f"∂L/∂p{i} = {g(f'p{i}'):+.4f}", 4.6, yc),
        ]
    nodes += [
        ("b", "param", f"b = {f('b'):+.3f}", f"∂L/∂b = {g('b'):+.4f}", 7.6, mid - 1.8),
        ("z", "op", f"z = Σ p_i + b = {f('z'):+.4f}", f"∂L/∂z = {g('z'):+.4f}", 7.6, mid),
        ("a", "op", f"a = σ(z) = {f('a'):.4f}", f"∂L/∂a = {g('a'):+.4f}", 10.5, mid),
        ("y", "input", f"y = {f('y'):.0f} (label)", "", 13.4, mid - 1.8),
        ("L", "loss", f"L = BCE(a, y) = {f('L'):.4f}", "∂L/∂L = 1", 13.4, mid),
    ]
    return nodes


_EDGES = [("x{i}", "p{i}"), ("w{i}", "p{i}"), ("p{i}", "z")]


def _edges(report: ChainReport) -> list[tuple[str, str]]:
    per_feature = [(s.format(i=i), t.format(i=i)) for i in range(len(report.x)) for s, t in _EDGES]
    return per_feature + [("b", "z"), ("z", "a"), ("a", "L"), ("y", "L")]


def chain_rule_dot(report: ChainReport) -> str:
    """Graphviz source of the neuron's graph, values and gradients on the nodes."""
    lines = ["digraph chain_rule {", "  rankdir=LR; node [shape=box, style=filled];"]
    for node, kind, first, second, _, _ in _nodes(report):
        label = first + (f"\\n{second}" if second else "")
        lines.append(f'  {node} [label="{label}", fillcolor="{_FILL[kind]}"];')
    lines += [f"  {s} -> {t};" for s, t in _edges(report)]
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
    for s, t in _edges(report):
        (x0, y0), (x1, y1) = where[s], where[t]
        start = (x0, y0 + height / 2) if x0 == x1 else (x0 + width / 2, y0)
        end = (x1, y1 - height / 2 - 0.03) if x0 == x1 else (x1 - width / 2 - 0.03, y1)
        ax.annotate("", xy=end, xytext=start,
                    arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 0.9})
    (zx, zy), (ax_, _) = where["z"], where["a"]
    da_dz = report.value("a") * (1 - report.value("a"))
    ax.text((zx + ax_) / 2, zy + 0.45, f"∂a/∂z = a(1−a)\n= {da_dz:.4f}", ha="center",
            fontsize=8, color="#c0392b")
    ax.text((zx + ax_) / 2, zy - 0.75, f"fused: ∂L/∂z = a − y\n= {report.grad('z'):+.4f}",
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
