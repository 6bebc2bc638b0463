"""Normalization widens the band of init scales that train — the text's "the scale of the
initial distribution has a large effect", one step further.

A deep plain MLP (``depth`` hidden ReLU layers of ``width``, Kaiming normal × ``scale``) is
trained for a fixed budget of SGD steps without normalization, with batch norm and with layer
norm (between each weighted sum and its activation), over a grid of scales × seeds. Without a
norm, a factor s on every weight multiplies the logits by ~s^depth: small scales never leave
chance, large ones diverge. A norm divides the scale out of every layer's pre-activation, so
the forward pass is the same at any scale; only the effective step size (∝ 1/s²) still moves.

    python scripts/norm_init.py --out docs/img      # the table, norm_init.json and the picture
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..data import load_dataset
from ..functional import get_loss
from ..init import initialize_
from ..modules import ModelConfig, build_network
from ..optim import SGD

NORMS = (None, "batch", "layer")
SCALES = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
TRAINED = 0.5  # a run trains if its final loss is below this (chance: ln 2 = 0.693)
MAX_LOSS = 1e3  # above this (or not finite) the run diverged


@dataclass
class NormRun:
    norm: str | None
    scale: float
    seed: int
    final_loss: float  # mean training loss of the last 20 steps (nan if diverged)
    diverged: bool

    @property
    def trained(self) -> bool:
        return not self.diverged and self.final_loss < TRAINED


def train_one(norm: str | None, scale: float, seed: int, depth: int = 10, width: int = 32,
              steps: int = 300, lr: float = 0.1, batch: int = 100, data: str = "moons",
              backprop: str = "autograd") -> NormRun:
    """One run: ``data``'s features standardized, minibatches drawn with ``seed``."""
    ds = load_dataset(data)
    x = (ds.x - ds.x.mean(0)) / ds.x.std(0).clamp_min(1e-12)
    config = ModelConfig(kind="mlp", hidden=[width] * depth, norm=norm, backprop=backprop)
    net = build_network(config, ds.n_features, ds.n_classes)
    gen = torch.Generator().manual_seed(seed)
    initialize_(net, "normal", "kaiming", scale=scale, generator=gen)
    loss_fn = get_loss("cross_entropy", backprop)
    opt = SGD(net.parameters(), lr=lr)
    recent: list[float] = []
    for _ in range(steps):
        idx = torch.randint(0, len(ds), (batch,), generator=gen)
        loss = loss_fn(net.pre_activation(x[idx]), ds.y[idx])
        value = float(loss.detach())
        if not math.isfinite(value) or value > MAX_LOSS:
            return NormRun(norm, scale, seed, math.nan, True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        recent = [*recent[-19:], value]
    return NormRun(norm, scale, seed, sum(recent) / len(recent), False)


def run_grid(norms=NORMS, scales=SCALES, seeds=(0, 1, 2), **kwargs) -> list[NormRun]:
    """Every norm × scale × seed (``kwargs``: :func:`train_one`'s)."""
    return [train_one(n, s, seed, **kwargs) for n in norms for s in scales for seed in seeds]


def band(runs: list[NormRun], norm: str | None) -> tuple[float, float] | None:
    """The smallest and largest scale at which every seed trains (``None``: none does)."""
    ok = sorted({r.scale for r in runs if r.norm == norm}
                - {r.scale for r in runs if r.norm == norm and not r.trained})
    return (ok[0], ok[-1]) if ok else None


def band_width(runs: list[NormRun], norm: str | None) -> float:
    """log₂(largest / smallest) scale that trains: octaves of scale (0: one scale, −inf: none)."""
    b = band(runs, norm)
    return -math.inf if b is None else math.log2(b[1] / b[0])


def summary(runs: list[NormRun]) -> dict:
    """Per norm: mean final loss per scale (diverged runs counted, not averaged), the band."""
    out = {}
    for norm in dict.fromkeys(r.norm for r in runs):
        cells = {}
        for scale in sorted({r.scale for r in runs if r.norm == norm}):
            rs = [r for r in runs if r.norm == norm and r.scale == scale]
            ok = [r.final_loss for r in rs if not r.diverged]
            cells[scale] = {"mean_loss": sum(ok) / len(ok) if ok else math.nan,
                            "diverged": sum(r.diverged for r in rs), "runs": len(rs),
                            "trained": all(r.trained for r in rs)}
        out[str(norm)] = {"cells": cells, "band": band(runs, norm),
                          "octaves": band_width(runs, norm)}
    return out


def to_json(runs: list[NormRun]) -> dict:
    return {"runs": [asdict(r) for r in runs], "summary": summary(runs), "trained_below": TRAINED}


def plot_norm_init(runs: list[NormRun], path) -> None:
    """Mean final loss by scale (log axis), one line per norm; diverged runs drawn on top."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.8), dpi=80)
    ax = fig.add_subplot()
    top = 1.0
    for i, (norm, s) in enumerate(summary(runs).items()):
        scales = list(s["cells"])
        losses = [s["cells"][k]["mean_loss"] for k in scales]
        label = {"None": "no norm", "batch": "batch norm", "layer": "layer norm"}[norm]
        ax.plot(scales, losses, "o-", color=f"C{i}", label=label)
        div = [k for k in scales if s["cells"][k]["diverged"]]
        ax.plot(div, [top * (1.04 + 0.04 * i)] * len(div), "x", color=f"C{i}", ms=8)
    ax.axhline(math.log(2), color="grey", lw=0.8, ls=":")
    ax.axhline(TRAINED, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_ylim(0, top * 1.2)
    ax.set_xlabel("init scale (× Kaiming's std)")
    ax.set_ylabel("final training loss (mean of seeds)")
    ax.set_title("10 hidden ReLU layers: the band of scales that train", fontsize=10)
    ax.text(0.01, math.log(2) + 0.02, "chance (ln 2)", transform=ax.get_yaxis_transform(),
            fontsize=8, color="grey")
    ax.text(0.01, TRAINED + 0.02, "trained below", transform=ax.get_yaxis_transform(),
            fontsize=8, color="grey")
    ax.legend(fontsize=8, loc="upper center")
    fig.text(0.99, 0.01, "×: diverged runs", ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
