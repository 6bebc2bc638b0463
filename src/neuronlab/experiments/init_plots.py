"""The init sweep's two pictures: per-layer std at init, and final loss by scale × distribution."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .init_results import InitSweep

DPI = 80
SCHEME_COLORS = {"lecun": "C0", "xavier": "C1", "kaiming": "C2"}
REFERENCE = {"relu": "kaiming", "tanh": "xavier"}  # the scheme whose scales are drawn


def plot_signals(sweep: InitSweep, path: str | Path) -> Path:
    """Rows: activations. Columns: std of h_l by scheme, std of ∂L/∂z_l by scheme (normal
    solid, uniform dashed: they overlap), std of ∂L/∂z_l by scale for one scheme."""
    activations = sorted({signal.activation for signal in sweep.signals},
                         key=["relu", "tanh"].index)
    fig = Figure(figsize=(12, 3.3 * len(activations)))
    axes = fig.subplots(len(activations), 3, squeeze=False)
    for row, act in zip(axes, activations, strict=True):
        for signal in sweep.signals:
            if signal.activation != act or signal.scale != 1.0:
                continue
            layers = np.arange(1, len(signal.act_var) + 1)
            style = {"color": SCHEME_COLORS.get(signal.scheme, "k"),
                     "ls": "-" if signal.distribution == "normal" else "--",
                     "lw": 4 if signal.scheme == "lecun" else 1.5,  # = xavier in a square net
                     "alpha": 0.45 if signal.scheme == "lecun" else 1.0,
                     "label": f"{signal.scheme}, {signal.distribution}"}
            row[0].plot(layers, signal.act_std, **style)
            row[1].plot(layers, signal.grad_std, **style)
        ref = REFERENCE.get(act, "xavier")
        scales = sorted({signal.scale for signal in sweep.signals if signal.activation == act})
        from matplotlib import colormaps

        cmap = colormaps["plasma"]
        for i, scale in enumerate(scales):
            signal = sweep.signal(act, ref, "normal", scale)
            row[2].plot(np.arange(1, len(signal.grad_var) + 1), signal.grad_std, marker=".",
                        color=cmap(i / max(len(scales) - 1, 1) * 0.85), label=f"×{scale:g}")
        titles = (f"{act}: std of activations h_l (×1)", f"{act}: std of ∂L/∂z_l (×1)",
                  f"{act}, {ref} × scale: std of ∂L/∂z_l")
        for ax, title in zip(row, titles, strict=True):
            ax.set(yscale="log", xlabel="layer l", title=title)
            ax.title.set_fontsize(10)
            ax.legend(fontsize=7)
    fig.suptitle("Signal propagation at initialization (width 256, batch 512, mean of 3 draws)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return Path(path)


def relative_luminance(color) -> float:
    """WCAG 2 relative luminance of a matplotlib colour: 0 for black, 1 for white."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(color))
    linear = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


def text_color_on(background) -> str:
    """Black or white, whichever contrasts more with ``background`` (WCAG contrast ratio:
    white wins below a luminance of ≈ 0.18, black above)."""
    lum = relative_luminance(background)
    return "white" if (1.05 / (lum + 0.05)) > ((lum + 0.05) / 0.05) else "black"


DIVERGED_TEXT = "#a00000"  # on the grey of a cell where every seed diverged


def plot_final_loss(sweep: InitSweep, path: str | Path) -> Path:
    """Heat map per activation: rows scheme × distribution, columns scale; a cell shows the
    mean final training loss over seeds, or how many seeds diverged. The text is white on
    dark cells and black on light ones (by the cell colour's luminance)."""
    cells = sweep.cells
    activations = sorted({cell.activation for cell in cells}, key=["relu", "tanh"].index)
    scales = sorted({cell.scale for cell in cells})
    rows = sorted({(cell.scheme, cell.distribution) for cell in cells},
                  key=lambda row: (list(SCHEME_COLORS).index(row[0]), row[1]))
    by_key = {(cell.activation, cell.scheme, cell.distribution, cell.scale): cell
              for cell in cells}
    finite = [cell.mean for cell in cells if math.isfinite(cell.mean)]
    vmax = max(finite) if finite else 1.0
    fig = Figure(figsize=(5.2 * len(activations), 0.5 * len(rows) + 1.8))
    axes = fig.subplots(1, len(activations), squeeze=False)[0]
    image = None
    for ax, act in zip(axes, activations, strict=True):
        grid = np.full((len(rows), len(scales)), np.nan)
        texts: dict[tuple[int, int], str] = {}
        for i, (scheme, dist) in enumerate(rows):
            for j, scale in enumerate(scales):
                cell = by_key.get((act, scheme, dist, scale))
                if cell is None:
                    continue
                runs = len(cell.losses) + cell.diverged + cell.failed
                grid[i, j] = cell.mean  # NaN when no seed finished: the grey background
                if cell.clean:
                    texts[i, j] = f"{cell.mean:.3f}"
                elif cell.losses:
                    texts[i, j] = f"{cell.mean:.3f}\n{cell.diverged + cell.failed}/{runs} div"
                else:
                    texts[i, j] = f"diverged\n{cell.diverged + cell.failed}/{runs}"
        image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
        ax.set_facecolor("#dddddd")
        for (i, j), text in texts.items():
            color = (DIVERGED_TEXT if math.isnan(grid[i, j])
                     else text_color_on(image.to_rgba(grid[i, j])))
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
        ax.set_xticks(range(len(scales)), [f"×{scale:g}" for scale in scales])
        first = ax is axes[0]  # the rows are the same in every panel: label them once
        ax.set_yticks(range(len(rows)), [f"{scheme}, {dist}" for scheme, dist in rows]
                      if first else [],
                      fontsize=8)
        ax.set(xlabel="init scale multiplier", title=f"{act}: mean final training loss")
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="loss")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return Path(path)
